"""What runs without the optional parts: triton and the compiled extension rs_kernels._C.

Each test runs a fresh interpreter whose imports of the blocked modules fail as if they were not
installed (a finder first on ``sys.meta_path``), so the modules this process has already imported
do not hide an import the package makes. The PyTorch references, the dispatch and the evaluator
need neither; the extension loads on the first memory-bank call, not on an import.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_evaluate import _write_predictions, _write_wtalc_folder, quiet, synthetic_case

from rsnet.data import load_annotations
from rsnet.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
TRITON_AND_EXTENSION = ("triton", "rs_kernels._C")

BLOCKER = """
import sys


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None


sys.meta_path.insert(0, Blocked())
"""


def run_python(code: str, blocked: tuple[str, ...] = TRITON_AND_EXTENSION, args: tuple[str, ...] = ()):
    """Runs ``code`` in a new interpreter, from the repository root, with the imports of ``blocked`` failing."""
    script = BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_references_dispatch_and_varlen_import_without_triton_or_extension():
    proc = run_python("""
        import torch
        import rs_kernels._dispatch
        import rs_kernels.reference
        import rs_kernels.varlen

        cu = rs_kernels.varlen.cu_seqlens_from_lengths([2, 3])
        x = torch.randn(5, 4, dtype=torch.float64)
        mu = rs_kernels.reference.em_attention(x, cu, x[:2])
        assert mu.shape == (2, 2, 4), mu.shape
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_evaluate_cli_runs_without_triton_or_extension(tmp_path):
    """``python -m rsnet.evaluate`` scores a predictions file, as tests/test_evaluate.py's end-to-end case."""
    ann, idx, scores, cas = synthetic_case(3)
    _write_wtalc_folder(tmp_path / "ann", ann)
    _write_predictions(tmp_path / "p.npz", scores, cas)
    out = tmp_path / "r.json"
    proc = run_python("""
        import runpy
        runpy.run_module("rsnet.evaluate", run_name="__main__", alter_sys=True)
    """, args=("--predictions", str(tmp_path / "p.npz"), "--annotations", str(tmp_path / "ann"), "--lenient",
               "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| protocol | mAP@0.1 |")
    expected = quiet(evaluate, scores, cas, load_annotations(tmp_path / "ann"), idx, lenient=True)
    assert json.loads(out.read_text())["dmap"] == expected.dmap


def test_membank_call_without_extension_says_how_to_build_it():
    proc = run_python("""
        import torch
        from rs_kernels import membank

        try:
            membank.membank_momentum_read(torch.zeros(2, 1, 1), torch.zeros(1, dtype=torch.int64))
        except ImportError as err:
            print(err)
        else:
            sys.exit("no ImportError")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "rs_kernels.membank needs the compiled extension rs_kernels._C" in proc.stdout
    assert "pip install -e ." in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("rs_kernels._C") is None, reason="the extension is not built")
def test_extension_loads_on_the_first_membank_call():
    """Importing the package, the trainer or the evaluator does not load the extension; a bank op does."""
    proc = run_python("""
        import torch
        import rs_kernels
        import rsnet.evaluate
        import rsnet.model
        import rsnet.train

        assert "rs_kernels._C" not in sys.modules, "loaded on import"
        bank = rsnet.model.MemoryBank(n_classes=3, slots=2, dim=4)
        y, cu = bank.read(torch.tensor([[True, False, True]]))
        assert "rs_kernels._C" in sys.modules and y.shape == (0, 4) and cu.offsets == (0, 0)
        print("ok")
    """, blocked=())
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
