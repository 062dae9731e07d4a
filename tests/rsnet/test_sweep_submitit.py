"""--launcher slurm through submitit: the same submission, pickles and folders run on this machine
by submitit's LocalExecutor (it runs each task as its own process, as Slurm would; its
DebugExecutor would run them inside this one), and a fake sbatch / sacct on PATH that records the
array script submitit writes for Slurm and answers for the scheduler."""
import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest
import submitit

from rsnet import ablate
from rsnet.config import Config, to_dict
from rsnet.sweep.slurm import SubmititLauncher


def score_from_keys(cfg, env):
    """A training stand-in: a finished run whose score comes from the cell's keys, and the process it ran in."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    records = [{"epoch": e, "avg": 1000 * cfg.lr + cfg.n_representatives + cfg.seed - (cfg.epochs - e)}
               for e in range(1, cfg.epochs + 1)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "pid").write_text(str(os.getpid()))


@pytest.fixture
def tasks_pickle_this_module(monkeypatch):
    """The tasks' processes cannot import this test module: cloudpickle sends its functions by value."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    monkeypatch.setattr(ablate, "train_cell", score_from_keys)
    yield
    cloudpickle.unregister_pickle_by_value(module)


GRID = ["lr=1e-4,5e-4", "n_representatives=4,16"]


@pytest.mark.slow  # 4 task processes that each import torch (through rsnet.config): 10-40 s on 2 busy cores
def test_local_executor_runs_a_grid_as_slurm_would_and_reports_what_the_local_pool_does(tmp_path,
                                                                                        tasks_pickle_this_module):
    base = Config(epochs=2, out=str(tmp_path / "submitit"))
    study = ablate.grid_study(GRID, base)
    launcher = SubmititLauncher(tmp_path / "submitit", "local", {"timeout_min": 5}, poll_s=0.2)
    through_submitit = ablate.ablate("grid", base, [0], study=study, launcher=launcher)

    local = Config(epochs=2, out=str(tmp_path / "local"))
    assert ablate.ablate("grid", local, [0], study=ablate.grid_study(GRID, local), jobs=2) == through_submitit
    assert "| lr=5e-4 n_representatives=16 | 16.5 | 16.5 ± 0.0 | 16.5 ± 0.0 |" in through_submitit

    cells = [p for p in (tmp_path / "submitit").iterdir() if p.is_dir() and p.name != ".submitit"]
    assert len(cells) == 4
    for cell in cells:  # each task ran in its own process, its pickle and logs in the sweep's .submitit folder
        launch = json.loads((cell / "launch.json").read_text())
        assert launch["cluster"] == "local" and int((cell / "pid").read_text()) != os.getpid()
        assert Path(launch["folder"]) == tmp_path / "submitit" / ".submitit" / "%j"
        job = Path(launch["folder"].replace("%j", launch["job_id"]))
        assert (job / f"{launch['job_id']}_submitted.pkl").is_file()
        assert (job / f"{launch['job_id']}_0_result.pkl").is_file()


FAKE_SBATCH = """#!/bin/sh
# records each script it is given and answers as sbatch does, the n-th call with line n of $FAKE_SLURM/ids
n=$(ls "$FAKE_SLURM" | grep -c '^script')
cp "$1" "$FAKE_SLURM/script$n.sh"
echo "Submitted batch job $(sed -n "$((n + 1))p" "$FAKE_SLURM/ids")"
"""
FAKE_SACCT = """#!/bin/sh
# the scheduler's states as the test sets them (sacct -o JobID,State,NodeList --parsable2)
echo "JobID|State|NodeList"
cat "$FAKE_SLURM/states"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, sacct and srun (submitit looks for it to tell a Slurm cluster) on PATH; returns their folder."""
    bin_dir, records = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    records.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (records / "ids").write_text("4242\n4243\n")
    (records / "states").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(records))
    submitit.SlurmJob.watcher.clear()  # it caches the states of jobs it saw end, by id, for the process
    yield records
    submitit.SlurmJob.watcher.clear()


def _submitted_cells(out: Path, job_id: str) -> list[str]:
    """The cells whose pickled tasks job ``job_id`` (an array's tasks, ID_0, ID_1, ...) will run."""
    pickles = (out / ".submitit").glob(f"{job_id}*/*_submitted.pkl")
    return sorted(Path(submitit.helpers.DelayedSubmission.load(p).args[0].out).name for p in pickles)


def test_slurm_gets_one_array_of_the_unfinished_cells_with_the_asked_resources(tmp_path, fake_slurm, monkeypatch,
                                                                              capsys):
    out = tmp_path / "sweep"
    common = ["--seeds", "0", "--epochs", "2", "--out", str(out)]
    with monkeypatch.context() as local:  # one cell of the grid finished before, on this machine
        local.setattr(ablate, "train_cell", score_from_keys)
        assert ablate.main(["--grid", "lr=1e-4", "n_representatives=4", *common]) == 0
    flags = ["--grid", *GRID, *common, "--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "240",
             "--slurm-gpus-per-task", "1", "--slurm-cpus-per-task", "8", "--slurm-array-parallelism", "2",
             "--slurm-param", "account=vision", "--slurm-param", "exclusive"]
    capsys.readouterr()
    assert ablate.main([*flags, "--no-wait"]) == 0
    script = (fake_slurm / "script0.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-2%2", "#SBATCH --account=vision",
                 "#SBATCH --exclusive", "#SBATCH --job-name=rskp-sweep", "-m submitit.core._submit"):
        assert line in script, line
    assert str(out / ".submitit") in script
    assert _submitted_cells(out, "4242") == ["lr-0.0001_n-representatives-16-seed0",
                                             "lr-0.0005_n-representatives-16-seed0",
                                             "lr-0.0005_n-representatives-4-seed0"]
    report = capsys.readouterr().out
    assert "3 of 4 cells are not finished" in report
    assert "| lr-0.0005_n-representatives-4-seed0 | queued | job 4242_" in report

    # the scheduler runs one, keeps one queued, and one fails after writing its log
    (fake_slurm / "states").write_text("4242_0|RUNNING|node1\n4242_1|PENDING|\n4242_2|FAILED|node2\n")
    failed = next(c for c in out.iterdir() if (c / "launch.json").is_file()
                  and json.loads((c / "launch.json").read_text()).get("job_id") == "4242_2")
    (failed / "train.log").write_text("train:  40%|####      | 8/20\nRuntimeError: CUDA out of memory\n")
    assert ablate.main([*flags, "--status"]) == 0
    status = capsys.readouterr().out
    assert status.startswith("4 cells: 1 done, 1 running, 1 queued, 1 failed\n")
    assert "| lr-0.0001_n-representatives-4-seed0 | done | avg mAP 4.1 at epoch 2 |" in status
    assert f"| {failed.name} | failed | job 4242_2 FAILED: RuntimeError: CUDA out of memory |" in status
    assert "| running | job 4242_0 RUNNING" in status and "| queued | job 4242_1 PENDING |" in status

    # a rerun submits only the failed cell: the others are done, running or queued
    submitit.SlurmJob.watcher.clear()
    assert ablate.main([*flags, "--no-wait"]) == 0
    resubmitted = (fake_slurm / "script1.sh").read_text()
    assert "--array" not in resubmitted and "#SBATCH --partition=gpu" in resubmitted
    assert _submitted_cells(out, "4243") == [failed.name]
    assert json.loads((failed / "launch.json").read_text())["job_id"] == "4243"
