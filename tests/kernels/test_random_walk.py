"""The Triton random-walk op against the float64 reference (CPU: Triton's interpreter).

Forward <= 1e-5 and every gradient (x and y) <= 1e-4 relative (||out - ref|| / ||ref||), on fresh
random inputs, with every buffer the launchers allocate pre-filled with NaN.
"""
import pytest
import torch
from helpers import DEVICES, FWD_TOL, GRAD_TOL, op_offsets
from helpers import rel_error as _rel
from torch.library import opcheck
from torch.utils.flop_counter import FlopCounterMode

from rs_kernels import random_walk, reference
from rs_kernels.varlen import cu_seqlens_from_lengths

pytestmark = pytest.mark.usefixtures("nan_buffers")


def _inputs(lengths, ms, d, kind="relu", seed=0, device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lengths), d, generator=gen, dtype=torch.float64)
    y = torch.randn(sum(ms), d, generator=gen, dtype=torch.float64)
    if kind == "relu":  # snippets and representatives (EM means, memory-bank snippets) are non-negative
        x, y = x.relu(), y.relu()
    grad = torch.randn(sum(lengths), d, generator=gen, dtype=torch.float64)
    cu, ycu = cu_seqlens_from_lengths(lengths).to(device), cu_seqlens_from_lengths(ms).to(device)
    return x.to(device, dtype), cu, y.to(device, dtype), ycu, grad.to(device, dtype)


def _run(x, cu, y, ycu, grad, impl, w=0.5, tau=5.0):
    x = x.detach().clone().requires_grad_()
    y = y.detach().clone().requires_grad_()
    out = random_walk(x, cu, y, ycu, w=w, tau=tau, impl=impl)
    out.backward(grad)
    return out.detach(), x.grad, y.grad


def _reference(x, cu, y, ycu, grad, w=0.5, tau=5.0):
    x = x.detach().cpu().double().requires_grad_()
    y = y.detach().cpu().double().requires_grad_()
    out = reference.random_walk(x, cu.cpu(), y, ycu.cpu(), w=w, tau=tau)
    out.backward(grad.cpu().double())
    return out.detach(), x.grad, y.grad


CASES = {  # name: (lengths, M per video, D, kind)
    "T1_M1": ([1], [1], 64, "relu"),
    "T17_M5": ([17], [5], 64, "mixed"),
    "T1000_M20": ([1000], [20], 64, "relu"),
    "B5_mixed": ([1, 17, 1000, 5, 250], [0, 1, 5, 20, 8], 64, "relu"),
    "B5_mixed_features": ([250, 1, 17, 64, 33], [8, 20, 0, 5, 1], 64, "mixed"),
    "B2_no_representatives": ([17, 3], [0, 0], 64, "relu"),
    "odd_D": ([17, 40], [3, 5], 33, "mixed"),
    "D2048": ([3, 17], [5, 1], 2048, "relu"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_reference(case, device):
    lengths, ms, d, kind = CASES[case]
    x, cu, y, ycu, grad = _inputs(lengths, ms, d, kind=kind, seed=len(case), device=device)
    out, dx, dy = _run(x, cu, y, ycu, grad, "triton")
    ref, rdx, rdy = _reference(x, cu, y, ycu, grad)
    assert out.dtype == x.dtype and out.shape == ref.shape and dy.shape == y.shape
    errs = {"x*": _rel(out.cpu(), ref), "dx": _rel(dx.cpu(), rdx)}
    if sum(ms):
        errs["dy"] = _rel(dy.cpu(), rdy)
    cu_cpu = cu.cpu()
    per_video = [_rel(out[cu_cpu[b]:cu_cpu[b + 1]].cpu(), ref[cu_cpu[b]:cu_cpu[b + 1]]) for b in range(len(lengths))]
    print(f"{case} {device}: {errs} worst video fwd {max(per_video):.2e}")
    assert max(per_video) <= FWD_TOL, per_video
    assert errs["dx"] <= GRAD_TOL and errs.get("dy", 0.0) <= GRAD_TOL, errs


@pytest.mark.gpu
def test_thumos_shaped_batch_on_gpu():
    """Real sizes on the device: D = 2048, a 2615-snippet video beside short ones, fp32 against float64."""
    x, cu, y, ycu, grad = _inputs([2615, 1, 17, 300, 250], [8, 8, 0, 20, 5], 2048, seed=9, device="cuda")
    out, dx, dy = _run(x, cu, y, ycu, grad, "triton")
    ref, rdx, rdy = _reference(x, cu, y, ycu, grad)
    assert _rel(out.cpu(), ref) <= FWD_TOL
    assert _rel(dx.cpu(), rdx) <= GRAD_TOL and _rel(dy.cpu(), rdy) <= GRAD_TOL


@pytest.mark.parametrize("w,tau", [(0.3, 1.0), (0.9, 20.0)])
def test_other_w_and_tau(w, tau):
    x, cu, y, ycu, grad = _inputs([17, 40], [3, 6], 32, seed=int(tau))
    out, dx, dy = _run(x, cu, y, ycu, grad, "triton", w=w, tau=tau)
    ref, rdx, rdy = _reference(x, cu, y, ycu, grad, w=w, tau=tau)
    assert _rel(out, ref) <= FWD_TOL
    assert _rel(dx, rdx) <= GRAD_TOL and _rel(dy, rdy) <= GRAD_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_bitwise_deterministic(device):
    if device == "cpu":
        lengths, ms, d = [1, 17, 300], [5, 0, 20], 64
    else:
        lengths, ms, d = [2615, 1, 17, 300, 250] * 20, [8, 5, 0, 20, 1] * 20, 2048
    x, cu, y, ycu, grad = _inputs(lengths, ms, d, seed=7, device=device)
    first, second = _run(x, cu, y, ycu, grad, "triton"), _run(x, cu, y, ycu, grad, "triton")
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_gradcheck_float64_triton():
    """gradcheck of the Triton path itself, in float64 (the interpreter's tl.dot runs float64)."""
    x, cu, y, ycu, _ = _inputs([1, 3, 2], [2, 0, 3], 5, kind="mixed", seed=3, dtype=torch.float64)
    torch.autograd.gradcheck(lambda a, b: random_walk(a, cu, b, ycu, impl="triton"),
                             (x.requires_grad_(), y.requires_grad_()), fast_mode=True)


def test_opcheck():
    x, cu, y, ycu, grad = _inputs([1, 3], [2, 0], 16, seed=4)
    offsets = op_offsets(cu)
    opcheck(torch.ops.rs_kernels.random_walk_fwd, (x, *offsets, y, ycu, 2, 0.5, 5.0))
    _, *saved = torch.ops.rs_kernels.random_walk_fwd(x, *offsets, y, ycu, 2, 0.5, 5.0)
    opcheck(torch.ops.rs_kernels.random_walk_bwd, (grad, x, *offsets, y, ycu, *saved, 0.5, 5.0))


def test_flop_formulas_registered():
    x, cu, y, ycu, grad = _inputs([5, 11], [4, 4], 32, seed=5)
    x.requires_grad_()
    with FlopCounterMode(display=False) as counter:
        random_walk(x, cu, y, ycu, impl="triton").backward(grad)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    n, m, d, batch = 16, 4, 32, 2
    solve = int(batch * (2 * m ** 3 / 3 + 2 * m * m * d))  # (B, M, M) LU and the M x D back-substitution
    assert counts["rs_kernels.random_walk_fwd"] == 6 * n * m * d + 2 * n * m * m + solve + 2 * batch * m * m * d
    assert counts["rs_kernels.random_walk_bwd"] == 16 * n * m * d + 2 * n * m * m + solve + 6 * batch * m * m * d


def test_max_m_larger_than_needed_is_fine_and_smaller_fails():
    x, cu, y, ycu, _ = _inputs([5, 11], [3, 2], 16, seed=6)
    ref = reference.random_walk(x.double(), cu, y.double(), ycu)
    out = torch.ops.rs_kernels.random_walk_fwd(x, *op_offsets(cu), y, ycu, 7, 0.5, 5.0)[0]
    assert _rel(out, ref) <= FWD_TOL
    with pytest.raises(RuntimeError, match="max_m = 2 is below"):
        torch.ops.rs_kernels.random_walk_fwd(x, *op_offsets(cu), y, ycu, 2, 0.5, 5.0)


def test_dispatch():
    x, cu, y, ycu, _ = _inputs([3, 4], [2, 1], 16)
    ref = reference.random_walk(x, cu, y, ycu)
    assert torch.equal(random_walk(x, cu, y, ycu), ref)  # auto on CPU -> reference
    assert torch.equal(random_walk(x, cu, y, ycu, impl="reference"), ref)
    assert _rel(random_walk(x, cu, y, ycu, impl="triton"), ref) <= FWD_TOL


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_errors_name_the_argument(impl):
    x, cu, y, ycu, _ = _inputs([3, 4], [2, 1], 16)
    with pytest.raises(ValueError, match="^y must"):
        random_walk(x, cu, y[:, :8], ycu, impl=impl)
    with pytest.raises(ValueError, match="^y must"):
        random_walk(x, cu, y.double(), ycu, impl=impl)
    with pytest.raises(ValueError, match="y_cu_seqlens"):
        random_walk(x, cu, y, ycu[:2], impl=impl)
    with pytest.raises(ValueError, match="y_cu_seqlens"):
        random_walk(x, cu, y, torch.tensor([0, 1, 2]), impl=impl)
    with pytest.raises(ValueError, match="^cu_seqlens"):
        random_walk(x, torch.tensor([0, 3, 6]), y, ycu, impl=impl)
    with pytest.raises(ValueError, match="x must be"):
        random_walk(x[0], cu, y, ycu, impl=impl)
    for w in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"w must be in \[0, 1\)"):
            random_walk(x, cu, y, ycu, w=w, impl=impl)


@pytest.mark.parametrize("ops", ["triton", "padded"])
@pytest.mark.parametrize("device", DEVICES)
def test_model_training_steps_equal_reference(device, ops):
    """Two Adam steps of the RSKP model (both branches) with ops=triton (or the padded baseline)
    equal ops=reference to 1e-5."""
    from rsnet.config import Config
    from rsnet.model import RSKP
    from rsnet.model.losses import rskp_loss

    gen = torch.Generator().manual_seed(11)
    lengths, ms, n_classes = [2, 17, 40], [5, 10, 0], 4
    x = torch.randn(sum(lengths), 32, generator=gen).relu().to(device)
    memory = (torch.randn(sum(ms), 24, generator=gen).relu().to(device), cu_seqlens_from_lengths(ms).to(device))
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.float32, device=device)
    cu = cu_seqlens_from_lengths(lengths).to(device)
    runs = {}
    for impl in ("reference", ops):
        cfg = Config(feature_dim=32, embed_dim=24, ops=impl, lr=1e-2)
        torch.manual_seed(0)  # same init and dropout masks: the ops draw no random numbers
        model = RSKP(cfg, n_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        losses, grads = [], []
        for _ in range(2):
            out = model(x, cu, lambda mu, p_mu: memory)
            loss = rskp_loss(out, labels, cu, cfg, after_warmup=True).total
            opt.zero_grad()
            loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            opt.step()
            losses.append(loss.detach())
        runs[impl] = torch.stack(losses), grads, torch.cat([p.detach().flatten() for p in model.parameters()])
    (ref_loss, ref_grads, ref_params), (loss, grads, params) = runs["reference"], runs[ops]
    print(f"model {ops} {device}: loss {_rel(loss, ref_loss):.1e} grads {[f'{_rel(g, rg):.1e}' for g, rg in zip(grads, ref_grads)]} "
          f"params {_rel(params, ref_params):.1e}")
    assert _rel(loss, ref_loss) <= 1e-5
    for g, rg in zip(grads, ref_grads):
        assert _rel(g, rg) <= 1e-5
    assert _rel(params, ref_params) <= 1e-5
