"""What runs without the optional parts: triton and the compiled extension rs_kernels._C.

Each test runs a fresh interpreter whose imports of the blocked modules fail as if they were not
installed (the ``python_without`` fixture), so the modules this process has already imported do not
hide an import the package makes. The PyTorch references, the padded ops, the dispatch and the
evaluator (tests/rsnet/test_evaluate.py) need neither; the extension loads on the first call of an
op of its own (the memory bank's, and segment_weighted_sum on a CPU: the model's head), not on an
import.
"""
from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow  # each test a new interpreter importing torch: 3-4 s each


def test_references_padded_ops_dispatch_and_varlen_run_without_triton_or_extension(python_without):
    """``import rs_kernels`` and the reference and padded ops, forward and backward, work with neither
    (CPU-only installs, macOS), and import no triton module."""
    proc = python_without("""
        import torch
        import rs_kernels
        import rs_kernels._dispatch
        import rs_kernels.reference
        import rs_kernels.varlen
        from rs_kernels import cu_seqlens_from_lengths

        cu = rs_kernels.varlen.cu_seqlens_from_lengths([2, 3])
        x = torch.randn(5, 4, dtype=torch.float64)
        mu = rs_kernels.reference.em_attention(x, cu, x[:2])
        assert mu.shape == (2, 2, 4), mu.shape

        cu, ycu = cu_seqlens_from_lengths([3, 1, 4]), cu_seqlens_from_lengths([2, 0, 1])
        x, mu0, y, w = (torch.randn(*s, dtype=torch.float64, requires_grad=True)
                        for s in ((8, 5), (2, 5), (3, 5), (8, 4)))
        for impl in ("reference", "padded"):
            out = (rs_kernels.em_attention(x, cu, mu0, impl=impl).sum()
                   + rs_kernels.random_walk(x, cu, y, ycu, impl=impl).sum()
                   + rs_kernels.segment_matmul(w, x, cu, impl=impl).sum())
            out.backward()
        assert not [m for m in sys.modules if m == "triton" or m.startswith("triton.")]
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.parametrize("call", ["membank.membank_momentum_read(torch.zeros(2, 1, 1), torch.zeros(1, dtype=torch.int64))",
                                  "rs_kernels.segment_weighted_sum(torch.ones(2), torch.ones(2, 3), torch.tensor([0, 2]))"])
def test_an_extension_op_without_extension_says_how_to_build_it(python_without, call):
    proc = python_without(f"""
        import torch
        import rs_kernels
        from rs_kernels import membank

        try:
            {call}
        except ImportError as err:
            print(err)
        else:
            sys.exit("no ImportError")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "rs_kernels needs its compiled extension rs_kernels._C" in proc.stdout
    assert "pip install -e ." in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("rs_kernels._C") is None, reason="the extension is not built")
def test_extension_loads_on_the_first_membank_call(python_without):
    """Importing the package, the trainer or the evaluator does not load the extension; a bank op does."""
    proc = python_without("""
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
