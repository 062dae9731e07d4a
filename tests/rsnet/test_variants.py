"""The variants of supplementary Tables 2 and 3: each switch changes what it should and nothing else."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from bench import bank_memory
from rs_kernels import reference
from rs_kernels.varlen import Varlen
from rsnet import checkpoint, train, trained
from rsnet.config import VARIANTS, Config, ConfigError, validate
from rsnet.errors import UserError
from rsnet.model import RSKP, MemoryBank, PredictionModule, banks, variants
from rsnet.model.losses import feature_propagation_loss, rskp_loss

LENGTHS = [1, 3, 17, 9]
N_CLASSES = 5


def _model(seed=0, **switches):
    torch.manual_seed(seed)
    cfg = Config(feature_dim=24, embed_dim=16, dropout=0.0, ops="reference", **switches)
    return RSKP(cfg, N_CLASSES).double()


def _batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(sum(LENGTHS), 24, dtype=torch.float64, generator=gen) * 2
    labels = torch.zeros(len(LENGTHS), N_CLASSES, dtype=torch.float64)
    labels[torch.arange(len(LENGTHS)), torch.arange(len(LENGTHS)) % N_CLASSES] = 1
    return x, Varlen.from_lengths(LENGTHS), labels


def _close(a, b, tol=1e-12):
    """||a - b|| <= tol ||b||, in float64 (zero tensors compare equal)."""
    return (a.double() - b.double()).norm() <= tol * b.double().norm()


def _fixed(rows):
    """A memory read that returns the given (Y_e, offsets), as RSKP.forward takes its memory."""
    return lambda mu, p_mu: rows


def _loss_and_gradients(model, x, cu, labels, memory=None):
    out = model(x, cu, None if memory is None else _fixed(memory))
    loss = rskp_loss(out, labels, cu, model.cfg, after_warmup=False).total
    model.zero_grad()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, loss, grads


def _assert_same_step(a, b, tol=1e-12):
    """Two (out, loss, grads) of models sharing parameters agree: every branch, the loss, every gradient."""
    (out_a, loss_a, grads_a), (out_b, loss_b, grads_b) = a, b
    for branch in ("main", "intra", "inter"):
        pa, pb = getattr(out_a, branch), getattr(out_b, branch)
        assert (pa is None) == (pb is None), branch
        for field, ta, tb in zip(pa._fields if pa else (), pa or (), pb or (), strict=True):
            assert _close(ta, tb, tol), (branch, field)
    assert _close(out_a.mu, out_b.mu, tol)
    assert abs(loss_a.item() - loss_b.item()) <= tol * abs(loss_b.item())
    assert grads_a.keys() == grads_b.keys()
    for name in grads_b:
        assert _close(grads_a[name], grads_b[name], tol), name


@pytest.fixture
def constant_attention(monkeypatch):
    """Sets every class-agnostic attention S_f of the head to a constant (the switch's two limits)."""
    real = PredictionModule.forward

    def set_to(value):
        def forward(self, x, cu_seqlens, ops="auto", class_wise=True):
            pred = real(self, x, cu_seqlens, ops, class_wise)
            return pred._replace(attention=torch.full_like(pred.attention, value))
        monkeypatch.setattr(PredictionModule, "forward", forward)

    return set_to


# --- representatives (Table 2) -----------------------------------------------------------------

def test_topk_representatives_are_the_top_and_bottom_snippets():
    x = torch.randn(sum(LENGTHS), 6, dtype=torch.float64, requires_grad=True)
    score = torch.rand(sum(LENGTHS), dtype=torch.float64)
    score[5] = score[6]  # a tie: snippet order decides
    k = 3
    got = variants.top_and_bottom_snippets(x, score, Varlen.from_lengths(LENGTHS), k)
    assert got.shape == (len(LENGTHS), 2 * k, 6)
    start = 0
    for b, t in enumerate(LENGTHS):
        s = score[start:start + t].tolist()
        high = sorted(range(t), key=lambda i: (-s[i], i))
        low = sorted(range(t), key=lambda i: (s[i], i))
        rows = [high[min(j, t - 1)] for j in range(k)] + [low[min(j, t - 1)] for j in range(k)]
        assert torch.equal(got[b], x[start:start + t][rows]), b
        start += t
    torch.autograd.gradcheck(lambda v: variants.top_and_bottom_snippets(v, score, Varlen.from_lengths(LENGTHS), k),
                             (x,))


def test_topk_model_walks_toward_the_snippets_its_main_attention_ranks():
    model = _model(representatives="topk", n_representatives=4)
    x, cu, _ = _batch()
    out = model(x, cu)
    features = model.embed(x)
    want = variants.top_and_bottom_snippets(features, out.main.attention, cu, 2)
    assert torch.equal(out.mu, want)
    assert torch.isfinite(out.intra.logits).all()


@pytest.mark.parametrize("part, limit", [("foreground", 1.0), ("background", 0.0)])
def test_the_part_that_is_all_of_x_gives_the_default_model(constant_attention, part, limit):
    """foreground with S_f = 1 (background with S_f = 0) walks all of X and keeps nothing: the paper's model."""
    constant_attention(limit)
    x, cu, labels = _batch()
    default = _loss_and_gradients(_model(), x, cu, labels)
    variant = _loss_and_gradients(_model(representatives=part), x, cu, labels)
    _assert_same_step(variant, default)


@pytest.mark.parametrize("part, limit", [("foreground", 0.0), ("background", 1.0)])
def test_the_part_that_is_none_of_x_leaves_the_features_unchanged(constant_attention, part, limit):
    constant_attention(limit)
    x, cu, _ = _batch()
    out = _model(representatives=part)(x, cu)
    assert torch.equal(out.walked, out.features)
    for field, a, b in zip(out.main._fields, out.intra, out.main, strict=True):
        assert _close(a, b), field


def test_foreground_representatives_summarize_the_modulated_features():
    """Real attention: mu is EM on X S_f, the intra branch walks X S_f and adds X (1 - S_f); the main
    branch is the default's."""
    model = _model(representatives="foreground")
    x, cu, _ = _batch()
    out = model(x, cu)
    features = model.embed(x)
    s_f = out.main.attention[:, None]
    assert 0 < s_f.min() and s_f.max() < 1, "the test needs S_f strictly between its limits"
    mu = reference.em_attention(features * s_f, cu.cu_seqlens, model.mu0, model.cfg.em_iters, model.cfg.tau)
    assert _close(out.mu, mu)
    k = model.cfg.n_representatives
    walked = reference.random_walk(features * s_f, cu.cu_seqlens, mu.reshape(-1, 16),
                                   Varlen.uniform(len(LENGTHS), k).cu_seqlens, model.cfg.walk_weight, model.cfg.tau)
    assert _close(out.walked, walked + features * (1 - s_f))
    default = _model()(x, cu)
    for field, a, b in zip(out.main._fields, out.main, default.main, strict=True):
        assert _close(a, b), field
    assert not _close(out.intra.logits, default.intra.logits, 1e-3)


def test_the_foreground_gate_passes_no_gradient_to_the_attention():
    """S_f is detached: the attention centre learns from the main branch's losses only, as in the default model."""
    model = _model(representatives="foreground")
    x, cu, _ = _batch()
    out = model(x, cu)
    (out.intra.logits.sum() + out.intra.p_ca.sum()).backward()
    # p_ca sums to one per video, so its sum passes only rounding (~1e-16) to the attention centre
    assert model.head.fg_centre.grad is None or model.head.fg_centre.grad.abs().max() <= 1e-12
    assert model.mu0.grad.abs().max() > 0


# --- memory bank (Table 2) ---------------------------------------------------------------------

def _video_bank(labels, rows=3, dim=6, momentum=0.9, seed=0, video_ids=None):
    ids = np.arange(len(labels)) * 3 + 2 if video_ids is None else video_ids
    return banks.VideoBank(ids, np.asarray(labels), rows, dim, momentum, seed), torch.as_tensor(ids)


def test_video_bank_with_momentum_zero_and_one_video_per_class_reads_the_class_wise_bank():
    """Each video its own partner, each entry its latest representatives: what a class-wise bank of
    K slots filled with only those representatives gives the video."""
    n, k, dim = 4, 3, 6
    labels = torch.eye(n, dtype=torch.float64)
    bank, ids = _video_bank(labels, k, dim, momentum=0.0)
    first, latest = torch.randn(n, k, dim), torch.randn(n, k, dim)
    bank.insert(first, ids)
    bank.insert(latest, ids)
    class_wise = MemoryBank(n, k, dim)
    scores = torch.linspace(0.9, 0.1, k)[None, :, None].expand(n, k, n).contiguous()  # slot order = k order
    class_wise.insert(latest, scores, labels)
    for epoch in (0, 5):
        y, y_cu = bank.read(ids, epoch)
        want, want_cu = class_wise.read(labels)
        assert torch.equal(y, want) and y_cu.offsets == want_cu.offsets


def test_video_bank_copies_a_first_entry_then_moves_it_by_momentum():
    labels = torch.eye(3)
    bank, ids = _video_bank(labels, momentum=0.75)
    a, b = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    bank.insert(a, ids[:2])
    assert torch.equal(bank.entries[:2], a) and bank.entries[2].abs().max() == 0
    bank.insert(b, ids[:2])
    assert torch.equal(bank.entries[:2], 0.75 * a + (1 - 0.75) * b)
    assert bank.filled.tolist() == [True, True, False]
    bank.reset()
    assert not bank.filled.any() and bank.entries.abs().max() == 0


def test_a_video_reads_a_partner_that_shares_a_class_drawn_per_seed_and_epoch():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    bank, ids = _video_bank(labels, seed=3)
    for v, row in bank.row_of.items():
        for epoch in range(6):
            partner = bank.partner(v, epoch)
            assert partner == bank.partner(v, epoch)
            if row == 4:
                assert partner == row, "a video alone in its classes reads its own entry"
            else:
                assert partner != row and (labels[partner] & labels[row]).any()
    video = int(ids[0])
    assert len({bank.partner(video, epoch) for epoch in range(8)}) > 1, "partners must change with the epoch"
    other_seed, _ = _video_bank(labels, seed=4)
    assert [bank.partner(video, e) for e in range(8)] != [other_seed.partner(video, e) for e in range(8)]
    bank.insert(torch.randn(5, 3, 6), ids)
    y, y_cu = bank.read(ids[:2], epoch=1)
    want = torch.cat([bank.entries[bank.partner(int(v), 1)] for v in ids[:2]])
    assert torch.equal(y, want) and y_cu.offsets == (0, 3, 6)


def test_the_video_wise_bank_takes_about_15_times_the_class_wise_memory_on_thumos14():
    """200 training videos x 8 representatives against 20 classes x 5 slots (the paper: about 15x)."""
    class_wise, video_wise = bank_memory.bank_bytes(200, 20, Config())
    assert class_wise == 20 * 5 * 2048 * 4 + 20 * 5 * 4 + 20 * 8  # rows, scores, fill counts
    assert video_wise == 200 * 8 * 2048 * 4 + 200  # entries, filled flags
    assert 15 <= video_wise / class_wise <= 16.5


# --- propagation loss and fusion (Table 3) -----------------------------------------------------

def test_feature_losses_against_a_hand_computation():
    features = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    walked = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    cu = Varlen.from_lengths([1, 2])
    l1 = feature_propagation_loss(features, walked, cu, "feature_l1")
    assert l1.tolist() == [1.5, 1.25]  # |1|+|2| over 2; (|-1|+|-2|)/2 and (|2|+|0|)/2, their mean
    l2 = feature_propagation_loss(features, walked, cu, "feature_l2")
    assert l2.tolist() == [2.5, 2.25]  # (1+4)/2; (1+4)/2 and (4+0)/2, their mean
    l1.sum().backward()
    assert features.grad.tolist() == [[0.5, 0.5], [-0.25, -0.25], [0.25, 0.0]]
    assert walked.grad is None, "F^a is the target: no gradient reaches it"


@pytest.mark.parametrize("norm", ["feature_l1", "feature_l2"])
def test_the_feature_loss_replaces_the_pseudo_label_loss_and_nothing_else(norm):
    x, cu, labels = _batch()
    model = _model(propagation_loss=norm)
    out = model(x, cu)
    terms = rskp_loss(out, labels, cu, model.cfg, after_warmup=False)
    want = feature_propagation_loss(out.features, out.walked, cu, norm).sum()
    assert terms.spl.item() == want.item() and want.item() > 0
    assert torch.equal(out.features, model.embed(x))
    assert _close(model.head(out.walked, cu, "reference").logits, out.intra.logits)
    default = rskp_loss(_model()(x, cu), labels, cu, model.cfg, after_warmup=False)
    for name in ("fore", "back", "att"):
        assert getattr(terms, name).item() == pytest.approx(getattr(default, name).item(), rel=1e-12), name


def test_early_fusion_with_an_empty_bank_equals_the_intra_walk():
    x, cu, labels = _batch()
    empty = (torch.zeros(0, 16, dtype=torch.float64), Varlen.from_lengths([0] * len(LENGTHS)))
    early = _loss_and_gradients(_model(fusion="early"), x, cu, labels, empty)
    assert early[0].inter is None
    late_without_bank = _loss_and_gradients(_model(), x, cu, labels)
    _assert_same_step(early, late_without_bank, tol=0.0)


def test_early_fusion_walks_once_toward_the_online_and_the_bank_representatives_joined():
    model = _model(fusion="early")
    x, cu, labels = _batch()
    bank_rows, bank_lengths = torch.randn(7, 16, dtype=torch.float64), [2, 0, 4, 1]
    out = model(x, cu, _fixed((bank_rows, Varlen.from_lengths(bank_lengths))))
    assert out.inter is None
    joined, lengths = [], []
    bank_start = 0
    for b, m in enumerate(bank_lengths):
        joined += [out.mu[b], bank_rows[bank_start:bank_start + m]]
        lengths.append(out.mu.shape[1] + m)
        bank_start += m
    features = model.embed(x)
    want = reference.random_walk(features, cu.cu_seqlens, torch.cat(joined), Varlen.from_lengths(lengths).cu_seqlens,
                                 model.cfg.walk_weight, model.cfg.tau)
    assert _close(out.walked, want)
    late = _model()(x, cu, _fixed((bank_rows, Varlen.from_lengths(bank_lengths))))
    assert not _close(late.intra.logits, out.intra.logits, 1e-3)
    online = (out.mu.detach().reshape(-1, 16).requires_grad_(), Varlen.uniform(len(LENGTHS), out.mu.shape[1]))
    bank_rows.requires_grad_()
    torch.autograd.gradcheck(
        lambda mu, y: variants.joined_representatives((mu, online[1]), (y, Varlen.from_lengths(bank_lengths)))[0],
        (online[0], bank_rows))


# --- configuration and training ----------------------------------------------------------------

@pytest.mark.parametrize("switches, message", [
    ({"representatives": "kmeans"}, "--representatives must be one of em, foreground, background, topk"),
    ({"bank": "queue"}, "--bank must be one of class, video"),
    ({"propagation_loss": "l1"}, "--propagation-loss must be one of pseudo_label, feature_l1, feature_l2"),
    ({"fusion": "middle"}, "--fusion must be one of late, early"),
    ({"bank_momentum": 1.5}, "--bank-momentum must be in [0, 1]"),
    ({"bank_momentum": float("nan")}, "--bank-momentum must be in [0, 1]"),
    ({"representatives": "foreground", "intra": False, "memory_bank": False},
     "--representatives foreground needs --intra"),
    ({"propagation_loss": "feature_l2", "intra": False, "memory_bank": False},
     "--propagation-loss feature_l2 needs --intra"),
    ({"propagation_loss": "feature_l1", "pseudo_label": False}, "replaces L_spl, which --no-pseudo-label"),
    ({"representatives": "topk", "n_representatives": 7}, "--n-representatives must be even, got 7"),
    ({"bank": "video", "memory_bank": False}, "--bank video is a memory bank: add --memory-bank"),
    ({"fusion": "early", "memory_bank": False}, "--fusion early joins"),
])
def test_a_meaningless_switch_is_one_line_naming_it(switches, message):
    with pytest.raises(ConfigError, match=None) as err:
        validate(dataclasses.replace(Config(), **switches))
    assert message in str(err.value) and "\n" not in str(err.value)


def _trained_elsewhere_too(switches):
    """topk and the video-wise bank: runs the pictures, diagnose and infer read too (a tiny_variant each);
    the other variants train for this test alone, in the full suite."""
    return switches if switches in ({"representatives": "topk"}, {"bank": "video"}) else \
        pytest.param(switches, marks=pytest.mark.slow)


@pytest.mark.parametrize("switches", [_trained_elsewhere_too(s) for s in [
    {"representatives": "foreground"}, {"representatives": "background"}, {"representatives": "topk"},
    {"bank": "video"}, {"propagation_loss": "feature_l1"}, {"propagation_loss": "feature_l2"}, {"fusion": "early"},
]], ids=lambda s: "-".join(map(str, s.values())))
def test_every_switch_trains_through_the_memory_bank_phase(tiny_variant, switches):
    """Two tiny epochs (tiny_variant): warm-up, the bank filled, one inter-video epoch, a checkpoint, an evaluation."""
    run = tiny_variant(**switches)
    assert np.isfinite(run.summary["last"]["avg"]) and run.summary["last"]["epoch"] == 2
    loaded = trained.load(run.out, "cpu")
    assert all(getattr(loaded.config, key) == value for key, value in switches.items())
    if loaded.config.bank == "video":
        bank = loaded.bank_state
        assert bank["filled"].all() and bank["entries"].abs().sum() > 0


def test_a_run_saved_before_the_switches_existed_resumes(tiny_config, tiny_trained, tmp_path):
    """Its config lacks the new keys; their defaults are what it ran, so --resume continues it."""
    shutil.copytree(tiny_trained(epochs=1).out, tmp_path, dirs_exist_ok=True)
    cfg = tiny_config(tmp_path, epochs=1)
    path = tmp_path / "checkpoint.pt"
    state = checkpoint.load_run(path)
    for key in VARIANTS.keys() | {"bank_momentum"}:
        del state["config"][key]
    checkpoint.save_atomic(state, path)
    train.run(dataclasses.replace(cfg, epochs=2), resume=True)
    with pytest.raises(UserError, match=r"different config .*\(representatives\)"):
        train.run(dataclasses.replace(cfg, epochs=3, representatives="topk"), resume=True)
