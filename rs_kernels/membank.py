"""Memory-bank ops of the csrc/ extension (docs/design.md, "Memory bank"): the Python face.

The ops live in the compiled extension ``rs_kernels._C`` (C++ CPU and Meta kernels in ``csrc/``,
CUDA kernels in ``csrc/cuda/``) and are registered as ``torch.ops.rs_kernels.membank_*`` when it
loads. Importing this module does not load it; the first call of an op does (``load_extension``),
so the rest of the package imports and runs where the extension is not built. This module wraps
each op in a typed function. The spec of each is the function of the same name in
``rs_kernels.reference``; the kernels equal it bit for bit, so either module can stand in for the
other::

    from rs_kernels import membank, reference
    y, y_cu = membank.membank_gather(bank, count, labels)   # y, y_cu.cu_seqlens == reference.membank_gather(...)

Layout. A class-wise bank is ``bank`` (C, S, D) rows with ``scores`` (C, S) and ``count`` (C,)
int64: slots ``0..count[c]-1`` of class c are filled, in descending score order; unfilled slots
hold zero rows and zero scores. The per-video bank of the supplementary's Table 2 is (V, K, D).

Checks. The C++ ops check every argument (``TORCH_CHECK``: a ``RuntimeError`` naming it), once,
in ``csrc/membank.cpp``; nothing here restates them. The metadata checks (shape, dtype, device)
run in the CPU, CUDA and Meta kernels alike, so ``FakeTensorMode`` and ``torch.compile`` raise
what an eager call raises. The value checks (NaN scores, 0/1 labels, fill counts in [0, S], video
indices in [0, V)) need the data, so only the real kernels make them -- on CUDA that costs one
sync a call.

Bit for bit: the reference multiplies each kept row by one and each dropped row by zero; the
kernels copy kept rows and multiply dropped ones. That is the same bits for every value but a
NaN in the bank, whose payload a multiply may change (scores are checked for NaN; rows are not).

Nothing here is differentiable: the bank is state. A backward through these ops raises.

Build the extension with ``pip install -e .`` in the repository root (``MAX_JOBS=1`` on small
machines; ``FORCE_CUDA=1`` and ``TORCH_CUDA_ARCH_LIST`` for the CUDA kernels).
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from .varlen import Varlen

__all__ = ["membank_gather", "membank_insert_topk_", "membank_gather_insert_", "membank_momentum_", "membank_momentum_read",
           "load_extension"]


@torch.compiler.assume_constant_result  # torch.compile runs it eagerly: no graph break, nothing traced
def load_extension() -> None:
    """Loads ``rs_kernels._C``, which registers ``torch.ops.rs_kernels.membank_*``; every op below calls it first.

    Raises ImportError, saying how to build the extension, when it cannot be loaded.
    """
    _load_once()


@functools.cache  # the one piece of state: whether the extension is loaded (a failure is not cached)
def _load_once() -> None:
    try:
        from . import _C  # noqa: F401  (loading the library registers the ops)
    except (ImportError, OSError) as err:  # not built, or built against another torch
        raise ImportError(
            "rs_kernels needs its compiled extension rs_kernels._C for the memory-bank ops and, on a CPU, "
            "segment_weighted_sum (the prediction head's pooling); it could not be loaded "
            f"({err}). Build it from the repository root with `pip install -e .` (add MAX_JOBS=1 on small "
            "machines, FORCE_CUDA=1 for the CUDA kernels), against the torch you run with."
        ) from err
    torch.library.register_fake("rs_kernels::membank_gather")(_membank_gather_fake)
    torch.library.register_fake("rs_kernels::membank_gather_insert_")(_membank_gather_insert_fake)


# The fake kernels, for FakeTensorMode and torch.compile, of the two ops whose output row count
# depends on the data: a size only a Python fake kernel can make (an unbacked one), so these ops
# have no C++ Meta kernel. Their checks are the C++ ones all the same, reached through a check op.

def _membank_gather_fake(bank: Tensor, count: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    torch.ops.rs_kernels.membank_gather_check(bank, count, labels)
    return _packed_rows_fake(bank, labels.shape[0])


def _membank_gather_insert_fake(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                                labels: Tensor) -> tuple[Tensor, Tensor]:
    torch.ops.rs_kernels.membank_gather_insert_check(bank, scores, count, cand, cand_scores, labels)
    return _packed_rows_fake(bank, labels.shape[0])


def _packed_rows_fake(bank: Tensor, batch) -> tuple[Tensor, Tensor]:
    """Rows read from ``bank`` by ``batch`` videos, packed: (rows, D), and their offsets (B+1,) on the host."""
    rows = torch.library.get_ctx().new_dynamic_size()  # sum over videos of their classes' fill counts
    return bank.new_empty((rows, bank.shape[2])), torch.empty(batch + 1, dtype=torch.int64)


# --- the wrappers ------------------------------------------------------------------------------

def membank_gather(bank: Tensor, count: Tensor, labels: Tensor) -> tuple[Tensor, Varlen]:
    """The filled slots of each video's classes, in ascending class order, packed.

    bank (C, S, D), count (C,) int64, labels (B, C) bool (or 0/1 values). Returns
    ``y`` (sum_b M_b, D), bit copies of the bank rows, and ``y_cu_seqlens`` (B+1,) int64: video b's
    rows are ``y[y_cu_seqlens[b]:y_cu_seqlens[b+1]]``, its classes in ascending order, each
    class's slots 0..count-1 in slot (descending score) order. A video with no filled class
    gets M_b = 0; B = 0 gives ``y`` (0, D) and ``y_cu_seqlens = [0]``.

    Difference from the official code: slots never filled are skipped. The official bank is
    zero-initialised and always reads all S slots of a class, so before a class has S entries it
    propagates toward zero rows; here those rows are not read (M_b counts filled slots only).

    The output size depends on the data: on CUDA the op syncs once to learn it, reading the offsets
    to the host in the same read; the offsets come back as a :class:`~rs_kernels.varlen.Varlen` on
    the bank's device that carries those host values, so no caller reads them back. (The raw op,
    ``torch.ops.rs_kernels.membank_gather``, returns the offsets tensor on the host;
    ``reference.membank_gather`` returns it on the bank's device.)

    >>> bank = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    >>> y, cu = membank_gather(bank, torch.tensor([2, 1]), torch.tensor([[True, True], [False, False], [False, True]]))
    >>> y.flatten().tolist(), cu.offsets
    ([0.0, 1.0, 3.0, 3.0], (0, 3, 3, 4))
    """
    load_extension()
    y, cu_host = torch.ops.rs_kernels.membank_gather(bank, count, labels)
    return y, Varlen.from_cu_seqlens(cu_host).to(y.device, non_blocking=True)


def membank_insert_topk_(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                         labels: Tensor) -> None:
    """For each class, keep the top S by score of its filled slots and the candidates of its videos; in place.

    bank (C, S, D), scores (C, S), count (C,) int64 are updated; cand (B, K, D) (dtype of bank),
    cand_scores (B, K, C) (dtype of scores), labels (B, C) bool or 0/1. Class c's pool is its
    filled slots, then the K candidates of every video b with ``labels[b, c]``, in video then k
    order, scored by ``cand_scores[b, k, c]``; the S best are kept, ties broken by pool order
    (current slots first, then video order, then k), so one batched insert equals inserting the
    videos one at a time. K > S, classes no video has, and B = 0 are fine. Slots left unfilled
    hold zero rows and zero scores. Scores must not be NaN (a RuntimeError says which argument).

    >>> bank, scores, count = torch.zeros(1, 2, 1), torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64)
    >>> cand = torch.tensor([[[1.0], [2.0], [3.0]]])
    >>> membank_insert_topk_(bank, scores, count, cand, torch.tensor([[[0.5], [0.9], [0.5]]]), torch.tensor([[True]]))
    >>> bank.flatten().tolist(), scores.flatten().tolist(), count.tolist()
    ([2.0, 1.0], [0.8999999761581421, 0.5], [2])
    """
    load_extension()
    torch.ops.rs_kernels.membank_insert_topk_(bank, scores, count, cand, cand_scores, labels)


def membank_gather_insert_(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                           labels: Tensor) -> tuple[Tensor, Varlen]:
    """A step's reads and inserts in the official per-video order: video b gathers, then inserts, in batch order.

    The arguments are :func:`membank_insert_topk_`'s, the result :func:`membank_gather`'s. Video b's
    rows are the filled slots of its classes (ascending class, slot order) of the bank as the
    inserts of videos 0..b-1 of this batch left it; then its K candidates are inserted. So class c
    gives video b ``min(S, count[c] + K * (videos before b with class c))`` rows. On return the bank
    holds every video's inserts: the result of one :func:`membank_insert_topk_` of the whole batch
    (the tie rule makes them equal, for a bank in the layout above). Spec: the loop
    ``reference.membank_gather_insert_``. One sync on CUDA, as the gather's.

    Video 1 below reads the row video 0 inserted into class 0; video 0 read nothing:

    >>> bank, scores, count = torch.zeros(1, 2, 1), torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64)
    >>> cand = torch.tensor([[[1.0]], [[2.0]]])
    >>> y, cu = membank_gather_insert_(bank, scores, count, cand, torch.tensor([[[0.5]], [[0.9]]]),
    ...                                torch.tensor([[True], [True]]))
    >>> y.flatten().tolist(), cu.offsets, bank.flatten().tolist(), count.tolist()
    ([1.0], (0, 0, 1), [2.0, 1.0], [2])
    """
    load_extension()
    y, cu_host = torch.ops.rs_kernels.membank_gather_insert_(bank, scores, count, cand, cand_scores, labels)
    return y, Varlen.from_cu_seqlens(cu_host).to(y.device, non_blocking=True)


def membank_momentum_(bank: Tensor, index: Tensor, cand: Tensor, m: float) -> None:
    """Per-video bank (V, K, D), supplementary Table 2: ``bank[index[b], k] <- m bank[index[b], k] + (1 - m) cand[b, k]``.

    In place, in batch order: a video twice in one batch is updated twice. index (B,) int64 in
    [0, V); cand (B, K, D) of bank's dtype; m in [0, 1]. Rounds as the eager expression
    ``m * slot + (1 - m) * cand`` does (each product rounded to bank's dtype, no FMA).

    >>> bank = torch.ones(3, 1, 2)
    >>> membank_momentum_(bank, torch.tensor([2, 2]), torch.zeros(2, 1, 2), 0.5)
    >>> bank[:, 0, 0].tolist()
    [1.0, 1.0, 0.25]
    """
    load_extension()
    torch.ops.rs_kernels.membank_momentum_(bank, index, cand, float(m))


def membank_momentum_read(bank: Tensor, index: Tensor) -> Tensor:
    """The per-video bank rows (B, K, D) of videos ``index`` (B,) int64 in [0, V): a copy, ``bank[index]``.

    Its reference is ``bank.index_select(0, index)`` (not in ``rs_kernels.reference``):

    >>> bank = torch.randn(4, 3, 5)
    >>> index = torch.tensor([3, 0, 3])
    >>> torch.equal(membank_momentum_read(bank, index), bank.index_select(0, index))
    True
    """
    load_extension()
    return torch.ops.rs_kernels.membank_momentum_read(bank, index)
