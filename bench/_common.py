"""Helpers shared by the benchmarks in bench/: THUMOS14-like lengths, timing, device and versions.

Timing follows docs/performance.md ('How figures are measured'): medians over repeats, CUDA events (or ``triton.testing.do_bench``) on
the GPU, ``time.perf_counter`` on CPU; the device and the versions are printed beside the numbers.
"""
from __future__ import annotations

import math
import platform
import statistics
import time

import torch
import triton

# THUMOS14-like snippet counts (16 frames at 25 fps per snippet): log-normal with median 250 and
# spread 0.73, clipped to [8, 2600], a fixed draw whose longest video is set to 2600 and the others
# rescaled so that the 200 training videos pack N = 65,215 snippets (median ~240, tail to 2600).
THUMOS_MEDIAN, THUMOS_SIGMA, THUMOS_MIN, THUMOS_MAX, THUMOS_TOTAL = 250.0, 0.73, 8, 2600, 65_215


def thumos_lengths(n_videos: int = 200, seed: int = 0) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    raw = torch.exp(math.log(THUMOS_MEDIAN) + THUMOS_SIGMA * torch.randn(200, generator=gen, dtype=torch.float64))
    raw = raw.clamp(THUMOS_MIN, THUMOS_MAX)
    longest = int(raw.argmax())
    raw = raw * ((THUMOS_TOTAL - THUMOS_MAX) / (raw.sum() - raw[longest]))
    raw[longest] = THUMOS_MAX  # the tail: the longest video is ~2600 snippets
    lengths = raw.round().clamp(THUMOS_MIN, THUMOS_MAX).long()
    if n_videos == 200:
        return lengths.tolist()
    perm = torch.randperm(200, generator=gen)[:n_videos]  # a training step: videos drawn from the set
    return lengths[perm].tolist()


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device, grad_to_none=None) -> float:
    """Median milliseconds of fn(), for short calls: do_bench on CUDA, 5 to 50 repeats on CPU."""
    if torch.device(device).type == "cuda":
        return float(triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none,
                                             return_mode="median"))
    start = time.perf_counter()
    fn()  # warm-up, and an estimate: about 0.3 s of repeats, 5 to 50
    reps = min(max(int(0.3 / max(time.perf_counter() - start, 1e-6)), 5), 50)
    times = []
    for _ in range(reps):
        for t in grad_to_none or ():
            t.grad = None
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_runs(fn, device, repeats: int = 1) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of a long fn() (an epoch, a test pass).

    CUDA events around the call on the GPU (the end event is recorded after fn returns, so host
    work inside fn counts), perf_counter on CPU; no warm-up here: the caller decides.
    """
    times = []
    on_cuda = torch.device(device).type == "cuda"
    for _ in range(repeats):
        if on_cuda:
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        else:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return times


def peak_mb(fn, device) -> float | None:
    """The CUDA allocator's peak during fn() above what was allocated before (None on CPU)."""
    if torch.device(device).type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def device_name(device) -> str:
    """The card's name, or the CPU's model and the threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU ({model}), {torch.get_num_threads()} threads"


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "cuda": str(torch.version.cuda), "triton": triton.__version__,
            "python": platform.python_version()}
