"""Small helpers shared by the test modules (tests/ is on sys.path under pytest)."""

import pytest
import torch

from rs_kernels.kernels import launch
from rs_kernels.varlen import as_varlen

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


def crash_at_epoch(monkeypatch, crash_epoch: int) -> None:
    """Training stops (KeyboardInterrupt) as 0-based epoch ``crash_epoch`` begins, as a killed run would."""
    from rsnet import train

    real_epoch = train.Trainer.train_epoch

    def crashing_epoch(self, epoch, progress=None):
        if epoch == crash_epoch:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, progress)

    monkeypatch.setattr(train.Trainer, "train_epoch", crashing_epoch)
