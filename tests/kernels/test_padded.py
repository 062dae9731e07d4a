"""The padded batched-PyTorch implementation (``impl="padded"``, the benchmarks' baseline) against
the float64 reference: forward and every gradient on odd mixed-length batches, gradcheck, dispatch.

A baseline that computed something else would make every speed ratio against it meaningless, so
it is held to the reference as tightly as float64 allows.
"""
import pytest
import torch
from helpers import DEVICES, FWD_TOL, GRAD_TOL, rel_error

from rs_kernels import em_attention, random_walk, segment_matmul
from rs_kernels.varlen import cu_seqlens_from_lengths

F64_TOL = 1e-12  # padded and reference are the same float64 math in another summation order

LENGTHS = [1, 17, 250, 5, 64]  # T = 1, odd, mixed: most of the (B, T_max) padding is masked
MS = [5, 0, 20, 1, 8]  # M_b = 0 included: a video with no representative gets (1 - w) x


def _tensors(*shapes, seed, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen, dtype=torch.float64).to(device, dtype) for shape in shapes]


def _grads(fn, impl, inputs, grad):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves, impl=impl)
    out.backward(grad)
    return [out.detach()] + [leaf.grad for leaf in leaves]


CU, YCU = cu_seqlens_from_lengths(LENGTHS), cu_seqlens_from_lengths(MS)
OPS = {  # name: (op with its packed offsets bound, input shapes for D)
    "em_shared_mu0": (lambda x, mu0, impl: em_attention(x, CU, mu0, impl=impl), lambda d: [(sum(LENGTHS), d), (8, d)]),
    "em_per_video_mu0": (lambda x, mu0, impl: em_attention(x, CU, mu0, iters=3, tau=2.0, impl=impl),
                         lambda d: [(sum(LENGTHS), d), (len(LENGTHS), 8, d)]),
    "random_walk": (lambda x, y, impl: random_walk(x, CU, y, YCU, w=0.5, impl=impl), lambda d: [(sum(LENGTHS), d), (sum(MS), d)]),
    "segment_matmul": (lambda w, x, impl: segment_matmul(w, x, CU, impl=impl), lambda d: [(sum(LENGTHS), 21), (sum(LENGTHS), d)]),
}


@pytest.mark.parametrize("name", OPS)
def test_float64_equals_reference(name):
    fn, shapes = OPS[name]
    inputs = _tensors(*shapes(33), seed=list(OPS).index(name))
    ref_out = fn(*inputs, impl="reference")
    (grad,) = _tensors(ref_out.shape, seed=7)
    ref = _grads(fn, "reference", inputs, grad)
    got = _grads(fn, "padded", inputs, grad)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert torch.isfinite(a).all(), f"output {i} has NaN/inf"
        assert rel_error(a, b) <= F64_TOL, f"output {i}: {rel_error(a, b):.1e}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPS)
def test_float32_within_kernel_tolerances(name, device):
    """The fp32 baseline is as accurate as the kernels are required to be (D = 2048, THUMOS14's width)."""
    fn, shapes = OPS[name]
    inputs = _tensors(*shapes(2048), seed=3)
    (grad,) = _tensors(fn(*inputs, impl="reference").shape, seed=4)
    ref = _grads(fn, "reference", inputs, grad)
    got = _grads(fn, "padded", [t.to(device, torch.float32) for t in inputs], grad.to(device, torch.float32))
    assert rel_error(got[0].cpu(), ref[0]) <= FWD_TOL
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert rel_error(a.cpu(), b) <= GRAD_TOL


def test_gradcheck():
    lengths, ms = [1, 4, 3], [2, 0, 3]
    cu, ycu = cu_seqlens_from_lengths(lengths), cu_seqlens_from_lengths(ms)
    x, mu0, y, w = (t.requires_grad_() for t in _tensors((8, 5), (3, 5), (5, 5), (8, 4), seed=5))
    assert torch.autograd.gradcheck(lambda x, mu0: em_attention(x, cu, mu0, impl="padded"), (x, mu0))
    assert torch.autograd.gradcheck(lambda x, y: random_walk(x, cu, y, ycu, impl="padded"), (x, y))
    assert torch.autograd.gradcheck(lambda w, x: segment_matmul(w, x, cu, impl="padded"), (w, x))


def test_no_representative_anywhere():
    """Every M_b = 0 (an empty y): X* = (1 - w) X, no NaN from softmaxes over nothing."""
    (x,) = _tensors((sum(LENGTHS), 16), seed=6)
    empty = cu_seqlens_from_lengths([0] * len(LENGTHS))
    out = random_walk(x, CU, x[:0], empty, w=0.25, impl="padded")
    assert torch.equal(out, 0.75 * x)


@pytest.mark.parametrize("name", OPS)
def test_float16_is_finite(name):
    """Float16, whose eps rounds to 0: n(0) of the padded rows is 0/0 and must not reach the real ones."""
    fn, shapes = OPS[name]
    inputs = _tensors(*shapes(16), seed=10)
    (grad,) = _tensors(fn(*inputs, impl="reference").shape, seed=11)
    ref = _grads(fn, "reference", inputs, grad)
    got = _grads(fn, "padded", [t.half() for t in inputs], grad.half())
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert torch.isfinite(a).all(), f"output {i} has NaN/inf"
        assert rel_error(a, b) <= 2e-2, f"output {i}: {rel_error(a, b):.1e}"


@pytest.mark.parametrize("shape", [(8, 16), (len(LENGTHS), 8, 16)])
def test_no_iteration_returns_a_copy_of_mu0(shape):
    (x, mu0) = _tensors((sum(LENGTHS), 16), shape, seed=12)
    mu = em_attention(x, CU, mu0, iters=0, impl="padded")
    assert torch.equal(mu, mu0.expand(len(LENGTHS), 8, 16)) and mu.data_ptr() != mu0.data_ptr()


def test_selected_by_impl_env_and_config(monkeypatch):
    """impl="padded", RS_KERNELS_IMPL=padded and the model's ops="padded" each reach rs_kernels.padded."""
    from rs_kernels import padded
    from rsnet.config import Config, validate
    from rsnet.model import RSKP

    calls = []
    for op in ("em_attention", "random_walk", "segment_matmul"):
        real = getattr(padded, op)
        monkeypatch.setattr(padded, op, lambda *args, _op=op, _real=real, **kw: calls.append(_op) or _real(*args, **kw))
    x, mu0, y, w = _tensors((sum(LENGTHS), 16), (8, 16), (sum(MS), 16), (sum(LENGTHS), 21), seed=8)
    runs = [lambda impl: em_attention(x, CU, mu0, impl=impl), lambda impl: random_walk(x, CU, y, YCU, impl=impl),
            lambda impl: segment_matmul(w, x, CU, impl=impl)]
    for run in runs:
        run("padded")
    assert calls == ["em_attention", "random_walk", "segment_matmul"]
    monkeypatch.setenv("RS_KERNELS_IMPL", "padded")
    for run in runs:
        run(None)
    assert len(calls) == 6
    monkeypatch.delenv("RS_KERNELS_IMPL")
    calls.clear()
    RSKP(Config(feature_dim=16, embed_dim=12, ops="padded"), 3)(x.float(), CU)
    assert set(calls) == {"em_attention", "random_walk", "segment_matmul"}
    with pytest.raises(ValueError, match="ops must be one of auto, triton, reference, padded"):
        validate(Config(ops="dense"))


def test_model_compiles_with_padded_ops():
    """``torch.compile(model, dynamic=True)`` with ops=padded (bench/train_speed.py's compiled
    baseline) equals eager, and once warm a step of new lengths compiles nothing new: the
    host-offset reads stay out of the graphs (inductor failed on their symbolic ints, and guards
    on the lengths recompiled every batch until the recompile limit fell back to eager)."""
    from torch._dynamo.utils import counters

    from rsnet.config import Config
    from rsnet.model import RSKP
    from rsnet.model.losses import rskp_loss

    torch.manual_seed(0)
    model = RSKP(Config(feature_dim=16, embed_dim=12, ops="padded", dropout=0.0), 3)
    compiled = torch.compile(model, dynamic=True)
    gen = torch.Generator().manual_seed(9)
    # three videos a step, as the trainer's steps hold a fixed number (a new count may compile anew)
    for step, lengths in enumerate(([3, 9, 1], [7, 2, 5], [4, 11, 6], [8, 1, 12], [2, 6, 13])):
        if step == 3:
            graphs = counters["stats"]["unique_graphs"]
            assert graphs > 0, "nothing was compiled"
        cu = cu_seqlens_from_lengths(lengths)
        x = torch.randn(sum(lengths), 16, generator=gen).relu()
        labels = torch.eye(3)[torch.arange(len(lengths)) % 3]
        results = []
        for fn in (model, compiled):
            loss = rskp_loss(fn(x, cu), labels, cu, model.cfg, after_warmup=False).total
            results.append((loss.detach(), torch.autograd.grad(loss, list(model.parameters()))))
        (loss, grads), (loss_c, grads_c) = results
        assert rel_error(loss_c, loss) <= 1e-5
        for g, gc in zip(grads, grads_c, strict=True):
            assert torch.isfinite(gc).all() and rel_error(gc, g) <= 1e-4
    assert counters["stats"]["unique_graphs"] == graphs, "steps of new lengths compiled new graphs"


def test_reference_and_padded_paths_run_without_triton():
    """Triton is imported on the Triton path only: with it unimportable, ``import rs_kernels`` and
    the reference and padded ops, forward and backward, still work (CPU-only installs, macOS)."""
    import subprocess
    import sys
    from pathlib import Path

    script = """
import importlib.abc, sys
class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, NoTriton())
import torch
import rs_kernels
from rs_kernels import cu_seqlens_from_lengths
cu, ycu = cu_seqlens_from_lengths([3, 1, 4]), cu_seqlens_from_lengths([2, 0, 1])
x, mu0, y, w = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((8, 5), (2, 5), (3, 5), (8, 4)))
for impl in ("reference", "padded"):
    out = (rs_kernels.em_attention(x, cu, mu0, impl=impl).sum() + rs_kernels.random_walk(x, cu, y, ycu, impl=impl).sum()
           + rs_kernels.segment_matmul(w, x, cu, impl=impl).sum())
    out.backward()
assert not [m for m in sys.modules if m == "triton" or m.startswith("triton.")]
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
