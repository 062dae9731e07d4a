"""The diagnostic of a trained run: assignment sharpness within its bounds, one mAP per fusion."""
import pytest

from rsnet import diagnose, train
from rsnet.config import Config
from rsnet.synthetic import SyntheticSpec, generate


def test_diagnose_a_short_run(tmp_path, capsys):
    root = generate(tmp_path / "data", SyntheticSpec(n_train=8, n_test=6, length_scale=0.15), seed=4)
    train.run(Config(data_root=str(root), out=str(tmp_path / "run"), epochs=1, warmup_epochs=5, eval_every=1,
                     embed_dim=48, lenient=True, device="cpu"))
    capsys.readouterr()
    diagnose.main(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt")])
    lines = capsys.readouterr().out.splitlines()
    largest = float(lines[0].split("mean largest ")[1].split()[0])
    entropy = float(lines[0].split("normalized entropy ")[1].split()[0])
    assert 1 / 8 <= largest <= 1 and 0 <= entropy <= 1
    assert [line.split(",")[1].split()[0] for line in lines[2:]] == ["main", "fused", "intra"]


def test_diagnose_refuses_a_run_without_the_intra_branch(tmp_path, capsys):
    root = generate(tmp_path / "data", SyntheticSpec(n_train=8, n_test=6, length_scale=0.15), seed=4)
    train.run(Config(data_root=str(root), out=str(tmp_path / "run"), epochs=1, eval_every=1, embed_dim=48,
                     lenient=True, device="cpu", intra=False, pseudo_label=False, memory_bank=False))
    capsys.readouterr()
    assert diagnose.main(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt")]) == 2
    assert "the run has no intra-video branch" in capsys.readouterr().err


def test_identical_centres_give_exactly_uniform_assignments(tmp_path):
    """With every mu0 row the same, EM keeps the K centres equal: each snippet's assignment is 1/K
    to each, so the largest is 1/K and the normalized entropy 1 (the statistics' two bounds)."""
    import torch

    root = generate(tmp_path / "data", SyntheticSpec(n_train=8, n_test=6, length_scale=0.15), seed=4)
    cfg = Config(data_root=str(root), embed_dim=48, lenient=True, device="cpu")
    trainer = train.Trainer(cfg, train.load_dataset(cfg), torch.device("cpu"))
    with torch.no_grad():
        trainer.model.mu0.copy_(trainer.model.mu0[:1].expand_as(trainer.model.mu0))
    stats = diagnose.assignment_statistics(trainer)
    assert stats["largest_assignment"] == pytest.approx(1 / cfg.n_representatives, abs=1e-6)
    assert stats["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)
