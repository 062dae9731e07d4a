"""The csrc/ memory-bank extension: registration, bit-exact equality with the reference, errors.

The spec is ``rs_kernels.reference.membank_*`` (plus ``bank.index_select(0, index)`` for the
momentum read). "Equal" here means equal bits: floats are compared through an integer view, so
-0.0 != 0.0 and every rounding counts.
"""
from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
import zlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import ShapeEnv, free_unbacked_symbols

from rs_kernels import membank, reference

try:
    membank.load_extension()
except ImportError as err:  # the extension is optional: CI without a compiler skips these tests
    pytest.skip(f"the csrc/ extension rs_kernels._C is not built ({err}); build it with `pip install -e .`",
                allow_module_level=True)

ops = torch.ops.rs_kernels
BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
        torch.bfloat16: torch.int16}


def assert_bits(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    a, e = actual.detach().cpu(), expected.detach().cpu()
    if a.dtype in BITS:
        a, e = a.contiguous().view(BITS[a.dtype]), e.contiguous().view(BITS[e.dtype])
    if not torch.equal(a, e):
        bad = (a != e).nonzero()[:5].tolist()
        raise AssertionError(f"{what}: differs at {bad} (of {int((a != e).sum())} elements)")


# --- random inputs ---------------------------------------------------------------------------------

def random_scores(gen: torch.Generator, shape, dtype, specials: bool) -> torch.Tensor:
    """Scores on a coarse grid (many ties), sometimes -0.0, +-inf."""
    s = torch.randint(0, 6, shape, generator=gen).to(torch.float64) / 5
    if specials:
        u = torch.rand(shape, generator=gen)
        s = torch.where(u < 0.05, torch.tensor(-0.0, dtype=torch.float64), s)
        s = torch.where((u >= 0.05) & (u < 0.08), torch.tensor(float("inf"), dtype=torch.float64), s)
        s = torch.where((u >= 0.08) & (u < 0.11), torch.tensor(float("-inf"), dtype=torch.float64), s)
    return s.to(dtype)


def random_labels(gen: torch.Generator, batch: int, n_class: int, dtype=torch.bool) -> torch.Tensor:
    labels = torch.rand(batch, n_class, generator=gen) < 0.35
    labels[:, -1] = False  # a class no video ever has
    return labels.to(dtype)


def arbitrary_insert(gen: torch.Generator, n_class: int, slots: int, dim: int, batch: int, k: int):
    """((bank, scores, count), (cand, cand_scores, labels)) from any valid state: slots out of score
    order, garbage past the fill count, +-inf and -0.0 scores."""
    bank = torch.randn(n_class, slots, dim, generator=gen)
    scores = random_scores(gen, (n_class, slots), torch.float32, True)
    count = torch.randint(0, slots + 1, (n_class,), generator=gen)
    cand = torch.randn(batch, k, dim, generator=gen)
    cand_scores = random_scores(gen, (batch, k, n_class), torch.float32, True)
    return (bank, scores, count), (cand, cand_scores, random_labels(gen, batch, n_class))


class ClassBank:
    def __init__(self, n_class, slots, dim, dtype, sdtype, device="cpu"):
        self.bank = torch.zeros(n_class, slots, dim, dtype=dtype, device=device)
        self.scores = torch.zeros(n_class, slots, dtype=sdtype, device=device)
        self.count = torch.zeros(n_class, dtype=torch.int64, device=device)

    def clone(self, device=None):
        other = ClassBank.__new__(ClassBank)
        for name in ("bank", "scores", "count"):
            setattr(other, name, getattr(self, name).clone().to(device or getattr(self, name).device))
        return other

    def assert_equal(self, other, what):
        assert_bits(self.bank, other.bank, f"{what}: bank")
        assert_bits(self.scores, other.scores, f"{what}: scores")
        assert_bits(self.count, other.count, f"{what}: count")


def run_sequence(seed, steps, n_class, slots, dim, dtype, sdtype, specials):
    """Random fills, inserts and reads, each checked bit for bit against the reference."""
    gen = torch.Generator().manual_seed(seed)
    ours = ClassBank(n_class, slots, dim, dtype, sdtype)
    ref = ours.clone()
    for step in range(steps):
        roll = torch.rand((), generator=gen).item()
        if roll < 0.03:  # start again, as a new warm-up fill would
            for bank in (ours, ref):
                bank.bank.zero_(), bank.scores.zero_(), bank.count.zero_()
            continue
        if roll < 0.08:
            batch = int(torch.randint(20, 70, (), generator=gen))  # a fill: many videos at once
        else:
            batch = [0, 1, 2, 3, 10][int(torch.randint(0, 5, (), generator=gen))]
        k = [1, 2, slots, slots + 3, 8][int(torch.randint(0, 5, (), generator=gen))]
        cand = torch.randn(batch, k, dim, generator=gen).to(dtype)
        cand_scores = random_scores(gen, (batch, k, n_class), sdtype, specials)
        labels = random_labels(gen, batch, n_class)
        membank.membank_insert_topk_(ours.bank, ours.scores, ours.count, cand, cand_scores, labels)
        reference.membank_insert_topk_(ref.bank, ref.scores, ref.count, cand, cand_scores, labels)
        ours.assert_equal(ref, f"step {step} insert (B={batch}, K={k})")
        read_labels = random_labels(gen, int(torch.randint(0, 7, (), generator=gen)), n_class)
        y, cu = membank.membank_gather(ours.bank, ours.count, read_labels)
        y_ref, cu_ref = reference.membank_gather(ref.bank, ref.count, read_labels)
        assert_bits(y, y_ref, f"step {step} gather y")
        assert_bits(cu.cu_seqlens, cu_ref, f"step {step} gather y_cu_seqlens")
        assert cu.offsets == tuple(cu_ref.tolist()), f"step {step} gather host offsets"
    return ours


# --- registration ----------------------------------------------------------------------------------

def sample_class_bank(device="cpu", batch=3, k=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = ClassBank(5, 4, 6, torch.float32, torch.float32)
    cand = torch.randn(batch, k, 6, generator=gen)
    cand_scores = random_scores(gen, (batch, k, 5), torch.float32, False)
    labels = random_labels(gen, batch, 5)
    labels[0, 0] = True
    reference.membank_insert_topk_(state.bank, state.scores, state.count, cand, cand_scores, labels)
    cand2 = torch.randn(batch, k, 6, generator=gen)
    to = dict(device=device)
    return (state.bank.to(**to), state.scores.to(**to), state.count.to(**to), cand2.to(**to),
            cand_scores.to(**to), labels.to(**to))


def opcheck_all(device):
    bank, scores, count, cand, cand_scores, labels = sample_class_bank(device)
    torch.library.opcheck(ops.membank_gather.default, (bank, count, labels))
    torch.library.opcheck(ops.membank_gather.default, (bank, count, labels[:0]))
    torch.library.opcheck(ops.membank_gather_check.default, (bank, count, labels))
    torch.library.opcheck(ops.membank_insert_topk_.default, (bank, scores, count, cand, cand_scores, labels))
    torch.library.opcheck(ops.membank_insert_topk_.default,
                          (bank, scores, count, cand[:0], cand_scores[:0], labels[:0]))
    torch.library.opcheck(ops.membank_gather_insert_.default, (bank, scores, count, cand, cand_scores, labels))
    torch.library.opcheck(ops.membank_gather_insert_.default,
                          (bank, scores, count, cand[:0], cand_scores[:0], labels[:0]))
    vbank = torch.randn(4, 3, 6, device=device)
    index = torch.tensor([2, 0, 2], device=device)
    torch.library.opcheck(ops.membank_momentum_.default, (vbank, index, torch.randn(3, 3, 6, device=device), 0.9))
    torch.library.opcheck(ops.membank_momentum_read.default, (vbank, index))


@pytest.mark.slow  # torch.library's opcheck runs each op many times
def test_opcheck_cpu():
    opcheck_all("cpu")


def test_symbolic_trace_has_each_output_shape():
    """make_fx on symbolic shapes, as torch.compile(dynamic=True) traces: the Meta kernels (and the
    gather's fake kernel) give every output's shape in the inputs' symbols -- the gathered rows an
    unbacked size -- and the graph, run on the real inputs, equals the eager ops."""
    state = sample_class_bank()  # bank (5, 4, 6), 3 videos, K = 7
    per_video = torch.randn(7, 2, 9), torch.tensor([2, 0, 2, 6, 1]), torch.randn(5, 2, 9)  # bank, index, cand

    def step(bank, scores, count, cand, cand_scores, labels, vbank, index, vcand):
        y, cu = ops.membank_gather(bank, count, labels)
        ops.membank_insert_topk_(bank, scores, count, cand, cand_scores, labels)
        ops.membank_momentum_(vbank, index, vcand, 0.5)
        return y, cu, ops.membank_momentum_read(vbank, index)

    graph = make_fx(step, tracing_mode="symbolic")(*state, *per_video)
    called = {n.target for n in graph.graph.nodes if n.op == "call_function"}
    assert {ops.membank_gather.default, ops.membank_insert_topk_.default, ops.membank_momentum_.default,
            ops.membank_momentum_read.default} <= called
    y, cu, read = (n.meta["val"] for n in graph.graph.output_node().args[0])
    assert free_unbacked_symbols(y.shape[0])  # the gathered rows: known only when the op runs
    sizes = (y.shape[1], cu.shape[0], *read.shape)
    assert all(isinstance(d, torch.SymInt) for d in sizes)  # in the inputs' symbols, not constants
    assert [d.node.hint for d in sizes] == [6, 4, 5, 2, 9]

    eager = [t.clone() for t in (*state, *per_video)]
    traced = [t.clone() for t in (*state, *per_video)]
    for got, want in zip(graph(*traced), step(*eager)):
        assert_bits(got, want)
    for got, want in zip(traced, eager):
        assert_bits(got, want)


def test_ops_compile_to_one_graph():
    """torch.compile(fullgraph=True) goes through the gather op (its data-dependent row count) and a
    wrapper with its extension loader. (The gather wrapper itself reads the offsets to the host to
    hand back a Varlen: eager by design.)"""
    bank, scores, count, cand, cand_scores, labels = sample_class_bank()
    membank.load_extension()  # registers the gather op's fake kernel

    def read_twice(bank, count, labels, vbank, index):
        y, cu = torch.ops.rs_kernels.membank_gather(bank, count, labels)
        return 2 * y, cu, membank.membank_momentum_read(vbank, index) + 1

    vbank, index = torch.randn(4, 3, 6), torch.tensor([2, 0, 2])
    compiled = torch.compile(read_twice, fullgraph=True, dynamic=True, backend="eager")
    for got, want in zip(compiled(bank, count, labels, vbank, index), read_twice(bank, count, labels, vbank, index)):
        assert_bits(got, want)


def test_docstring_examples():
    result = doctest.testmod(membank, raise_on_error=False)
    assert result.attempted >= 4 and result.failed == 0


def test_no_gradient_through_the_bank():
    bank = torch.randn(3, 2, 4, requires_grad=True)
    y, _ = membank.membank_gather(bank, torch.tensor([2, 0, 1]), torch.tensor([[True, False, True]]))
    with pytest.raises(RuntimeError, match="not implemented"):
        y.sum().backward()


@pytest.mark.slow  # two interpreters, each importing torch and loading the extension
def test_namespace_shared_with_python_custom_ops():
    """Python custom ops in rs_kernels:: coexist with the extension's TORCH_LIBRARY, defined before
    it loads (the package's em_attention / random_walk ops, and the probe when before=False) or after."""
    code = textwrap.dedent("""
        import torch
        if {before}:
            import rs_kernels._C
        @torch.library.custom_op("rs_kernels::_coexist_probe", mutates_args=())
        def probe(x: torch.Tensor) -> torch.Tensor:
            return x + 1
        import rs_kernels.membank as mb
        mb.load_extension()  # loads the library here when before=False, after the probe's definition
        assert torch.equal(torch.ops.rs_kernels._coexist_probe(torch.zeros(2)), torch.ones(2))
        assert torch.ops.rs_kernels.em_attention_fwd is not None and torch.ops.rs_kernels.random_walk_fwd is not None
        y, cu = torch.ops.rs_kernels.membank_gather(torch.ones(2, 1, 3), torch.tensor([1, 1]),
                                                    torch.tensor([[True, True]]))
        assert y.shape == (2, 3) and cu.tolist() == [0, 2]
        print("ok")
    """)
    for before in (True, False):
        out = subprocess.run([sys.executable, "-c", code.format(before=before)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- bit-exact equality with the reference, CPU ----------------------------------------------------

# (bank dtype, score dtype, whether the scores also hold -0.0 and +-inf; ties are always there)
DTYPE_CASES = [
    (torch.float32, torch.float32, False),
    (torch.float32, torch.float32, True),
    *(pytest.param(*case, marks=pytest.mark.slow) for case in [  # the other dtypes in the full suite
        (torch.float64, torch.float64, True),
        (torch.float16, torch.float32, True),
        (torch.bfloat16, torch.float16, False),
    ]),
]


@pytest.mark.parametrize("dtype,sdtype,specials", DTYPE_CASES)
def test_class_bank_sequence_equals_reference(dtype, sdtype, specials):
    seed = zlib.crc32(repr((dtype, sdtype, specials)).encode()) % 1000  # hash() of a str differs per process
    run_sequence(seed=seed, steps=300, n_class=7, slots=5, dim=6, dtype=dtype, sdtype=sdtype, specials=specials)


def test_class_bank_thumos_shapes_equal_reference():
    """C = 20, S = 5, D = 2048, a step of 10 videos with K = 8, many steps."""
    run_sequence(seed=7, steps=120, n_class=20, slots=5, dim=2048, dtype=torch.float32, sdtype=torch.float32,
                 specials=False)


def test_insert_k_larger_than_slots_and_unfilled_rows():
    bank, scores, count = torch.zeros(2, 2, 3), torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64)
    cand = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3) - 10  # negative rows too
    cand_scores = torch.tensor([0.1, 0.7, 0.7, 0.2, 0.9]).repeat(2, 1)[:, :, None].repeat(1, 1, 2)
    labels = torch.tensor([[True, False], [True, False]])
    ref = [t.clone() for t in (bank, scores, count)]
    membank.membank_insert_topk_(bank, scores, count, cand, cand_scores, labels)
    reference.membank_insert_topk_(*ref, cand, cand_scores, labels)
    for got, want in zip((bank, scores, count), ref):
        assert_bits(got, want)
    assert count.tolist() == [2, 0]
    assert_bits(bank[0], cand[:, 4])  # the two 0.9s, video 0's first; the 0.7s lose
    assert_bits(bank[1], torch.zeros(2, 3))  # the class no video has stays empty, zero rows
    assert_bits(scores[1], torch.zeros(2))


def test_insert_corner_cases_equal_reference():
    """-inf scores rank with the unfilled slots (by pool position); dropped rows are multiplied by
    zero, so garbage left in unfilled slots comes out as +-0.0 -- bit for bit as the reference."""
    gen = torch.Generator().manual_seed(4)
    bank = -torch.rand(3, 4, 5, generator=gen) - 1  # negative garbage in every slot
    scores = torch.tensor([[0.5, float("-inf"), 0.0, 0.0], [0.0] * 4, [float("inf"), 0.2, 0.1, 0.0]])
    count = torch.tensor([2, 0, 3])
    cand = torch.randn(3, 1, 5, generator=gen)
    cand_scores = torch.tensor([[[float("-inf"), float("-inf"), 0.3]], [[0.7, -0.0, float("-inf")]],
                                [[0.0, float("-inf"), float("inf")]]])
    labels = torch.tensor([[True, True, False], [False, True, True], [True, False, True]])
    ref = [t.clone() for t in (bank, scores, count)]
    membank.membank_insert_topk_(bank, scores, count, cand, cand_scores, labels)
    reference.membank_insert_topk_(*ref, cand, cand_scores, labels)
    for got, want in zip((bank, scores, count), ref):
        assert_bits(got, want)
    assert (scores == float("-inf")).any() and (bank.view(torch.int32) == -2**31).any()  # -inf kept, -0.0 rows


def test_insert_reorders_unsorted_slots_as_the_reference():
    """Filled slots out of score order (not the bank's invariant, but a valid input) move up too."""
    gen = torch.Generator().manual_seed(5)
    for step in range(50):
        state, step_inputs = arbitrary_insert(gen, 4, 5, 3, batch=2, k=3)
        ref = [t.clone() for t in state]
        membank.membank_insert_topk_(*state, *step_inputs)
        reference.membank_insert_topk_(*ref, *step_inputs)
        for got, want in zip(state, ref):
            assert_bits(got, want, f"step {step}")


def test_non_contiguous_state_is_updated_in_place():
    gen = torch.Generator().manual_seed(3)
    storage = torch.zeros(4, 6, 3)  # (C, D, S) storage, used as a (C, S, D) view
    bank = storage.transpose(1, 2)
    scores_storage = torch.zeros(3, 4)
    scores = scores_storage.T
    count = torch.zeros(8, dtype=torch.int64)[::2]
    ref = [bank.contiguous(), scores.contiguous(), count.contiguous()]
    for _ in range(20):
        cand = torch.randn(3, 4, 6, generator=gen)
        cs = random_scores(gen, (3, 4, 4), torch.float32, True)
        labels = random_labels(gen, 3, 4, dtype=torch.float32)  # 0/1 floats are accepted
        membank.membank_insert_topk_(bank, scores, count, cand, cs, labels)
        reference.membank_insert_topk_(*ref, cand, cs, labels)
        for got, want in zip((bank, scores, count), ref):
            assert_bits(got, want)
    assert storage.abs().sum() > 0


def test_gather_empty_cases():
    bank = torch.randn(3, 4, 5)
    count = torch.tensor([0, 4, 2])
    y, cu = membank.membank_gather(bank, count, torch.zeros(0, 3, dtype=torch.bool))
    assert y.shape == (0, 5) and cu.offsets == (0,)
    y, cu = membank.membank_gather(bank, count, torch.tensor([[True, False, False], [False, False, False]]))
    assert y.shape == (0, 5) and cu.offsets == (0, 0, 0)
    y, cu = membank.membank_gather(bank, count, torch.tensor([[1, 1, 1]], dtype=torch.uint8))
    assert_bits(y, torch.cat([bank[1], bank[2, :2]]))
    assert cu.offsets == (0, 6) and cu.cu_seqlens.tolist() == [0, 6]


def test_momentum_sequence_equals_reference():
    gen = torch.Generator().manual_seed(11)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        bank = torch.randn(9, 4, 37, generator=gen).to(dtype)
        ref = bank.clone()
        for step in range(200):
            batch = int(torch.randint(0, 12, (), generator=gen))
            index = torch.randint(0, 9, (batch,), generator=gen)  # repeats: updated twice, in order
            cand = torch.randn(batch, 4, 37, generator=gen).to(dtype)
            m = [0.0, 1.0, 0.5, 0.9, 0.999, 0.1][step % 6]
            membank.membank_momentum_(bank, index, cand, m)
            reference.membank_momentum_(ref, index, cand, m)
            assert_bits(bank, ref, f"{dtype} step {step} momentum")
            read = torch.randint(0, 9, (int(torch.randint(0, 6, (), generator=gen)),), generator=gen)
            assert_bits(membank.membank_momentum_read(bank, read), ref.index_select(0, read), f"{dtype} read")


def test_momentum_non_contiguous_bank():
    storage = torch.randn(5, 8, 3)
    bank = storage.transpose(1, 2)  # (V, K=3, D=8) view
    ref = bank.contiguous()
    index, cand = torch.tensor([4, 1, 4]), torch.randn(3, 3, 8)
    membank.membank_momentum_(bank, index, cand, 0.7)
    reference.membank_momentum_(ref, index, cand, 0.7)
    assert_bits(bank, ref)


# --- gather + insert in video order: the official per-video loop, bit for bit ---------------------

def random_step_labels(gen: torch.Generator, batch: int, n_class: int) -> torch.Tensor:
    """random_labels, and now and then a video without any class."""
    labels = random_labels(gen, batch, n_class)
    if batch and torch.rand((), generator=gen) < 0.3:
        labels[int(torch.randint(0, batch, (), generator=gen))] = False
    return labels


def check_gather_insert(ours: ClassBank, cand, cand_scores, labels, what, cpu: ClassBank | None = None):
    """One membank_gather_insert_ on ``ours`` equals the reference loop on a copy, and its final bank one
    batched insert; on CUDA (``cpu`` given: the same bank on the CPU) it equals the CPU op too."""
    loop, batched = ours.clone("cpu"), ours.clone("cpu")
    device = ours.bank.device
    y, cu = membank.membank_gather_insert_(ours.bank, ours.scores, ours.count, cand.to(device),
                                           cand_scores.to(device), labels.to(device))
    y_ref, cu_ref = reference.membank_gather_insert_(loop.bank, loop.scores, loop.count, cand, cand_scores, labels)
    reference.membank_insert_topk_(batched.bank, batched.scores, batched.count, cand, cand_scores, labels)
    assert y.device == device and cu.cu_seqlens.device == device
    assert_bits(y, y_ref, f"{what}: y")
    assert_bits(cu.cu_seqlens, cu_ref, f"{what}: y_cu_seqlens")
    assert cu.offsets == tuple(cu_ref.tolist()), f"{what}: host offsets"
    ours.assert_equal(loop, f"{what}: the loop's final bank")
    ours.assert_equal(batched, f"{what}: one batched insert")
    if cpu is not None:
        y_cpu, cu_cpu = membank.membank_gather_insert_(cpu.bank, cpu.scores, cpu.count, cand, cand_scores, labels)
        assert_bits(y, y_cpu, f"{what}: cuda y")
        assert cu.offsets == cu_cpu.offsets, f"{what}: cuda offsets"
        ours.assert_equal(cpu, f"{what}: cuda bank")
    return y, cu


def run_gather_insert_sequence(seed, steps, n_class, slots, dim, dtype, sdtype, specials, device="cpu"):
    """Random steps (B = 0 to 25, K below and above S, tied scores) on a bank filled and emptied on
    the way (classes partly filled), each checked by check_gather_insert."""
    gen = torch.Generator().manual_seed(seed)
    ours = ClassBank(n_class, slots, dim, dtype, sdtype, device)
    cpu = ours.clone("cpu") if device != "cpu" else None
    shared = 0
    for step in range(steps):
        if torch.rand((), generator=gen) < 0.05:  # start again: classes fill up anew
            for bank in (ours, cpu) if cpu is not None else (ours,):
                bank.bank.zero_(), bank.scores.zero_(), bank.count.zero_()
        batch = [0, 1, 2, 3, 10, 25][int(torch.randint(0, 6, (), generator=gen))]
        k = [1, 2, slots, slots + 3][int(torch.randint(0, 4, (), generator=gen))]
        cand = torch.randn(batch, k, dim, generator=gen).to(dtype)
        cand_scores = random_scores(gen, (batch, k, n_class), sdtype, specials)
        labels = random_step_labels(gen, batch, n_class)
        check_gather_insert(ours, cand, cand_scores, labels, f"step {step} (B={batch}, K={k})", cpu)
        shared += int((labels.sum(0) > 1).any())
    assert shared > steps // 4  # videos of one batch sharing a class: what tells the order apart


@pytest.mark.parametrize("dtype,sdtype,specials", DTYPE_CASES)
def test_gather_insert_equals_reference_loop(dtype, sdtype, specials):
    seed = zlib.crc32(repr(("gather_insert", dtype, sdtype, specials)).encode()) % 1000
    run_gather_insert_sequence(seed, steps=150, n_class=7, slots=5, dim=3, dtype=dtype, sdtype=sdtype,
                               specials=specials)


@pytest.mark.parametrize("n_class,slots,dim,steps", [(2, 1, 1, 40), (4, 3, 9, 40), (20, 5, 2048, 12)])
def test_gather_insert_shapes_equal_reference_loop(n_class, slots, dim, steps):
    """One slot and one class videos have (random_labels leaves the last class out); odd shapes;
    THUMOS14's (C = 20, S = 5, D = 2048)."""
    run_gather_insert_sequence(seed=n_class, steps=steps, n_class=n_class, slots=slots, dim=dim, dtype=torch.float32,
                               sdtype=torch.float32, specials=True)


def test_gather_insert_reads_in_video_order():
    """Video b reads what videos before it inserted, not the bank the batch started from."""
    bank, scores, count = torch.zeros(2, 3, 1), torch.zeros(2, 3), torch.tensor([1, 0])
    bank[0, 0], scores[0, 0] = 7.0, 0.5
    cand = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]])  # (B=3, K=2, D=1)
    cand_scores = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])[:, :, None].expand(3, 2, 2).contiguous()
    labels = torch.tensor([[True, False], [True, True], [False, True]])
    y, cu = membank.membank_gather_insert_(bank, scores, count, cand, cand_scores, labels)
    assert cu.offsets == (0, 1, 4, 6)
    # video 0: class 0 as it was; video 1: class 0 after video 0 (0.9, then the tie 0.5 of the slot
    # before video 0's), class 1 empty; video 2: class 1 after video 1 (its tied 0.5s, k order)
    assert y.flatten().tolist() == [7.0, 1.0, 7.0, 2.0, 3.0, 4.0]
    assert bank[0].flatten().tolist() == [1.0, 7.0, 3.0] and bank[1].flatten().tolist() == [6.0, 3.0, 4.0]
    assert count.tolist() == [3, 3]


def test_gather_insert_from_arbitrary_states_equals_reference_loop():
    """Unsorted slots, garbage rows and scores in unfilled slots, -inf and -0.0 scores: the loop's
    reads and final bank, bit for bit (one batched insert may differ here: not a bank's layout)."""
    gen = torch.Generator().manual_seed(8)
    for step in range(60):
        batch, k = int(torch.randint(0, 6, (), generator=gen)), int(torch.randint(0, 8, (), generator=gen))
        (bank, scores, count), (cand, cand_scores, _) = arbitrary_insert(gen, 4, 5, 3, batch, k)
        labels = random_step_labels(gen, batch, 4)
        loop = [t.clone() for t in (bank, scores, count)]
        y, cu = membank.membank_gather_insert_(bank, scores, count, cand, cand_scores, labels)
        y_ref, cu_ref = reference.membank_gather_insert_(*loop, cand, cand_scores, labels)
        assert_bits(y, y_ref, f"step {step}: y")
        assert cu.offsets == tuple(cu_ref.tolist()), f"step {step}"
        for got, want in zip((bank, scores, count), loop):
            assert_bits(got, want, f"step {step}")


def test_gather_insert_empty_cases():
    """B = 0 changes nothing; videos without classes read nothing; K = 0 inserts nothing."""
    bank, scores, count, cand, cand_scores, labels = sample_class_bank()
    before = [t.clone() for t in (bank, scores, count)]
    y, cu = membank.membank_gather_insert_(bank, scores, count, cand[:0], cand_scores[:0], labels[:0])
    assert y.shape == (0, 6) and cu.offsets == (0,)
    for got, want in zip((bank, scores, count), before):
        assert_bits(got, want)
    y, cu = membank.membank_gather_insert_(bank, scores, count, cand, cand_scores, torch.zeros_like(labels))
    assert y.shape == (0, 6) and cu.offsets == (0, 0, 0, 0)
    state = ClassBank(5, 4, 6, torch.float32, torch.float32)
    state.bank, state.scores, state.count = bank, scores, count
    check_gather_insert(state, cand[:, :0], cand_scores[:, :0], labels, "K = 0")


def test_gather_insert_non_contiguous_state_is_updated_in_place():
    gen = torch.Generator().manual_seed(9)
    storage, scores_storage = torch.zeros(4, 6, 3), torch.zeros(3, 4)
    bank, scores, count = storage.transpose(1, 2), scores_storage.T, torch.zeros(8, dtype=torch.int64)[::2]
    loop = [bank.contiguous(), scores.contiguous(), count.contiguous()]
    for step in range(20):
        cand = torch.randn(3, 2, 6, generator=gen)
        cs = random_scores(gen, (3, 2, 4), torch.float32, True)
        labels = random_labels(gen, 3, 4, dtype=torch.float32)  # 0/1 floats are accepted
        y, _ = membank.membank_gather_insert_(bank, scores, count, cand, cs, labels)
        y_ref, _ = reference.membank_gather_insert_(*loop, cand, cs, labels)
        assert_bits(y, y_ref, f"step {step}")
        for got, want in zip((bank, scores, count), loop):
            assert_bits(got, want, f"step {step}")
    assert storage.abs().sum() > 0 and count.sum() > 0


def test_gather_insert_on_fake_tensors():
    """FakeTensorMode (what torch.compile traces): rows an unbacked size, offsets (B+1,) on the host."""
    args = good_insert_args()
    y, cu = call_on_fake_tensors(ops.membank_gather_insert_, *args.values())
    assert free_unbacked_symbols(y.shape[0]) and y.shape[1] == 6 and y.dtype == torch.float32
    assert cu.shape == (4,) and cu.dtype == torch.int64 and cu.device.type == "cpu"


# --- errors --------------------------------------------------------------------------------------

def good_insert_args():
    bank, scores, count, cand, cand_scores, labels = sample_class_bank()
    return dict(bank=bank, scores=scores, count=count, cand=cand, cand_scores=cand_scores, labels=labels)


INSERT_ERRORS = [
    (dict(bank=torch.zeros(5, 4)), r"bank must be \(C, S, D\); got shape \[5, 4\]"),
    (dict(bank=torch.zeros(5, 4, 6, dtype=torch.int32)), "bank must be floating point; got Int"),
    (dict(count=torch.zeros(4, dtype=torch.int64)), r"count must be \(C,\) with C = 5"),
    (dict(count=torch.zeros(5, dtype=torch.int32)), "count must be int64; got Int"),
    (dict(scores=torch.zeros(5, 3)), r"scores must be \(C, S\) = \(5, 4\)"),
    (dict(cand=torch.zeros(3, 7, 5)), r"cand must be \(B, K, D\) with D = 6"),
    (dict(cand=torch.zeros(3, 7, 6, dtype=torch.float64)), "cand has dtype Double but bank has Float"),
    (dict(cand_scores=torch.zeros(3, 7, 4)), r"cand_scores must be \(B, K, C\) = \(3, 7, 5\)"),
    (dict(cand_scores=torch.zeros(3, 7, 5, dtype=torch.float64)), "cand_scores has dtype Double but scores has Float"),
    (dict(labels=torch.zeros(3, 4, dtype=torch.bool)), r"labels must be \(B, C\) with C = 5"),
    (dict(labels=torch.zeros(2, 5, dtype=torch.bool)), r"labels must be \(B, C\) with B = 3"),
    (dict(labels=torch.zeros(3, 5, dtype=torch.complex64)), "labels must be bool"),
    (dict(labels=torch.full((3, 5), 2)), "labels must be bool or hold only 0 and 1"),
    (dict(labels=torch.full((3, 5), 0.5)), "labels must be bool or hold only 0 and 1"),
    (dict(count=torch.tensor([0, 1, 5, 0, 0])), r"count must hold fill counts in \[0, S\] = \[0, 4\]"),
    (dict(count=torch.tensor([0, -1, 0, 0, 0])), r"count must hold fill counts in \[0, S\]"),
    (dict(scores=torch.full((5, 4), float("nan"))), "scores holds NaN"),
    (dict(cand_scores=torch.full((3, 7, 5), float("nan"))), "cand_scores holds NaN"),
    (dict(scores=torch.zeros(5, 4, device="meta")), "scores is on meta but bank is on cpu"),
]
VALUE_CHECKS = ("hold only 0 and 1", "fill counts", "NaN")  # need data: not made by the Meta / fake kernels


def call_on_fake_tensors(op, *args):
    """``op`` as torch.compile traces it: on FakeTensors (metadata, no data), the sizes those of ``args``."""
    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        return op(*(mode.from_tensor(a, static_shapes=True) if isinstance(a, torch.Tensor) else a for a in args))


@pytest.mark.parametrize("change,message", INSERT_ERRORS, ids=[m[:30] for _, m in INSERT_ERRORS])
def test_insert_errors_name_the_argument(change, message):
    args = {**good_insert_args(), **change}
    with pytest.raises(RuntimeError, match=message):  # the C++ TORCH_CHECK
        ops.membank_insert_topk_(*args.values())
    with pytest.raises(RuntimeError, match=message):  # the same, through the Python wrapper
        membank.membank_insert_topk_(**args)
    if not any(v in message for v in VALUE_CHECKS) and "meta" not in message:
        with pytest.raises(RuntimeError, match=message):  # the same C++ check, in the Meta kernel
            call_on_fake_tensors(ops.membank_insert_topk_, *args.values())


@pytest.mark.parametrize("change,message", INSERT_ERRORS, ids=[m[:30] for _, m in INSERT_ERRORS])
def test_gather_insert_errors_name_the_argument(change, message):
    """membank_gather_insert_ takes membank_insert_topk_'s arguments and makes its checks, before
    anything moves."""
    args = {**good_insert_args(), **change}
    before = {name: args[name].clone() for name in ("bank", "scores", "count") if not args[name].is_meta}
    with pytest.raises(RuntimeError, match=message):
        ops.membank_gather_insert_(*args.values())
    with pytest.raises(RuntimeError, match=message):
        membank.membank_gather_insert_(**args)
    for name, value in before.items():
        assert_bits(args[name], value, f"{name} after the error")
    if not any(v in message for v in VALUE_CHECKS) and "meta" not in message:
        with pytest.raises(RuntimeError, match=message):  # the Python fake kernel, through the C++ check op
            call_on_fake_tensors(ops.membank_gather_insert_, *args.values())


GATHER_ERRORS = [
    (dict(bank=torch.zeros(5, 4, 6, dtype=torch.int64)), "bank must be floating point; got Long"),
    (dict(count=torch.zeros(5, 1, dtype=torch.int64)), r"count must be \(C,\) with C = 5"),
    (dict(count=torch.zeros(5)), "count must be int64; got Float"),
    (dict(labels=torch.zeros(3, 6, dtype=torch.bool)), r"labels must be \(B, C\) with C = 5"),
    (dict(labels=torch.full((3, 5), -1)), "labels must be bool or hold only 0 and 1"),
    (dict(count=torch.tensor([0, 0, 9, 0, 0])), r"count must hold fill counts in \[0, S\] = \[0, 4\]"),
]


@pytest.mark.parametrize("change,message", GATHER_ERRORS, ids=[m[:30] for _, m in GATHER_ERRORS])
def test_gather_errors_name_the_argument(change, message):
    good = good_insert_args()
    args = {"bank": good["bank"], "count": good["count"], "labels": good["labels"], **change}
    with pytest.raises(RuntimeError, match=message):
        ops.membank_gather(*args.values())
    with pytest.raises(RuntimeError, match=message):
        membank.membank_gather(**args)
    if not any(v in message for v in VALUE_CHECKS):
        with pytest.raises(RuntimeError, match=message):  # the Python fake kernel, through the C++ check op
            call_on_fake_tensors(ops.membank_gather, *args.values())


MOMENTUM_ERRORS = [
    (dict(bank=torch.zeros(4, 3)), r"bank must be \(V, K, D\)"),
    (dict(index=torch.zeros(2, 1, dtype=torch.int64)), r"index must be \(B,\)"),
    (dict(index=torch.zeros(2, dtype=torch.int32)), "index must be int64; got Int"),
    (dict(cand=torch.zeros(2, 3, 5)), r"cand must be \(B, K, D\) = \(2, 3, 6\)"),
    (dict(cand=torch.zeros(2, 3, 6, dtype=torch.float16)), "cand has dtype Half but bank has Float"),
    (dict(m=1.5), r"momentum m must be in \[0, 1\]; got 1.5"),
    (dict(m=float("nan")), r"momentum m must be in \[0, 1\]; got nan"),
    (dict(index=torch.tensor([0, 4])), r"index must hold video rows in \[0, V\) = \[0, 4\)"),
    (dict(index=torch.tensor([-1, 0])), r"index must hold video rows in \[0, V\)"),
]


@pytest.mark.parametrize("change,message", MOMENTUM_ERRORS, ids=[m[:30] for _, m in MOMENTUM_ERRORS])
def test_momentum_errors_name_the_argument(change, message):
    args = {"bank": torch.zeros(4, 3, 6), "index": torch.tensor([1, 1]), "cand": torch.zeros(2, 3, 6), "m": 0.9,
            **change}
    with pytest.raises(RuntimeError, match=message):
        ops.membank_momentum_(*args.values())
    with pytest.raises(RuntimeError, match=message):
        membank.membank_momentum_(**args)
    if "video rows" not in message:
        with pytest.raises(RuntimeError, match=message):
            call_on_fake_tensors(ops.membank_momentum_, *args.values())
    if "cand" not in message and "momentum m" not in message:
        with pytest.raises(RuntimeError, match=message):
            membank.membank_momentum_read(args["bank"], args["index"])
        if "video rows" not in message:
            with pytest.raises(RuntimeError, match=message):
                call_on_fake_tensors(ops.membank_momentum_read, args["bank"], args["index"])


def test_empty_batches():
    bank, scores, count, cand, cand_scores, labels = sample_class_bank()
    before = [t.clone() for t in (bank, scores, count)]
    membank.membank_insert_topk_(bank, scores, count, cand[:0], cand_scores[:0], labels[:0])
    for got, want in zip((bank, scores, count), before):
        assert_bits(got, want)
    vbank = torch.randn(3, 2, 4)
    vbefore = vbank.clone()
    membank.membank_momentum_(vbank, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2, 4), 0.5)
    assert_bits(vbank, vbefore)
    assert membank.membank_momentum_read(vbank, torch.zeros(0, dtype=torch.int64)).shape == (0, 2, 4)


# --- GPU: equal to the CPU kernels, bit for bit ---------------------------------------------------

# (bank dtype, score dtype, whether NaN/inf scores are drawn): bf16 has no room for the specials' checks
CUDA_DTYPES = [
    (torch.float32, torch.float32, True),
    (torch.float64, torch.float64, True),
    (torch.float16, torch.float32, True),
    (torch.bfloat16, torch.bfloat16, False),
]

@pytest.mark.gpu
def test_opcheck_cuda():
    opcheck_all("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,sdtype,specials", CUDA_DTYPES)
def test_cuda_class_bank_equals_cpu(dtype, sdtype, specials):
    run_sequence_gpu(dtype, sdtype, specials)


def run_sequence_gpu(dtype, sdtype, specials, seed=5, steps=200, n_class=7, slots=5, dim=33):
    """The CUDA bank gets the same inserts as the CPU one; both are compared after each step."""
    gen = torch.Generator().manual_seed(seed)
    cpu = ClassBank(n_class, slots, dim, dtype, sdtype)
    gpu = cpu.clone("cuda")
    for step in range(steps):
        batch = [0, 1, 3, 10, 40][int(torch.randint(0, 5, (), generator=gen))]
        k = [1, slots + 3, 8][int(torch.randint(0, 3, (), generator=gen))]
        cand = torch.randn(batch, k, dim, generator=gen).to(dtype)
        cand_scores = random_scores(gen, (batch, k, n_class), sdtype, specials)
        labels = random_labels(gen, batch, n_class)
        membank.membank_insert_topk_(cpu.bank, cpu.scores, cpu.count, cand, cand_scores, labels)
        membank.membank_insert_topk_(gpu.bank, gpu.scores, gpu.count, cand.cuda(), cand_scores.cuda(), labels.cuda())
        gpu.assert_equal(cpu, f"step {step} cuda insert")
        read_labels = random_labels(gen, int(torch.randint(0, 7, (), generator=gen)), n_class)
        y, cu = membank.membank_gather(gpu.bank, gpu.count, read_labels.cuda())
        y_cpu, cu_cpu = membank.membank_gather(cpu.bank, cpu.count, read_labels)
        assert y.is_cuda and cu.cu_seqlens.is_cuda
        assert_bits(y, y_cpu, f"step {step} cuda gather")
        assert_bits(cu.cu_seqlens, cu_cpu.cu_seqlens, f"step {step} cuda cu")
        assert cu.offsets == cu_cpu.offsets


@pytest.mark.gpu
def test_cuda_momentum_equals_cpu():
    gen = torch.Generator().manual_seed(2)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        bank = torch.randn(9, 8, 257, generator=gen).to(dtype)
        gpu = bank.cuda()
        for step in range(100):
            batch = int(torch.randint(0, 12, (), generator=gen))
            index = torch.randint(0, 9, (batch,), generator=gen)
            cand = torch.randn(batch, 8, 257, generator=gen).to(dtype)
            m = [0.0, 1.0, 0.5, 0.9, 0.999][step % 5]
            membank.membank_momentum_(bank, index, cand, m)
            membank.membank_momentum_(gpu, index.cuda(), cand.cuda(), m)
            assert_bits(gpu, bank, f"{dtype} step {step}")
            read = torch.randint(0, 9, (5,), generator=gen)
            assert_bits(membank.membank_momentum_read(gpu, read.cuda()), membank.membank_momentum_read(bank, read))


@pytest.mark.gpu
def test_cuda_errors_and_device_mismatch():
    args = good_insert_args()
    cuda = {k: v.cuda() for k, v in args.items()}
    with pytest.raises(RuntimeError, match="cand is on cpu but bank is on cuda"):
        ops.membank_insert_topk_(*{**cuda, "cand": args["cand"]}.values())
    with pytest.raises(RuntimeError, match="cand_scores holds NaN"):
        ops.membank_insert_topk_(*{**cuda, "cand_scores": torch.full_like(cuda["cand_scores"], float("nan"))}.values())
    with pytest.raises(RuntimeError, match="labels must be bool or hold only 0 and 1"):
        ops.membank_gather(cuda["bank"], cuda["count"], torch.full((2, 5), 3, device="cuda"))
    with pytest.raises(RuntimeError, match=r"index must hold video rows"):
        ops.membank_momentum_read(torch.zeros(3, 2, 2, device="cuda"), torch.tensor([3], device="cuda"))


@pytest.mark.gpu
def test_cuda_insert_from_arbitrary_states_equals_cpu():
    """Unsorted slots, garbage in unfilled slots, +-inf and -0.0 scores, K > S."""
    gen = torch.Generator().manual_seed(6)
    for step in range(100):
        batch, k = int(torch.randint(0, 5, (), generator=gen)), int(torch.randint(1, 9, (), generator=gen))
        state, step_inputs = arbitrary_insert(gen, 6, 5, 70, batch, k)
        gpu = [t.cuda() for t in state]
        membank.membank_insert_topk_(*state, *step_inputs)
        membank.membank_insert_topk_(*gpu, *(t.cuda() for t in step_inputs))
        for got, want in zip(gpu, state):
            assert_bits(got, want, f"step {step}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,sdtype,specials", CUDA_DTYPES)
def test_cuda_gather_insert_equals_cpu(dtype, sdtype, specials):
    """The CUDA op equals the CPU op (and the reference loop) bit for bit, step after step."""
    run_gather_insert_sequence(seed=3, steps=50, n_class=7, slots=5, dim=33, dtype=dtype, sdtype=sdtype,
                               specials=specials, device="cuda")


@pytest.mark.gpu
def test_cuda_gather_insert_from_arbitrary_states_equals_cpu():
    gen = torch.Generator().manual_seed(10)
    for step in range(40):
        batch, k = int(torch.randint(0, 6, (), generator=gen)), int(torch.randint(0, 9, (), generator=gen))
        state, (cand, cand_scores, _) = arbitrary_insert(gen, 6, 5, 70, batch, k)
        labels = random_step_labels(gen, batch, 6)
        gpu = [t.cuda() for t in state]
        y_cpu, cu_cpu = membank.membank_gather_insert_(*state, cand, cand_scores, labels)
        y, cu = membank.membank_gather_insert_(*gpu, cand.cuda(), cand_scores.cuda(), labels.cuda())
        assert_bits(y, y_cpu, f"step {step}: y")
        assert cu.offsets == cu_cpu.offsets and cu.cu_seqlens.is_cuda
        for got, want in zip(gpu, state):
            assert_bits(got, want, f"step {step}")
