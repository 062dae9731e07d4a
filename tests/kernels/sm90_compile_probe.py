"""Compile every Triton kernel of rs_kernels for an H100 (sm_90) on a machine without a GPU.

The interpreter (how CI runs the kernels) never lowers them to PTX, so it cannot see what only a
real compilation shows: a kernel that fails to lower, shared memory over what the SM holds,
registers spilled to local memory. This script, run in its own process without TRITON_INTERPRET,
points Triton at a stand-in CUDA driver that reports an sm_90 device, turns every launch into a
compilation (JITFunction.run with warmup=True), and drives the public ops forward and backward
on CPU tensors, so each kernel is compiled with the very arguments the launchers pass. Nothing
runs: buffers are zeros and every Woodbury system stays I. It prints one JSON object per compiled
kernel; tests/test_sm90_compile.py reads them.

Usage: python tests/sm90_compile_probe.py   (TRITON_INTERPRET must be unset)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("sm90_compile_probe: unset TRITON_INTERPRET: the interpreter compiles nothing")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402


class _Sm90Driver:
    """All that JITFunction.run asks the active driver for before it launches: an sm_90 device."""

    def get_current_device(self):
        return 0

    def get_current_stream(self, device):
        return 0

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


def _resource_usage(cubin: bytes) -> dict:
    """Registers, stack and local (spilled) bytes of a cubin, read by the cuobjdump Triton ships."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    usage = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text))
    return {k.lower(): int(v) for k, v in usage.items()}


def _compile_instead_of_launch(records: list) -> None:
    launch = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        kernel = launch(self, *args, grid=grid, warmup=True, **kwargs)
        constexprs = {k: str(v) for k, v in kwargs.items() if k.isupper()}
        records.append({"kernel": self.__name__, "constexprs": constexprs, "shared": kernel.metadata.shared,
                        "num_warps": kernel.metadata.num_warps, **_resource_usage(kernel.asm["cubin"])})
        return kernel

    JITFunction.run = run


def _cases():
    """(dtype, D, lengths, M per video, head columns C + 1): the shapes the CPU tests use, bf16 (which
    only compiles here), THUMOS14's 21 head columns and ActivityNet1.2's 101."""
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        yield dtype, 64, [17, 1, 40], [5, 1, 20], 21
    yield torch.float32, 2048, [33, 9], [8, 8], 21
    yield torch.float32, 2048, [33, 9], [8, 8], 101


def _drive_ops(dtype, d, lengths, counts, columns) -> None:
    import rs_kernels

    x = torch.rand(sum(lengths), d, dtype=dtype, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    mu0 = torch.rand(8, d, dtype=dtype, requires_grad=True)
    y = torch.rand(sum(counts), d, dtype=dtype, requires_grad=True)
    ycu = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=torch.int32)
    class_weight = torch.rand(sum(lengths), columns, dtype=dtype, requires_grad=True)
    mu = rs_kernels.em_attention(x, cu, mu0, iters=2, tau=5.0, impl="triton")
    out = rs_kernels.random_walk(x, cu, y, ycu, w=0.5, tau=5.0, impl="triton")
    pooled = rs_kernels.segment_matmul(class_weight, x, cu, impl="triton")
    (mu.sum() + out.sum() + pooled.sum()).backward()


def main() -> None:
    records: list = []
    driver.set_active(_Sm90Driver())
    _compile_instead_of_launch(records)
    from rs_kernels.kernels import launch

    launch.check_launchable = lambda x, op: None  # CPU tensors stand in for CUDA ones: nothing is launched
    launch.empty = lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device)
    for dtype, d, lengths, counts, columns in _cases():
        start = len(records)
        _drive_ops(dtype, d, lengths, counts, columns)
        for r in records[start:]:
            r.update(dtype=str(dtype).removeprefix("torch."), d=d)
    seen = set()
    for r in records:
        key = json.dumps(r, sort_keys=True)
        if key not in seen:
            seen.add(key)
            print(key)


if __name__ == "__main__":
    main()
