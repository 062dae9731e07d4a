"""Micro-benchmarks of the ops (pytest-benchmark), skipped unless asked for:

    python -m pytest tests/benchmarks --run-benchmarks        # or: RSKP_BENCHMARKS=1 python -m pytest tests/benchmarks

A plain ``python -m pytest`` (CI) collects them and skips them. ``--run-benchmarks`` is known to
pytest only when tests/benchmarks is named on the command line (pytest reads a sub-folder's
conftest options only then); the environment variable works from anywhere. Sizes are small: these
track regressions of single ops on one machine; the end-to-end numbers are bench/train_speed.py's.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption("--run-benchmarks", action="store_true", default=False,
                     help="run the micro-benchmarks of tests/benchmarks (also: RSKP_BENCHMARKS=1)")


def _enabled(config) -> bool:
    return bool(config.getoption("--run-benchmarks", default=False)) or os.environ.get("RSKP_BENCHMARKS") == "1"


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not mine:
        return
    if not _enabled(config):
        reason = "micro-benchmark: run with `python -m pytest tests/benchmarks --run-benchmarks` or RSKP_BENCHMARKS=1"
    elif importlib.util.find_spec("pytest_benchmark") is None:
        reason = "needs pytest-benchmark (pip install -e '.[test]')"
    else:
        return
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> torch.device:
    """CPU, and CUDA where there is one (the root conftest skips gpu-marked items without it)."""
    return torch.device(request.param)


@pytest.fixture
def run(device):
    """fn -> a callable for ``benchmark`` that waits for the device, so the time is the op's."""
    def wrap(fn):
        if device.type != "cuda":
            return fn

        def synced():
            out = fn()
            torch.cuda.synchronize(device)
            return out
        return synced
    return wrap
