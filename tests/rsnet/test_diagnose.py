"""The diagnostic of a trained run: assignment sharpness within its bounds, one mAP per fusion."""
import pytest

from rsnet import diagnose, evaluate, train, trained
from rsnet.config import Config
from rsnet.model import predict_batches
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
    assert [line.split(",")[1].split()[0] for line in lines[2:5]] == ["main", "fused", "intra"]
    assert lines[5].startswith("average mAP, all branches: not scored: --branches all reads the memory bank, "
                               "and the checkpoint's is empty") and len(lines) == 6  # still in its warm-up


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
    dataset = trained.load_dataset(cfg)
    trainer = train.Trainer(cfg, dataset, torch.device("cpu"))
    with torch.no_grad():
        trainer.model.mu0.copy_(trainer.model.mu0[:1].expand_as(trainer.model.mu0))
    stats = diagnose.assignment_statistics(trainer.model, dataset, torch.device("cpu"))
    assert stats["largest_assignment"] == pytest.approx(1 / cfg.n_representatives, abs=1e-6)
    assert stats["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)


def _rows(lines):
    """{row name: its printed average mAP} of diagnose's 'average mAP, NAME  VALUE' lines."""
    rows = [line.removeprefix("average mAP, ").rsplit(None, 1) for line in lines if line.startswith("average mAP, ")]
    return {name.strip(): value for name, value in rows}


def _diagnosed_run(tmp_path, capsys, **overrides):
    """(run folder, diagnose's printed lines) of a tiny run past its warm-up, config ``overrides`` on top."""
    root = generate(tmp_path / "data", SyntheticSpec(n_train=8, n_test=6, length_scale=0.15), seed=4)
    out = tmp_path / "run"
    train.run(Config(data_root=str(root), out=str(out), warmup_epochs=0, eval_every=1, embed_dim=48, lenient=True,
                     device="cpu", **overrides))
    capsys.readouterr()
    assert diagnose.main(["--checkpoint", str(out / "checkpoint.pt")]) == 0
    return out, capsys.readouterr().out.splitlines()


def test_every_row_is_scored_under_the_runs_protocol(tmp_path, capsys):
    """An ActivityNet-protocol run (IoU 0.5:0.95): the 'all branches' row too, which used to be scored
    at the rskp protocol's IoUs (0.1:0.7); on this run the two differ."""
    out, lines = _diagnosed_run(tmp_path, capsys, epochs=2, protocol="anet")
    rows = _rows(lines)
    run = trained.load(out, "cpu")
    dataset = trained.dataset_of(run)
    score = lambda branches: trained.evaluate_videos(run.model, run.bank, dataset, run.config, run.device,  # noqa: E731
                                                     branches=branches)
    anet, rskp = score("all"), evaluate.evaluate(*predict_batches(
        run.model, dataset.test_batches(run.config.test_batch_size), run.device, "all", run.bank),
        dataset.annotations, dataset.test_indices, lenient=True)
    assert f"{anet.avg:.1f}" != f"{rskp.avg:.1f}"  # the test tells the protocols apart
    assert rows["all branches"] == f"{anet.avg:.1f}" and rows["fused (paper)"] == f"{score('intra').avg:.1f}"


def test_diagnose_a_run_with_the_video_wise_bank(tmp_path, capsys):
    """--bank video holds training videos' entries, not classes': the 'all branches' row (the
    class-wise bank's snippets of the predicted classes) is a note; the other rows are scored."""
    _, lines = _diagnosed_run(tmp_path, capsys, epochs=1, bank="video")
    assert list(_rows(lines[2:5])) == ["main only", "fused (paper)", "intra only"]
    assert lines[5].startswith("average mAP, all branches: not scored: ") and "--bank video" in lines[5]
    assert len(lines) == 6
