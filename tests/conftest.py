"""Shared test set-up.

Without CUDA the Triton kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET
must be set before any module decorates a kernel with @triton.jit, so it is set here, first.
"""
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The project's shared data folder beside the clone; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (real THUMOS14 annotations), absent in this clone")
    return SHARED_DATA


@pytest.fixture
def nan_buffers(monkeypatch):
    """Every Triton launcher buffer starts as NaN: an element a kernel forgets to write fails the test."""
    from rs_kernels.kernels import launch

    def empty(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(launch, "empty", empty)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
