"""The specification agrees with itself: the Woodbury random walk equals the dense Eq. 10 solve."""
import pytest
import torch
from helpers import rel_error as _rel

from rs_kernels import reference
from rs_kernels.varlen import cu_seqlens_from_lengths


@pytest.mark.parametrize("m", [1, 5, 8, 20])
def test_woodbury_equals_dense_on_mixed_lengths(m):
    gen = torch.Generator().manual_seed(m)
    lengths = [1, 2, 7, 300, 2615]
    d = 48
    x = torch.randn(sum(lengths), d, generator=gen, dtype=torch.float64).relu()
    y = torch.randn(len(lengths) * m, d, generator=gen, dtype=torch.float64)
    cu = cu_seqlens_from_lengths(lengths)
    ycu = cu_seqlens_from_lengths([m] * len(lengths))
    dense = reference.random_walk(x, cu, y, ycu, 0.5, 5.0, method="dense")
    fast = reference.random_walk(x, cu, y, ycu, 0.5, 5.0, method="woodbury")
    assert torch.isfinite(fast).all()
    for b in range(len(lengths)):  # per video, so a short video's error is not hidden by a long one
        rows = slice(int(cu[b]), int(cu[b + 1]))
        assert _rel(fast[rows], dense[rows]) <= 1e-10


def test_no_representative_gives_scaled_input():
    x = torch.rand(5, 4, dtype=torch.float64)
    out = reference.random_walk(x, cu_seqlens_from_lengths([5]), x[:0], cu_seqlens_from_lengths([0]), 0.5, 5.0)
    assert torch.allclose(out, 0.5 * x)


def test_em_attention_mean_when_one_centre():
    """With K = 1 the softmax over centres is 1 everywhere: mu is the plain mean of the snippets."""
    x = torch.rand(9, 6, dtype=torch.float64)
    mu = reference.em_attention(x, cu_seqlens_from_lengths([4, 5]), torch.randn(1, 6, dtype=torch.float64))
    assert torch.allclose(mu[0, 0], x[:4].mean(0)) and torch.allclose(mu[1, 0], x[4:].mean(0))


def _random_insert_step(gen, n_class, slots, batch, k, dim):
    cand = torch.randn(batch, k, dim, generator=gen, dtype=torch.float64)
    cand_scores = torch.rand(batch, k, n_class, generator=gen, dtype=torch.float64).round(decimals=1)  # ties
    labels = torch.rand(batch, n_class, generator=gen) < 0.3
    return cand, cand_scores, labels


def _insert_one_video_at_a_time(bank, scores, count, cand, cand_scores, labels):
    """The official update: a Python loop over videos and classes, concatenate, sort, keep the top S."""
    slots = bank.shape[1]
    for b in range(cand.shape[0]):
        for c in torch.nonzero(labels[b]).flatten().tolist():
            n = int(count[c])
            pool_rows = torch.cat([bank[c, :n], cand[b]])
            pool_scores = torch.cat([scores[c, :n], cand_scores[b, :, c]])
            order = torch.sort(pool_scores, descending=True, stable=True).indices[:slots]
            count[c] = order.numel()
            bank[c].zero_(); scores[c].zero_()
            bank[c, : order.numel()] = pool_rows[order]
            scores[c, : order.numel()] = pool_scores[order]


def test_batched_insert_equals_sequential_insert():
    gen = torch.Generator().manual_seed(0)
    n_class, slots, k, dim = 6, 5, 3, 4
    state = [torch.zeros(n_class, slots, dim, dtype=torch.float64), torch.zeros(n_class, slots, dtype=torch.float64),
             torch.zeros(n_class, dtype=torch.int64)]
    seq = [t.clone() for t in state]
    for step in range(20):
        cand, cand_scores, labels = _random_insert_step(gen, n_class, slots, 1 + step % 4, k, dim)
        reference.membank_insert_topk_(*state, cand, cand_scores, labels)
        _insert_one_video_at_a_time(*seq, cand, cand_scores, labels)
        for a, b in zip(state, seq):
            assert torch.equal(a, b)
    assert int(state[2].sum()) > 0


def test_gather_reads_filled_slots_of_each_videos_classes():
    bank = torch.arange(3 * 2 * 1, dtype=torch.float64).reshape(3, 2, 1)
    count = torch.tensor([2, 0, 1])
    labels = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 0]], dtype=torch.bool)
    y, cu = reference.membank_gather(bank, count, labels)
    assert y.flatten().tolist() == [0, 1, 4, 4] and cu.tolist() == [0, 3, 4, 4]
