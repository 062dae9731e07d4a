"""Small helpers shared by the test modules (tests/ is on sys.path under pytest)."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from rs_kernels.kernels import launch
from rs_kernels.varlen import as_varlen

BENCH = Path(__file__).resolve().parents[1] / "bench"
# Kernel tests against the float64 reference: forward and gradients, relative (rel_error).
FWD_TOL, GRAD_TOL = 1e-5, 1e-4
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def op_offsets(cu_seqlens) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The offsets as the ops' custom ops take them: the tensor and the kernels' block table."""
    seqs = as_varlen(cu_seqlens)
    return (seqs.cu_seqlens, *seqs.block_table(launch.BLOCK_T))


def load_bench(name: str):
    """A bench/ script as a module (bench/ is not a package), registered in sys.modules (dataclasses
    resolve annotations through it)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def crash_at_epoch(monkeypatch, crash_epoch: int) -> None:
    """Training stops (KeyboardInterrupt) as 0-based epoch ``crash_epoch`` begins, as a killed run would."""
    from rsnet import train

    real_epoch = train.Trainer.train_epoch

    def crashing_epoch(self, epoch, progress=None):
        if epoch == crash_epoch:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, progress)

    monkeypatch.setattr(train.Trainer, "train_epoch", crashing_epoch)
