"""The one conftest of the suite: its set-up, its markers' handling, and the fixtures the test
modules share (no test module imports another: what they share is here, as fixtures).

- TRITON_INTERPRET: without CUDA the Triton kernels run in Triton's interpreter on CPU tensors; it
  must be set before any module decorates a kernel with @triton.jit, so it is set here, first.
- One intra-op thread in the test process (OMP_NUM_THREADS, 1 unless set).
- ``gpu`` items are skipped without a CUDA device; the micro-benchmarks (the tests that take
  pytest-benchmark's ``benchmark`` fixture) are skipped unless asked for: ``--run-benchmarks`` or
  RSKP_BENCHMARKS=1 (``python -m pytest tests/kernels/test_bench_ops.py --run-benchmarks``).
- Kernel tests: ``device`` (cpu, and cuda marked gpu), ``tol`` (the float64-reference tolerances),
  ``rel_error``, ``op_offsets``, ``nan_buffers``; ``synced`` for the micro-benchmarks.
- ``python_without``: code run in a new interpreter where triton and the extension cannot be imported.
- ``crash_at_epoch``: training interrupted as an epoch begins, as a killed run would be.
- The tiny datasets and tiny trained runs, built once per test run (session-scoped) and shared:
  ``tiny_root`` (the data), ``tiny_config`` (a Config of a tiny run on it), ``tiny_run`` (the run most
  tests read), ``tiny_trained`` (a run of other settings, trained once per settings), ``tiny_variant``
  (a model variant's run); ``tiny_anet_root``, ``tiny_anet_train``, ``tiny_anet_run`` (ActivityNet1.2).
  Read-only: a test that writes into a run or edits data copies it first
  (``shutil.copytree(tiny_run.out, tmp_path / "run")``).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread in the test process (unless OMP_NUM_THREADS says otherwise): the suite's tensors
# are tiny, and on a 2-core machine shared with other work torch's spinning threads wait on a descheduled
# sibling at every op (the training-loop test: 0.4 s on one thread, 55 s on two beside another training).
# The interpreters tests start keep torch's default.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# --- markers and options -------------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--run-benchmarks", action="store_true", default=False,
                     help="run the micro-benchmarks (tests taking pytest-benchmark's benchmark fixture; "
                          "also: RSKP_BENCHMARKS=1)")


def _benchmarks_skipped(config) -> str | None:
    """Why the micro-benchmarks are skipped, or None when they run."""
    if not (config.getoption("--run-benchmarks") or os.environ.get("RSKP_BENCHMARKS") == "1"):
        return "micro-benchmark: run with --run-benchmarks or RSKP_BENCHMARKS=1"
    if importlib.util.find_spec("pytest_benchmark") is None:
        return "needs pytest-benchmark (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config, items):
    skip_gpu = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    why = _benchmarks_skipped(config)
    skip_benchmark = pytest.mark.skip(reason=why) if why else None
    for item in items:
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)
        if skip_benchmark and "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip_benchmark)


# --- the repository ------------------------------------------------------------------------------------

@pytest.fixture
def shared_data() -> Path:
    """The project's shared data folder beside the clone; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (real THUMOS14 annotations), absent in this clone")
    return SHARED_DATA


BLOCKER = """
import sys


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None


sys.meta_path.insert(0, Blocked())
"""


@pytest.fixture(scope="session")
def python_without():
    """(code, blocked=("triton", "rs_kernels._C"), args=()) -> the finished process: ``code`` run in a new
    interpreter from the repository root, with the imports of ``blocked`` failing as if not installed
    (a finder first on sys.meta_path), so the modules this process has imported hide nothing."""
    def run(code: str, blocked: tuple[str, ...] = ("triton", "rs_kernels._C"), args: tuple[str, ...] = ()):
        script = BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
    return run


# --- kernels -------------------------------------------------------------------------------------------

class Tolerances(NamedTuple):
    """Kernel tests against the float64 reference: forward and gradients, relative (rel_error)."""
    fwd: float = 1e-5
    grad: float = 1e-4


@pytest.fixture(scope="session")
def tol() -> Tolerances:
    return Tolerances()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> str:
    """CPU, and CUDA where there is one (gpu-marked: skipped without it)."""
    return request.param


def _rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture(scope="session")
def rel_error():
    """(out, ref) -> ||out - ref|| / ||ref||, computed in float64."""
    return _rel_error


@pytest.fixture(scope="session")
def op_offsets():
    """cu_seqlens -> the offsets as the ops' custom ops take them: the tensor and the kernels' block table."""
    from rs_kernels.kernels import launch
    from rs_kernels.varlen import as_varlen

    def offsets(cu_seqlens) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seqs = as_varlen(cu_seqlens)
        return (seqs.cu_seqlens, *seqs.block_table(launch.BLOCK_T))
    return offsets


@pytest.fixture
def nan_buffers(monkeypatch):
    """Every Triton launcher buffer starts as NaN: an element a kernel forgets to write fails the test."""
    from rs_kernels.kernels import launch

    def empty(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(launch, "empty", empty)


@pytest.fixture
def synced():
    """fn -> a callable for ``benchmark`` that waits for fn's device, so that the time is the op's."""
    def wrap(fn, device):
        if torch.device(device).type != "cuda":
            return fn

        def waited():
            out = fn()
            torch.cuda.synchronize(device)
            return out
        return waited
    return wrap


# --- training ------------------------------------------------------------------------------------------

@pytest.fixture
def crash_at_epoch(monkeypatch):
    """epoch -> training stops (KeyboardInterrupt) as 0-based ``epoch`` begins, as a killed run would;
    ``monkeypatch.undo()`` ends the crashes."""
    from rsnet import train

    real_epoch = train.Trainer.train_epoch

    def crash(crash_epoch: int) -> None:
        def crashing_epoch(self, epoch, progress=None):
            if epoch == crash_epoch:
                raise KeyboardInterrupt
            return real_epoch(self, epoch, progress)

        monkeypatch.setattr(train.Trainer, "train_epoch", crashing_epoch)
    return crash


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The tiny THUMOS14-like dataset (8 training, 6 test videos at 0.15 of the real lengths, seed 2),
    with one ambiguous span (1.0-2.5 s) on the test video of the most segments, as real test videos
    have: the data root of every tiny run. Read-only: a test that edits data edits a copy."""
    from rsnet.data import load_annotations
    from rsnet.synthetic import SyntheticSpec, generate
    from rsnet.synthetic.statistics import AMBIGUOUS_FILE

    root = generate(tmp_path_factory.mktemp("data") / "tiny", SyntheticSpec(n_train=8, n_test=6, length_scale=0.15),
                    seed=2)
    annotations = load_annotations(root / "Thumos14reduced")
    video = annotations.video_names[max(annotations.indices("test"), key=lambda v: len(annotations.segments[v]))]
    with open(root / "Thumos14reduced" / AMBIGUOUS_FILE, "a") as f:
        f.write(f"{video} 1.0 2.5\n")
    return root


@pytest.fixture(scope="session")
def tiny_config(tiny_root):
    """(out, root=tiny_root, **overrides) -> the Config of a tiny CPU run: 3 epochs, evaluated each
    (leniently), no warm-up, embeddings of 48, steps of 3 videos, test batches of 4."""
    from rsnet.config import Config

    def config(out, root=None, **overrides) -> Config:
        base = Config(data_root=str(root or tiny_root), out=str(out), epochs=3, warmup_epochs=0, eval_every=1,
                      embed_dim=48, videos_per_step=3, test_batch_size=4, lenient=True, device="cpu")
        return dataclasses.replace(base, **overrides)
    return config


class TinyRun(NamedTuple):
    root: Path  # its data root
    out: Path  # its run folder: checkpoint.pt, metrics.jsonl, results.md, config.json
    summary: dict[str, Any]  # what train.run returned

    def metrics(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def tiny_trained(tiny_config, tiny_root, tmp_path_factory):
    """(**overrides) -> the TinyRun of ``tiny_config(out, **overrides)``, trained once per test run for
    each set of overrides. Read-only: a test that writes into a run (--resume, --overwrite, edits)
    copies it first."""
    from rsnet import train

    runs: dict[str, TinyRun] = {}

    def trained(**overrides) -> TinyRun:
        key = json.dumps(overrides, sort_keys=True)
        if key not in runs:
            out = tmp_path_factory.mktemp("run")
            summary = train.run(tiny_config(out, **overrides))
            runs[key] = TinyRun(tiny_root, out, summary)
        return runs[key]
    return trained


@pytest.fixture(scope="session")
def tiny_run(tiny_trained) -> TinyRun:
    """The tiny run of ``tiny_config``'s settings (3 evaluated epochs, its memory bank filled)."""
    return tiny_trained()


@pytest.fixture(scope="session")
def tiny_variant(tiny_trained):
    """(**switches) -> the TinyRun of a model variant (--representatives, --bank, --fusion ...): two
    epochs, the second evaluated, embeddings of 16; trained once per variant for every test reading it."""
    def variant(**switches) -> TinyRun:
        return tiny_trained(epochs=2, eval_every=2, embed_dim=16, **switches)
    return variant


# 12 training and 8 validation videos of ActivityNet1.2's statistics, a tenth of the real lengths
TINY_ANET_FLAGS = ("--dataset", "ActivityNet1.2", "--epochs", "3", "--warmup-epochs", "1", "--eval-every", "1",
                   "--embed-dim", "32", "--videos-per-step", "4", "--max-seqlen", "6", "--device", "cpu")


@pytest.fixture(scope="session")
def tiny_anet_root(tmp_path_factory) -> Path:
    """The tiny ActivityNet1.2-like dataset (seed 3). Read-only."""
    from rsnet.synthetic import SyntheticSpec, generate

    return generate(tmp_path_factory.mktemp("anet"),
                    SyntheticSpec(dataset="ActivityNet1.2", n_train=12, n_test=8, length_scale=0.1), seed=3)


@pytest.fixture(scope="session")
def tiny_anet_flags() -> tuple[str, ...]:
    """The flags of ``tiny_anet_train``'s runs, for a test that builds their config itself."""
    return TINY_ANET_FLAGS


@pytest.fixture(scope="session")
def tiny_anet_train(tiny_anet_root):
    """(out, *flags) -> the metrics records of ``python -m rsnet.train`` on the tiny ActivityNet1.2 data
    (its dataset's defaults: the anet protocol, on the validation subset), 3 evaluated epochs, flags on top."""
    from rsnet import train

    def run(out: Path, *flags: str) -> list[dict[str, Any]]:
        assert train.main(["--data-root", str(tiny_anet_root), "--out", str(out), *TINY_ANET_FLAGS, *flags]) == 0
        return TinyRun(tiny_anet_root, out, {}).metrics()
    return run


@pytest.fixture(scope="session")
def tiny_anet_run(tiny_anet_train, tiny_anet_root, tmp_path_factory) -> TinyRun:
    """The tiny ActivityNet1.2 run of ``tiny_anet_train``'s settings (no summary: trained as a command). Read-only."""
    out = tmp_path_factory.mktemp("anet_run")
    tiny_anet_train(out)
    return TinyRun(tiny_anet_root, out, {})
