"""Memory-bank ops of the csrc/ extension (DESIGN §1 "Memory bank", §3): the Python face.

The ops live in the compiled extension ``rs_kernels._C`` (C++ CPU kernels in ``csrc/``, CUDA
kernels in ``csrc/cuda/``) and are registered as ``torch.ops.rs_kernels.membank_*``. This module
loads them, gives each a fake kernel (so ``torch.compile`` and ``FakeTensorMode`` trace them) and
wraps each in a typed function. The spec of each op is the function of the same name in
``rs_kernels.reference``; the kernels equal it bit for bit, so either module can stand in for the
other::

    from rs_kernels import membank, reference
    y, y_cu = membank.membank_gather(bank, count, labels)   # == reference.membank_gather(...)

Layout. A class-wise bank is ``bank`` (C, S, D) rows with ``scores`` (C, S) and ``count`` (C,)
int64: slots ``0..count[c]-1`` of class c are filled, in descending score order; unfilled slots
hold zero rows and zero scores. The per-video bank of the supplementary's Table 2 is (V, K, D).

Checks. The C++ kernels check every argument (``TORCH_CHECK``: a ``RuntimeError`` naming it);
the wrappers add nothing to them (a step's ops cost tens of microseconds). The fake kernels here
repeat the metadata checks (shape, dtype, device) with the same messages; the value checks (NaN
scores, 0/1 labels, fill counts in [0, S], video indices in [0, V)) need the data, so only the
real kernels make them -- on CUDA that costs one sync a call.

Bit for bit: the reference multiplies each kept row by one and each dropped row by zero; the
kernels copy kept rows and multiply dropped ones. That is the same bits for every value but a
NaN in the bank, whose payload a multiply may change (scores are checked for NaN; rows are not).

Nothing here is differentiable: the bank is state. A backward through these ops raises.

Build the extension with ``pip install -e .`` in the repository root (``MAX_JOBS=1`` on small
machines; ``FORCE_CUDA=1`` and ``TORCH_CUDA_ARCH_LIST`` for the CUDA kernels).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .varlen import offsets_to

try:
    from . import _C  # noqa: F401  (loading the library registers torch.ops.rs_kernels.membank_*)
except (ImportError, OSError) as err:  # not built, or built against another torch
    raise ImportError(
        "rs_kernels.membank needs the compiled extension rs_kernels._C, which could not be loaded "
        f"({err}). Build it from the repository root with `pip install -e .` (add MAX_JOBS=1 on small "
        "machines, FORCE_CUDA=1 for the CUDA kernels), against the torch you run with."
    ) from err

__all__ = ["membank_gather", "membank_insert_topk_", "membank_momentum_", "membank_momentum_read"]

_ops = torch.ops.rs_kernels

# c10 spells dtypes this way in TORCH_CHECK messages; we do too, so both messages read the same.
_C10_NAMES = {
    torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
    torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}


def _name(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check(ok, *msg) -> None:
    if not ok:
        raise RuntimeError("membank: " + "".join(str(m) for m in msg))


def _check_same_device(name: str, t: Tensor, bank: Tensor) -> None:
    _check(t.device == bank.device, name, " is on ", t.device, " but bank is on ", bank.device)


def _check_bank(bank: Tensor, count: Tensor) -> None:
    _check(bank.dim() == 3, "bank must be (C, S, D); got shape ", _shape(bank))
    _check(bank.dtype.is_floating_point, "bank must be floating point; got ", _name(bank.dtype))
    _check(count.dim() == 1 and count.shape[0] == bank.shape[0], "count must be (C,) with C = ", bank.shape[0],
           " (bank.size(0)); got shape ", _shape(count))
    _check(count.dtype == torch.int64, "count must be int64; got ", _name(count.dtype))
    _check_same_device("count", count, bank)


def _check_labels(labels: Tensor, bank: Tensor, n_class: int, batch: int) -> None:
    _check(labels.dim() == 2 and labels.shape[1] == n_class, "labels must be (B, C) with C = ", n_class,
           " (bank.size(0)); got shape ", _shape(labels))
    _check(batch < 0 or labels.shape[0] == batch, "labels must be (B, C) with B = ", batch,
           " (cand.size(0)); got shape ", _shape(labels))
    _check(not labels.dtype.is_complex, "labels must be bool (or hold only 0 and 1); got ", _name(labels.dtype))
    _check_same_device("labels", labels, bank)


def _check_insert(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                  labels: Tensor) -> None:
    _check_bank(bank, count)
    n_class, slots, dim = bank.shape
    _check(scores.dim() == 2 and scores.shape[0] == n_class and scores.shape[1] == slots,
           "scores must be (C, S) = (", n_class, ", ", slots, ") like bank; got shape ", _shape(scores))
    _check(scores.dtype.is_floating_point, "scores must be floating point; got ", _name(scores.dtype))
    _check_same_device("scores", scores, bank)
    _check(cand.dim() == 3 and cand.shape[2] == dim, "cand must be (B, K, D) with D = ", dim,
           " (bank.size(2)); got shape ", _shape(cand))
    _check(cand.dtype == bank.dtype, "cand has dtype ", _name(cand.dtype), " but bank has ", _name(bank.dtype))
    _check_same_device("cand", cand, bank)
    batch, k = cand.shape[:2]
    _check(cand_scores.dim() == 3 and cand_scores.shape[0] == batch and cand_scores.shape[1] == k
           and cand_scores.shape[2] == n_class,
           "cand_scores must be (B, K, C) = (", batch, ", ", k, ", ", n_class, "); got shape ", _shape(cand_scores))
    _check(cand_scores.dtype == scores.dtype, "cand_scores has dtype ", _name(cand_scores.dtype),
           " but scores has ", _name(scores.dtype))
    _check_same_device("cand_scores", cand_scores, bank)
    _check_labels(labels, bank, n_class, batch)


def _check_momentum(bank: Tensor, index: Tensor, cand: Tensor | None, m: float) -> None:
    _check(bank.dim() == 3, "bank must be (V, K, D); got shape ", _shape(bank))
    _check(bank.dtype.is_floating_point, "bank must be floating point; got ", _name(bank.dtype))
    _check(index.dim() == 1, "index must be (B,); got shape ", _shape(index))
    _check(index.dtype == torch.int64, "index must be int64; got ", _name(index.dtype))
    _check_same_device("index", index, bank)
    if cand is None:
        return
    _check(cand.dim() == 3 and cand.shape[0] == index.shape[0] and cand.shape[1] == bank.shape[1]
           and cand.shape[2] == bank.shape[2],
           "cand must be (B, K, D) = (", index.shape[0], ", ", bank.shape[1], ", ", bank.shape[2], "); got shape ",
           _shape(cand))
    _check(cand.dtype == bank.dtype, "cand has dtype ", _name(cand.dtype), " but bank has ", _name(bank.dtype))
    _check_same_device("cand", cand, bank)
    _check(0.0 <= m <= 1.0, "momentum m must be in [0, 1]; got ", m)  # NaN fails too


# --- fake kernels: metadata checks and output metadata, no data ----------------------------------

@torch.library.register_fake("rs_kernels::membank_gather")
def _membank_gather_fake(bank: Tensor, count: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    _check_bank(bank, count)
    _check_labels(labels, bank, bank.shape[0], -1)
    rows = torch.library.get_ctx().new_dynamic_size()  # sum over videos of their classes' fill counts
    return bank.new_empty((rows, bank.shape[2])), torch.empty(labels.shape[0] + 1, dtype=torch.int64)  # host offsets


@torch.library.register_fake("rs_kernels::membank_insert_topk_")
def _membank_insert_topk_fake(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                              labels: Tensor) -> None:
    _check_insert(bank, scores, count, cand, cand_scores, labels)


@torch.library.register_fake("rs_kernels::membank_momentum_")
def _membank_momentum_fake(bank: Tensor, index: Tensor, cand: Tensor, m: float) -> None:
    _check_momentum(bank, index, cand, m)


@torch.library.register_fake("rs_kernels::membank_momentum_read")
def _membank_momentum_read_fake(bank: Tensor, index: Tensor) -> Tensor:
    _check_momentum(bank, index, None, 0.0)
    return bank.new_empty((index.shape[0], bank.shape[1], bank.shape[2]))


# --- the wrappers ------------------------------------------------------------------------------

def membank_gather(bank: Tensor, count: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
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
    to the host in the same read; ``y_cu_seqlens`` comes back on the bank's device with those host
    values kept (``rs_kernels.varlen.host_offsets``), so no caller reads them back. (The raw op,
    ``torch.ops.rs_kernels.membank_gather``, returns the offsets on the host.)

    >>> bank = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    >>> y, cu = membank_gather(bank, torch.tensor([2, 1]), torch.tensor([[True, True], [False, False], [False, True]]))
    >>> y.flatten().tolist(), cu.tolist()
    ([0.0, 1.0, 3.0, 3.0], [0, 3, 3, 4])
    """
    y, cu_host = _ops.membank_gather(bank, count, labels)
    return y, offsets_to(cu_host, y.device, non_blocking=True)


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
    _ops.membank_insert_topk_(bank, scores, count, cand, cand_scores, labels)


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
    _ops.membank_momentum_(bank, index, cand, float(m))


def membank_momentum_read(bank: Tensor, index: Tensor) -> Tensor:
    """The per-video bank rows (B, K, D) of videos ``index`` (B,) int64 in [0, V): a copy, ``bank[index]``.

    Its reference is ``bank.index_select(0, index)`` (not in ``rs_kernels.reference``):

    >>> bank = torch.randn(4, 3, 5)
    >>> index = torch.tensor([3, 0, 3])
    >>> torch.equal(membank_momentum_read(bank, index), bank.index_select(0, index))
    True
    """
    return _ops.membank_momentum_read(bank, index)
