"""The ablation driver: the right switches per variant, mean ± std over seeds, finished runs reused,
interrupted ones resumed, runs side by side with the cores split, failures reported, figures drawn."""
import json
import threading
from pathlib import Path

import pytest

from rsnet import ablate
from rsnet.config import Config, to_dict, validate
from rsnet.errors import UserError
from rsnet.sweep import cells, launchers
from rsnet.synthetic import SyntheticSpec, generate


def _write_metrics(cfg, score):
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))  # as rsnet.train writes it
    records = [{"epoch": e, "avg": score - (cfg.epochs - e)} for e in range(1, cfg.epochs + 1)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def fake_training(monkeypatch):
    """train_cell replaced by one that writes a run's metrics from its switches; returns the calls."""
    calls = []
    lock = threading.Lock()

    def fake_train_cell(cfg, env):
        with lock:
            calls.append((cfg, env))
        score = 10 * cfg.intra + 5 * cfg.pseudo_label + 2 * cfg.memory_bank + cfg.att_loss + cfg.seed
        score += cfg.em_iters + cfg.n_representatives / 8
        _write_metrics(cfg, score)

    monkeypatch.setattr(ablate, "train_cell", fake_train_cell)
    return calls


def test_table1_runs_each_cell_once_and_reports_mean_and_std(tmp_path, fake_training):
    base = Config(epochs=2, out=str(tmp_path), em_iters=0, n_representatives=0)
    text = ablate.ablate("table1", base, seeds=[0, 2], jobs=2)
    assert len(fake_training) == 8 * 2
    full = [cfg for cfg, _ in fake_training if cfg.memory_bank and cfg.att_loss]
    assert {c.seed for c in full} == {0, 2} and all(c.intra and c.pseudo_label for c in full)
    assert "| + memory bank, L_att | 45.1 | 18.0 | 20.0 | 19.0 ± 1.4 | 19.0 ± 1.4 |" in text  # 10+5+2+1 + seed (0, 2)
    assert "| Baseline, no L_att | 35.6 | 0.0 | 2.0 | 1.0 ± 1.4 | 1.0 ± 1.4 |" in text
    assert (tmp_path / "table1.md").read_text() == text + "\n"

    ablate.ablate("table1", base, seeds=[0, 2], jobs=2)
    assert len(fake_training) == 16, "completed runs must be read back, not retrained"


def test_a_finished_run_of_another_config_is_refused_not_reported(tmp_path, fake_training, capsys):
    """The same sweep folder with another --lr or --data-root: reading the old runs back would report
    them under the new flags. The sweep stops before training anything; a free key (--device) reuses them."""
    args = ["--baseline", "--epochs", "2", "--out", str(tmp_path), "--seeds", "0", "1"]
    assert ablate.main(args) == 0 and len(fake_training) == 4
    capsys.readouterr()
    assert ablate.main([*args, "--lr", "0.01", "--data-root", str(tmp_path / "elsewhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'base-seed0'} holds a finished run of another config (data_root, warmup_epochs, lr, lenient): ")
    assert len(fake_training) == 4, "nothing may train once a finished run is refused"
    assert ablate.main([*args, "--device", "cpu"]) == 0 and len(fake_training) == 4
    (tmp_path / "base-seed1" / "config.json").unlink()
    assert ablate.main(args) == 2
    assert "base-seed1 holds a finished metrics.jsonl but no config.json" in capsys.readouterr().err


def test_the_last_and_the_best_epoch_are_reported_apart(tmp_path, monkeypatch):
    def falls_after_its_peak(cfg, env):
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)  # the launcher made it for its launch.json
        (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "avg": 30.0, "loss": 1.0}) + "\n"
                                           + json.dumps({"epoch": 2, "loss": 0.9}) + "\n"  # not evaluated
                                           + json.dumps({"epoch": 3, "avg": 20.0, "loss": 0.8}) + "\n")

    monkeypatch.setattr(ablate, "train_cell", falls_after_its_peak)
    text = ablate.ablate("table1", Config(epochs=3, out=str(tmp_path)), seeds=[0], jobs=1)
    assert "| Baseline, no L_att | 35.6 | 20.0 | 20.0 ± 0.0 | 30.0 ± 0.0 |" in text


def test_with_held_out_videos_the_epoch_they_pick_is_reported_too(tmp_path, monkeypatch, capsys):
    """The held-out pick (by their mAP, then their cmAP) reports its test score; --baseline runs the two rows."""
    def three_evaluations(cfg, env):
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)  # the launcher made it for its launch.json
        test, held_out = (30.0, 20.0, 25.0), ((1.0, 5.0), (2.0, 3.0), (2.0, 4.0))  # the held-out pick: epoch 3
        records = [{"epoch": e + 1, "avg": test[e] + cfg.intra, "held_out": {"avg": held_out[e][0], "cmap": held_out[e][1]}}
                   for e in range(3)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    monkeypatch.setattr(ablate, "train_cell", three_evaluations)
    assert ablate.main(["--baseline", "--epochs", "3", "--val-fraction", "0.1", "--out", str(tmp_path), "--seeds", "0"]) == 0
    text = capsys.readouterr().out
    assert "| seed 0 | ours, last epoch | ours, best epoch (picked on test) | ours, picked on held-out training videos |" in text
    assert "| Full model | 45.1 | 26.0 | 26.0 ± 0.0 | 31.0 ± 0.0 | 26.0 ± 0.0 |" in text
    assert "| Baseline (`--no-intra --no-pseudo-label --no-memory-bank`) | 36.8 | 25.0 | 25.0 ± 0.0 | 30.0 ± 0.0 | 25.0 ± 0.0 |" in text
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "base-seed0", "baseline.md", "intra-False_memory-bank-False_pseudo-label-False-seed0"]


def test_figure_sweeps_set_their_key_and_draw_a_png(tmp_path, fake_training):
    pytest.importorskip("matplotlib")
    base = Config(epochs=2, out=str(tmp_path))
    text = ablate.ablate("figure3", base, seeds=[0, 1], jobs=1)
    assert sorted({cfg.em_iters for cfg, _ in fake_training}) == [1, 2, 3, 4, 5, 6]
    assert "| 2 EM iterations | - |" in text
    assert (tmp_path / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ablate.ablate("figure2", base, seeds=[0, 1], jobs=1)
    online = [cfg for cfg, _ in fake_training if not cfg.memory_bank]
    assert sorted({c.n_representatives for c in online}) == [2, 4, 8, 16, 32]
    offline = [cfg for cfg, _ in fake_training if cfg.memory_bank and cfg.em_iters == base.em_iters]
    assert {c.n_representatives for c in offline} == {8} and sorted({c.bank_slots for c in offline}) == list(range(1, 11))


def test_cpu_workers_split_the_cores(monkeypatch):
    monkeypatch.setattr(launchers.os, "cpu_count", lambda: 8)
    envs = ablate.worker_environments("cpu", 3)
    assert len(envs) == 3 and all(env["OMP_NUM_THREADS"] == "2" for env in envs)
    assert ablate.worker_environments("cpu", None) == [{"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}]


def test_a_failed_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    def fails_without_the_bank(cfg, env):
        if not cfg.memory_bank:
            raise RuntimeError(f"{cfg.out}: python -m rsnet.train exited with 1")
        _write_metrics(cfg, 1.0)

    monkeypatch.setattr(ablate, "train_cell", fails_without_the_bank)
    with pytest.raises(UserError, match="6 of 8 runs failed"):
        ablate.ablate("table1", Config(epochs=2, out=str(tmp_path)), seeds=[0], jobs=2)
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.jsonl").is_file()) == \
        ["att-loss-False-seed0", "base-seed0"]  # + memory bank without and with L_att


def test_an_interrupted_run_resumes_and_a_new_one_starts_over(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(cells.subprocess, "run",
                        lambda command, **kw: commands.append(command) or type("Done", (), {"returncode": 0})())
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "checkpoint.pt").write_bytes(b"")
    ablate.train_cell(Config(out=str(interrupted)), {})
    ablate.train_cell(Config(out=str(tmp_path / "new")), {})
    assert [c[-1] for c in commands] == ["--resume", "--overwrite"]


def test_a_cell_trains_for_real_with_its_switches(tmp_path):
    """The cell's config file round-trips through python -m rsnet.train: one real, tiny run."""
    root = generate(tmp_path / "data", SyntheticSpec(n_train=4, n_test=3, length_scale=0.1), seed=1)
    base = Config(data_root=str(root), epochs=1, warmup_epochs=0, eval_every=1, embed_dim=16, videos_per_step=2,
                  lenient=True, device="cpu", cache_dir=str(tmp_path / "cache"))
    cfg = ablate.cell_config(base, ablate.STUDIES["figure3"].variants[2], seed=3, out=tmp_path / "cell")
    ablate.train_cell(cfg, {"OMP_NUM_THREADS": "1"})
    saved = json.loads((tmp_path / "cell" / "config.json").read_text())
    assert saved["em_iters"] == 3 and saved["seed"] == 3 and saved["embed_dim"] == 16
    assert ablate.completed(tmp_path / "cell", 1) is not None


TABLE_SWITCHES = ("intra", "pseudo_label", "memory_bank", "representatives", "bank", "propagation_loss", "fusion")


@pytest.mark.parametrize("table, rows", [
    (2, {"Baseline": (False, False, False, "em", "class", "pseudo_label", "late"),
         "Full model w/o memory bank": (True, True, False, "em", "class", "pseudo_label", "late"),
         "Foreground representative snippets": (True, True, False, "foreground", "class", "pseudo_label", "late"),
         "Background representative snippets": (True, True, False, "background", "class", "pseudo_label", "late"),
         "Representative snippets of high scores (top/bottom k)":
             (True, True, False, "topk", "class", "pseudo_label", "late"),
         "Full model, class-wise memory bank": (True, True, True, "em", "class", "pseudo_label", "late"),
         "Video-wise memory bank": (True, True, True, "em", "video", "pseudo_label", "late")}),
    (3, {"Pseudo-label loss (full model w/o memory bank)": (True, True, False, "em", "class", "pseudo_label", "late"),
         "Feature L1 loss": (True, True, False, "em", "class", "feature_l1", "late"),
         "Feature L2 loss": (True, True, False, "em", "class", "feature_l2", "late"),
         "Late fusion (full model)": (True, True, True, "em", "class", "pseudo_label", "late"),
         "Concat mu^a and mu^e (early fusion)": (True, True, True, "em", "class", "pseudo_label", "early")}),
])
def test_tables_2_and_3_run_each_variant_with_its_switches_and_the_papers_number(tmp_path, fake_training, table, rows):
    ablate.main(["--table", str(table), "--out", str(tmp_path), "--epochs", "2", "--seeds", "0", "--jobs", "1"])
    study = ablate.STUDIES[f"table{table}"]
    assert [v.name for v in study.variants] == list(rows)
    cells = {Path(cfg.out).name: cfg for cfg, _ in fake_training}
    assert len(cells) == len(rows)
    for variant in study.variants:
        cfg = cells[ablate.cell_folder(tmp_path, Config(), variant, 0).name]
        validate(cfg)
        assert tuple(getattr(cfg, key) for key in TABLE_SWITCHES) == rows[variant.name], variant.name
    text = (tmp_path / f"table{table}.md").read_text()
    papers = {2: ["| Video-wise memory bank | 45.0 |", "| Foreground representative snippets | 41.8 |",
                  "| Representative snippets of high scores (top/bottom k) | 39.2 |",
                  "| Background representative snippets | 40.2 |"],
              3: ["| Feature L1 loss | 41.1 |", "| Feature L2 loss | 41.2 |",
                  "| Concat mu^a and mu^e (early fusion) | 43.0 |"]}
    for row in papers[table]:
        assert row in text



def test_table4_scores_each_seeds_model_by_each_set_of_branches(tmp_path, monkeypatch):
    """Table 4's rows are one trained model's test scores by main, main + intra and all branches."""
    from rsnet import train, trained

    root = generate(tmp_path / "data", SyntheticSpec(n_train=6, n_test=4, length_scale=0.15), seed=1)
    base = Config(data_root=str(root), epochs=2, warmup_epochs=0, eval_every=1, embed_dim=16, videos_per_step=2,
                  lenient=True, device="cpu", out=str(tmp_path / "sweep"))
    monkeypatch.setattr(ablate, "train_cell", lambda cfg, env: train.run(cfg, overwrite=True))
    scored = []
    real_evaluate = trained.evaluate_videos

    def recording_evaluate(*args, branches="intra", **kwargs):
        result = real_evaluate(*args, branches=branches, **kwargs)
        scored.append((branches, result.avg))
        return result

    for scorer in (train, ablate):  # training's evaluations, and the table's
        monkeypatch.setattr(scorer, "evaluate_videos", recording_evaluate)
    text = ablate.ablate("table4", base, seeds=[0], jobs=1)
    table_scores = scored[-3:]  # training evaluated its epochs first
    assert [b for b, _ in table_scores] == ["main", "intra", "all"]
    for (row, branches, paper, macs), (_, avg) in zip(ablate.TABLE4_BRANCHES, table_scores):
        assert f"| {row} | {paper:.1f} | {macs} | {avg:.1f} ± 0.0 |" in text
    last = ablate.completed(tmp_path / "sweep" / "base-seed0", 2)[-1]
    assert table_scores[1][1] == last["avg"], "main + intra is the score training reported"


def test_studies_in_one_sweep_folder_share_the_runs_of_one_configuration(tmp_path, fake_training):
    """Table 3's reference rows are Table 2's full model with and without the bank: run once, read back."""
    flags = ["--out", str(tmp_path), "--epochs", "2", "--seeds", "0", "1", "--jobs", "2"]
    ablate.main(["--table", "2", *flags])
    assert len(fake_training) == 7 * 2
    ablate.main(["--table", "3", *flags])
    new = [Path(cfg.out).name for cfg, _ in fake_training[7 * 2:]]
    assert sorted(new) == sorted(f"{name}-seed{seed}" for seed in (0, 1) for name in
                                 ("memory-bank-False_propagation-loss-feature_l1",
                                  "memory-bank-False_propagation-loss-feature_l2", "fusion-early"))
    full = ablate.Variant("full", {"memory_bank": True, "fusion": "late"})  # both are the defaults
    assert ablate.cell_folder(tmp_path, Config(), full, 1) == tmp_path / "base-seed1"


def test_rows_of_one_configuration_in_one_study_train_once(tmp_path, fake_training):
    same = [ablate.cell_config(Config(epochs=2), ablate.Variant(name, {"em_iters": 2}), 0, tmp_path / "same")
            for name in ("a", "b")]
    launchers.run_cells(same, launchers.LocalLauncher([{}, {}]), ablate.train_cell)
    assert len(fake_training) == 1
