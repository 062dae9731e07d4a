"""The Triton per-video W^T X op against the float64 reference (CPU: Triton's interpreter).

Forward <= 1e-5 and both gradients <= 1e-4 relative, on fresh random inputs of odd shapes, with
every buffer the launchers allocate pre-filled with NaN.
"""
import pytest
import torch
from helpers import DEVICES, FWD_TOL, GRAD_TOL, op_offsets
from helpers import rel_error as _rel
from torch.library import opcheck
from torch.utils.flop_counter import FlopCounterMode

from rs_kernels import reference, segment_matmul
from rs_kernels.varlen import cu_seqlens_from_lengths

pytestmark = pytest.mark.usefixtures("nan_buffers")


def _inputs(lengths, c, d, seed=0, device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    w = torch.rand(n, c, generator=gen, dtype=torch.float64)  # the head's weights: attention shares in [0, 1]
    x = torch.randn(n, d, generator=gen, dtype=torch.float64).relu()
    grad = torch.randn(len(lengths), c, d, generator=gen, dtype=torch.float64)
    cu = cu_seqlens_from_lengths(lengths).to(device)
    return w.to(device, dtype), x.to(device, dtype), cu, grad.to(device, dtype)


def _run(w, x, cu, grad, impl):
    w, x = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    out = segment_matmul(w, x, cu, impl=impl)
    out.backward(grad)
    return out.detach(), w.grad, x.grad


def _reference(w, x, cu, grad):
    w, x = w.detach().cpu().double().requires_grad_(), x.detach().cpu().double().requires_grad_()
    out = reference.segment_matmul(w, x, cu.cpu())
    out.backward(grad.cpu().double())
    return out.detach(), w.grad, x.grad


CASES = {  # name: (lengths, C, D)
    "T1": ([1], 21, 64),
    "T17_C5": ([17], 5, 64),
    "T1000_C1": ([1000], 1, 64),
    "B5_mixed": ([1, 17, 1000, 5, 250], 21, 64),
    "odd_D": ([17, 40, 3], 21, 33),
    "C33": ([9, 30], 33, 16),
    "D2048": ([3, 17], 21, 2048),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_reference(case, device):
    lengths, c, d = CASES[case]
    w, x, cu, grad = _inputs(lengths, c, d, seed=len(case), device=device)
    out, dw, dx = _run(w, x, cu, grad, "triton")
    ref, rdw, rdx = _reference(w, x, cu, grad)
    assert out.dtype == x.dtype and out.shape == ref.shape
    per_video = [_rel(out[b].cpu(), ref[b]) for b in range(len(lengths))]
    errs = {"dw": _rel(dw.cpu(), rdw), "dx": _rel(dx.cpu(), rdx)}
    print(f"{case} {device}: worst video fwd {max(per_video):.2e}, {errs}")
    assert max(per_video) <= FWD_TOL, per_video
    assert max(errs.values()) <= GRAD_TOL, errs


@pytest.mark.parametrize("device", DEVICES)
def test_bitwise_deterministic(device):
    lengths, d = ([1, 17, 300], 64) if device == "cpu" else ([2615, 1, 17, 300, 250] * 20, 2048)
    w, x, cu, grad = _inputs(lengths, 21, d, seed=7, device=device)
    for a, b in zip(_run(w, x, cu, grad, "triton"), _run(w, x, cu, grad, "triton")):
        assert torch.equal(a, b)


def test_gradcheck_float64_triton():
    w, x, cu, _ = _inputs([1, 3, 2], 3, 5, seed=3, dtype=torch.float64)
    torch.autograd.gradcheck(lambda a, b: segment_matmul(a, b, cu, impl="triton"),
                             (w.requires_grad_(), x.requires_grad_()), fast_mode=True)


def test_opcheck():
    w, x, cu, grad = _inputs([1, 3], 4, 16, seed=4)
    opcheck(torch.ops.rs_kernels.segment_matmul_fwd, (w, x, *op_offsets(cu)))
    opcheck(torch.ops.rs_kernels.segment_matmul_bwd, (grad, w, x, *op_offsets(cu)))


def test_flop_formulas_registered():
    w, x, cu, grad = _inputs([5, 11], 21, 32, seed=5)
    x.requires_grad_()
    with FlopCounterMode(display=False) as counter:
        segment_matmul(w, x, cu, impl="triton").backward(grad)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert counts["rs_kernels.segment_matmul_fwd"] == 2 * 16 * 21 * 32
    assert counts["rs_kernels.segment_matmul_bwd"] == 4 * 16 * 21 * 32


def test_dispatch():
    w, x, cu, _ = _inputs([3, 4], 5, 16)
    ref = reference.segment_matmul(w, x, cu)
    assert torch.equal(segment_matmul(w, x, cu), ref)  # auto on CPU -> reference
    assert _rel(segment_matmul(w, x, cu, impl="triton"), ref) <= FWD_TOL


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_errors_name_the_argument(impl):
    w, x, cu, _ = _inputs([3, 4], 5, 16)
    with pytest.raises(ValueError, match="^w must be"):
        segment_matmul(w[:5], x, cu, impl=impl)
    with pytest.raises(ValueError, match="^w must have"):
        segment_matmul(w.double(), x, cu, impl=impl)
    with pytest.raises(ValueError, match="^cu_seqlens"):
        segment_matmul(w, x, torch.tensor([0, 3, 6]), impl=impl)
    with pytest.raises(ValueError, match="x must be"):
        segment_matmul(w, x[0], cu, impl=impl)
