"""Speed of rsnet.extract per stage: decode, resize/crop, flow, I3D RGB, I3D flow, write.

    python -m bench.extract_speed [--seconds 4] [--size 320x180] [--fps 30] [--flow tvl1|raft|raft_small]
                                  [--device auto] [--batch 8] [--jobs N] [--crop 224] [--json FILE]

Writes a synthetic video (textured shapes moving over a noisy background, H.264, THUMOS14's usual
320 x 180 at 30 fps by default), then extracts its features with the published recipe (25 fps,
16-frame snippets, short side 256, 224 crop) and random I3D weights (speed does not depend on the
values; RAFT's are random too), and prints per stage the frames or snippets per second and the
real-time factor (video seconds per second of that stage; > 1 is faster than the video plays),
and the slowest stage. Both I3D streams run once before the timing (first-call set-up excluded).

Without PyAV and OpenCV (no [extract] extra, as on a bare GPU machine) only the two I3D stages
are measured, on random clips, and the script says so.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rsnet.devices import resolve_device
from rsnet.extract.i3d import load_i3d, random_state
from rsnet.extract.pipeline import Extractor, Recipe, Stages, features_path, save_features

UNITS_PER_VIDEO_SECOND = {"frames": 25.0, "snippets": 25.0 / 16}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_synthetic_video(path: Path, seconds: float, width: int, height: int, fps: int) -> Path:
    import av

    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    patch = rng.integers(100, 255, (height // 3, width // 5, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(round(seconds * fps)):
            frame = background.copy()
            top = (height // 4 + i) % (height - patch.shape[0])
            left = (3 * i) % (width - patch.shape[1])
            frame[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def random_raft_weights(method: str, folder: Path) -> Path:
    from rsnet.extract.flow import import_raft_models

    optical_flow = import_raft_models()
    model = optical_flow.raft_large(weights=None) if method == "raft" else optical_flow.raft_small(weights=None)
    torch.save(model.state_dict(), folder / f"{method}.pt")
    return folder / f"{method}.pt"


def extra_installed(flow: str) -> bool:
    """Whether the [extract] extra's packages that ``flow`` needs import here."""
    import importlib

    from rsnet.extract.flow import import_raft_models

    try:
        for module in ("av", "cv2"):
            importlib.import_module(module)
        if flow != "tvl1":
            import_raft_models()
    except ImportError:
        return False
    return True


def warm_up(streams: list[tuple[torch.nn.Module, int]], batch: int, crop: int, device: torch.device) -> None:
    """One forward of each stream: cuDNN / oneDNN choose their kernels on the first call."""
    with torch.inference_mode():
        for model, channels in streams:
            model.features(torch.zeros(batch, channels, 16, crop, crop, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize()


def i3d_only(streams: list[tuple[str, torch.nn.Module, int]], batch: int, crop: int, device: torch.device,
             batches: int = 3) -> Stages:
    """The two I3D stages on random clips (no video decoding here)."""
    stages = Stages()
    with torch.inference_mode():
        for stage, model, channels in streams:
            clips = torch.rand(batch, channels, 16, crop, crop, device=device) * 2 - 1
            with stages.timed(stage, batch * batches):
                for _ in range(batches):
                    model.features(clips).cpu()
    return stages


def table(stages: Stages) -> tuple[list[dict], str]:
    """Per stage that ran: count, seconds, rate and real-time factor; and the slowest stage."""
    rows = []
    for stage, unit in Stages.UNITS.items():
        if not stages.counts.get(stage):
            continue
        seconds, count = stages.seconds[stage], stages.counts[stage]
        rows.append({"stage": stage, "count": count, "unit": unit, "seconds": seconds, "rate": count / seconds,
                     "real_time_factor": count / UNITS_PER_VIDEO_SECOND[unit] / seconds})
    slowest = max(rows, key=lambda row: row["seconds"])["stage"]
    return rows, slowest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the synthetic video")
    parser.add_argument("--size", default="320x180", help="its WIDTHxHEIGHT (THUMOS14's usual 320x180)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--flow", default="tvl1", choices=("tvl1", "raft", "raft_small"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    full = extra_installed(args.flow)
    recipe = Recipe(crop=args.crop)
    with tempfile.TemporaryDirectory(prefix="rskp-extract-speed.") as scratch:
        folder = Path(scratch)
        torch.save(random_state(3), folder / "rgb.pt")
        torch.save(random_state(2), folder / "flow.pt")
        if full:
            raft_weights = random_raft_weights(args.flow, folder) if args.flow != "tvl1" else None
            extractor = Extractor(folder / "rgb.pt", folder / "flow.pt", args.flow, args.device, args.batch, args.jobs,
                                  raft_weights, recipe)
            device, rgb, flow = extractor.device, extractor.rgb, extractor.flow_i3d
        else:  # no [extract] extra: the I3D streams alone
            device = resolve_device(args.device)
            rgb, flow = (load_i3d(folder / f"{stream}.pt", stream).to(device) for stream in ("rgb", "flow"))
        print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()} | "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads | flow {args.flow if full else '-'} | "
              f"batch {args.batch} | crop {args.crop}")
        warm_up([(rgb, 3), (flow, 2)], args.batch, args.crop, device)
        if full:
            video = write_synthetic_video(folder / "synthetic.mp4", args.seconds, width, height, args.fps)
            start = time.perf_counter()
            features = extractor.video_features(video)
            with extractor.stages.timed("write", len(features)):
                save_features(features_path(folder, video), features)
            total, stages = time.perf_counter() - start, extractor.stages
            extractor.close()
            print(f"video: {args.seconds:g} s of {width}x{height} at {args.fps} fps -> {len(features)} snippets")
        else:
            print("PyAV / OpenCV not installed (the [extract] extra): I3D stages only, on random clips")
            total = None
            stages = i3d_only([("i3d rgb", rgb, 3), ("i3d flow", flow, 2)], args.batch, args.crop, device)
    rows, slowest = table(stages)
    print("| stage | count | s | rate /s | x real time |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['stage']} | {row['count']} {row['unit']} | {row['seconds']:.2f} | {row['rate']:.3g} "
              f"| {row['real_time_factor']:.3g} |")
    if total is not None:
        print(f"| all | {args.seconds:g} s of video | {total:.2f} | - | {args.seconds / total:.3g} |")
    print(f"bottleneck: {slowest}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "total_seconds": total, "video_seconds": args.seconds,
                                         "bottleneck": slowest, "device": str(device), "flow": args.flow}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
