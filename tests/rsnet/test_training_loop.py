"""The training loop equals the published one (rsnet.official_rskp.train_epochs) in float64.

Beyond one step (tests/test_parity.py): steps of videos_per_step videos counted across epochs
(a step open at the end of an epoch, and at the end of warm-up, is completed in the next; the
run's last open step is never applied), bank reads and inserts video by video within a step, the
end-of-warm-up fill in eval mode and the lambda_s switch. Both loops start from the same
parameters and take the same per-epoch video order; dropout is off.
"""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from helpers import rel_error

from bench.oracles import official_rskp
from rsnet import train
from rsnet.config import Config
from rsnet.data.dataset import WTALCDataset
from rsnet.model import MemoryBank
from rsnet.synthetic import SyntheticSpec, generate

# 8 videos in steps of 3: epochs end 2 and 1 videos into a step (the second one is the end of warm-up)
N_TRAIN, PER_STEP, WARMUP, EPOCHS = 8, 3, 1, 4
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("data") / "loop", SyntheticSpec(n_train=N_TRAIN, n_test=4, length_scale=0.15),
                    seed=3)
    data = WTALCDataset(root)
    data.features = [f.astype(np.float64) for f in data.features]
    # two classes (and a third on some videos): every step holds two videos of a class, so a video
    # reads what another of its step inserted
    labels = np.zeros_like(data.annotations.video_labels)
    for i, v in enumerate(data.train_indices):
        labels[v, i % 2] = 1
        labels[v, 2] = i % 3 == 0
    data.annotations = dataclasses.replace(data.annotations, video_labels=labels)
    return data


def _trainer(dataset):
    cfg = Config(data_root="unused", device="cpu", ops="reference", dropout=0.0, embed_dim=24, epochs=EPOCHS,
                 warmup_epochs=WARMUP, videos_per_step=PER_STEP, test_batch_size=3, seed=5, lr=1e-2)
    assert cfg.bank_slots <= cfg.n_representatives  # the fill leaves every class of a training video full
    torch.manual_seed(0)
    trainer = train.Trainer(cfg, dataset, torch.device("cpu"))
    trainer.model.double()  # in place: the optimizer keeps the same parameters
    trainer.bank.double()
    return trainer


def _official_epochs(trainer, dataset):
    model = copy.deepcopy(trainer.model)
    cfg = model.cfg
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    features = {int(v): torch.from_numpy(dataset.features[v]) for v in dataset.train_indices}
    labels = torch.from_numpy(dataset.annotations.video_labels)
    orders = [dataset.train_order(epoch, cfg.seed).tolist() for epoch in range(EPOCHS)]
    epochs = official_rskp.train_epochs(model, optimizer, features, labels, orders, dataset.train_indices.tolist())
    return model, epochs


def test_training_loop_equals_the_official_loop(dataset):
    trainer = _trainer(dataset)
    official, official_epochs = _official_epochs(trainer, dataset)
    classes = dataset.annotations.video_labels[dataset.train_indices].any(0)
    for epoch, (rows, scores) in enumerate(official_epochs):
        trainer.train_epoch(epoch)
        for (name, p), q in zip(trainer.model.named_parameters(), official.parameters(), strict=True):
            assert rel_error(p, q) <= TOLERANCE, (epoch, name, rel_error(p, q))
        if epoch < WARMUP:
            assert not rows.any() and not trainer.bank.count.any()
            continue
        assert trainer.bank.count.tolist() == [trainer.cfg.bank_slots if c else 0 for c in classes], epoch
        assert rel_error(trainer.bank.bank, rows) <= TOLERANCE and rel_error(trainer.bank.scores, scores) <= TOLERANCE
    # the guard: the parameters moved
    assert rel_error(trainer.model.embedding.weight, _trainer(dataset).model.embedding.weight) > 1e-3


def test_read_in_order_reads_what_each_video_would_read_after_the_ones_before(dataset):
    """Video by video against the official bank (a full one: it reads zero rows where we read none),
    several videos of the same class in one call, so a later one reads what an earlier one inserted."""
    gen = torch.Generator().manual_seed(1)
    n_classes, slots, k, dim = 4, 3, 5, 6
    labels = torch.tensor([[1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float64)
    candidates = torch.randn(len(labels), k, dim, generator=gen, dtype=torch.float64)
    candidate_scores = torch.rand(len(labels), k, n_classes, generator=gen, dtype=torch.float64)
    bank = MemoryBank(n_classes, slots, dim).double()
    bank.insert(torch.randn(1, slots, dim, generator=gen, dtype=torch.float64),
                torch.rand(1, slots, n_classes, generator=gen, dtype=torch.float64), torch.ones(1, n_classes))
    rows, scores = bank.bank.clone(), bank.scores.clone()
    y, y_cu = bank.read_in_order(candidates, candidate_scores, labels)
    for b, label in enumerate(labels):
        want = official_rskp.read_queue(rows, label)
        assert torch.equal(y[y_cu.offsets[b]:y_cu.offsets[b + 1]], want), b
        official_rskp.update_queue(rows, scores, candidates[b], candidate_scores[b], label)
    assert torch.equal(bank.bank, rows) and torch.equal(bank.scores, scores)
    assert not torch.equal(y[y_cu.offsets[3]:y_cu.offsets[4]], y[:y_cu.offsets[1]])  # video 3 read video 0's inserts
