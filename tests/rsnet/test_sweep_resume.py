"""A run killed mid-way continues from its checkpoint, never from scratch: when a rerun of the sweep
resubmits it (any launcher), and when Slurm pre-empts or times out its task (submitit's
Checkpointable requeues it: here on submitit's LocalExecutor, which signals and requeues as Slurm
does). Finished cells are never rerun. Real tiny runs of python -m rsnet.train."""
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rsnet import ablate
from rsnet.checkpoint import load_run
from rsnet.config import Config, to_dict
from rsnet.sweep import cells
from rsnet.synthetic import SyntheticSpec, generate

EPOCHS = 6  # of 2 optimizer steps each: a kill after the first checkpoint lands mid-run


def _flags(root: Path, out: Path) -> list[str]:
    return ["--seeds", "0", "--data-root", str(root), "--epochs", str(EPOCHS), "--warmup-epochs", "0",
            "--eval-every", str(EPOCHS), "--embed-dim", "16", "--videos-per-step", "2", "--lenient",
            "--device", "cpu", "--out", str(out)]


def _finished_without_training(cfg, env):
    out = Path(cfg.out)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": cfg.epochs, "avg": 1.0}) + "\n")


def _starts(log: str) -> list[tuple[str, int]]:
    """Each start of a cell's training in its train.log: (--resume or --overwrite, its progress bar's total steps)."""
    parts = re.split(r"^rskp: sweep: python -m rsnet.train --config \S+ (--\w+)$", log, flags=re.M)[1:]
    return [(flag, int(re.findall(r"\d+/(\d+) \[", text)[-1])) for flag, text in zip(parts[::2], parts[1::2])]


def _wait_for(path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


@pytest.fixture
def data_root(tmp_path):
    return generate(tmp_path / "data", SyntheticSpec(n_train=4, n_test=3, length_scale=0.1), seed=1)


@pytest.mark.slow  # two real trainings, each importing torch: 10-30 s on 2 busy cores
def test_a_run_killed_mid_way_resumes_on_rerun_and_finished_cells_are_not_rerun(tmp_path, data_root, monkeypatch,
                                                                                capsys):
    out = tmp_path / "sweep"
    flags = ["--grid", "em_iters=1,3", "--jobs", "1", *_flags(data_root, out)]
    with monkeypatch.context() as before:  # the em_iters=1 cell finished in an earlier sweep
        before.setattr(ablate, "train_cell", _finished_without_training)
        assert ablate.main(["--grid", "em_iters=1", *_flags(data_root, out)]) == 0
    finished = out / "em-iters-1-seed0"
    finished_metrics = (finished / "metrics.jsonl").stat().st_mtime_ns

    trainings = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainings.append(self)

    killed = out / "em-iters-3-seed0"
    kill = threading.Thread(target=lambda: (_wait_for(killed / "checkpoint.pt"), trainings[0].kill()))
    with monkeypatch.context() as killing:
        killing.setattr(cells.subprocess, "Popen", Recorded)
        kill.start()
        assert ablate.main(flags) == 2
        kill.join()
    assert "1 of 1 runs failed" in capsys.readouterr().err
    resumed_from = load_run(killed / "checkpoint.pt")["epoch"]
    assert 0 < resumed_from < EPOCHS
    assert ablate.main([*flags, "--status"]) == 0
    assert f"| {killed.name} | failed |" in capsys.readouterr().out

    assert ablate.main(flags) == 0
    assert "| em_iters=3 |" in capsys.readouterr().out
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    steps_per_epoch = 2
    assert _starts((killed / "train.log").read_text()) == [
        ("--overwrite", EPOCHS * steps_per_epoch), ("--resume", (EPOCHS - resumed_from) * steps_per_epoch)]
    assert (finished / "metrics.jsonl").stat().st_mtime_ns == finished_metrics and not (finished / "train.log").exists()
    assert len(trainings) == 1, "the killed sweep trained its unfinished cell only"


@pytest.mark.slow  # two task processes and two trainings, each importing torch: 20-60 s on 2 busy cores
def test_a_preempted_slurm_task_is_requeued_and_resumes_from_its_checkpoint(tmp_path, data_root):
    from rsnet.sweep.slurm import SubmititLauncher

    out = tmp_path / "sweep"
    cfg = Config(data_root=str(data_root), epochs=EPOCHS, warmup_epochs=0, eval_every=EPOCHS, embed_dim=16,
                 videos_per_step=2, lenient=True, device="cpu", out=str(out / "base-seed0"))
    assert SubmititLauncher(out, "local", {"timeout_min": 10}, wait=False).run([cfg], cells.train_cell) == []
    controller = int(json.loads((out / "base-seed0" / "launch.json").read_text())["job_id"])  # a local job's pid
    _wait_for(out / "base-seed0" / "checkpoint.pt")
    task = int(Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0])
    subprocess.run(["kill", "-USR2", str(task)], check=True)  # what Slurm sends a task it pre-empts or times out
    deadline = time.monotonic() + 300
    while not cells.is_finished(cfg):
        assert time.monotonic() < deadline, "the requeued task never finished"
        time.sleep(0.2)
    starts = _starts((out / "base-seed0" / "train.log").read_text())
    assert [flag for flag, _ in starts] == ["--overwrite", "--resume"] and starts[1][1] < starts[0][1]
