"""The ablation driver: the right switches per row, mean ± std over seeds, finished runs reused."""
import json

from rsnet import ablate
from rsnet.config import Config


def test_table1_runs_each_cell_once_and_reports_mean_and_std(tmp_path, monkeypatch):
    calls = []

    def fake_run(cfg, resume=False, overwrite=False):
        calls.append(cfg)
        score = 10 * cfg.intra + 5 * cfg.pseudo_label + 2 * cfg.memory_bank + cfg.att_loss + cfg.seed
        out = tmp_path / cfg.out
        out.mkdir(parents=True, exist_ok=True)
        records = [{"epoch": e, "avg": score - (cfg.epochs - e)} for e in range(1, cfg.epochs + 1)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    monkeypatch.setattr(ablate, "run", fake_run)
    base = Config(epochs=2, out=str(tmp_path))
    text = ablate.table1(base, seeds=[0, 2], out=tmp_path)
    assert len(calls) == 8 * 2
    full = [c for c in calls if c.memory_bank and c.att_loss]
    assert {c.seed for c in full} == {0, 2} and all(c.intra and c.pseudo_label for c in full)
    assert "| + memory bank | ✓ | 45.1 | 19.0 ± 1.4 |" in text  # 10+5+2+1 + seed (0, 2)
    assert "| Baseline | ✗ | 35.6 | 1.0 ± 1.4 |" in text

    ablate.table1(base, seeds=[0, 2], out=tmp_path)
    assert len(calls) == 16, "completed runs must be reused, not retrained"


def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A cell's folder with a checkpoint is resumed; without one (a crash before the first) it is
    started over: a new run would otherwise refuse the folder."""
    calls = []
    monkeypatch.setattr(ablate, "run", lambda cfg, resume, overwrite: calls.append((resume, overwrite)))
    monkeypatch.setattr(ablate, "_completed", lambda out, epochs: [{"epoch": epochs, "avg": 1.0}] if calls else None)
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "checkpoint.pt").write_bytes(b"")
    ablate.run_cell(Config(epochs=2), {}, True, 0, tmp_path / "cell")
    calls.pop()
    ablate.run_cell(Config(epochs=2), {}, True, 0, tmp_path / "other")
    assert calls == [(False, True)]


def test_epochs_without_evaluation_are_skipped_for_the_best_and_an_unevaluated_end_is_not_complete(tmp_path):
    records = [{"epoch": 1, "losses": {"total": 3.0}}, {"epoch": 2, "losses": {"total": 2.0}, "avg": 7.0},
               {"epoch": 3, "losses": {"total": 1.0}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert ablate._completed(tmp_path, 3) is None
    records[2]["avg"] = 5.0
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert ablate._completed(tmp_path, 3) == records
    assert ablate.run_cell(Config(epochs=3), {}, True, 0, tmp_path) == {"last": records[2], "best": records[1]}
