"""``--launcher slurm``: the cells as one Slurm job array through submitit (``pip install -e .[slurm]``).

One task per cell to train. submitit pickles each task (a ``CellTask`` and its cell's config)
into ``OUT/.submitit/``, writes the array's sbatch script there and submits it; the task's logs go
there too, and its training's output to the cell's train.log as with the local launcher. The sweep
folder must therefore be on a filesystem the compute nodes share.

When Slurm pre-empts a task or it nears its time limit, submitit calls the task's ``checkpoint``
(``submitit.helpers.Checkpointable``), which requeues it as it was: the requeued task finds the
run's checkpoint.pt and resumes it (``rsnet.train --resume``), losing at most the epochs since the
last checkpoint (``--checkpoint-every``). A task requeued more than submitit's limit of timeouts
(3), or one that fails, is submitted again by a rerun of the sweep, which resumes it the same way.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError

try:
    import submitit
except ImportError:
    raise UserError("--launcher slurm needs submitit: pip install -e .[slurm]") from None

from .cells import LOG_FILE, Train, is_finished, last_log_line, write_launch

SUBMITIT_FOLDER = ".submitit"  # in the sweep folder: the tasks' pickles, sbatch scripts and logs
JOB_CLASSES = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}


class CellTask(submitit.helpers.Checkpointable):
    """What one array task runs: ``train`` on its cell. Checkpointable: a pre-empted or timed-out
    task is requeued as it is, and ``train`` resumes the run from its checkpoint."""

    def __init__(self, train: Train):
        self.train = train

    def __call__(self, cfg: Config) -> None:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")  # the task's share of a node: no more threads than its cores
        self.train(cfg, {"OMP_NUM_THREADS": cpus, "MKL_NUM_THREADS": cpus} if cpus else {})


class SubmititLauncher:
    """The cells as one job array of ``cluster`` (``slurm``; submitit's ``local`` runs the same
    submission, pickles and folders on this machine), with ``parameters`` for
    ``AutoExecutor.update_parameters``. With ``wait``, follows the tasks until they end, printing
    each as it does, every ``poll_s`` seconds; else returns once they are submitted."""

    def __init__(self, out: Path, cluster: str, parameters: dict[str, Any], wait: bool = True, poll_s: float = 60):
        self.folder = out / SUBMITIT_FOLDER / "%j"
        self.cluster, self.parameters, self.wait, self.poll_s = cluster, parameters, wait, poll_s

    def run(self, cells: list[Config], train: Train) -> list[str]:
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters)
        task = CellTask(train)
        with executor.batch():  # one sbatch call: a job array of len(cells) tasks
            jobs = [executor.submit(task, cfg) for cfg in cells]
        for cfg, job in zip(cells, jobs):
            write_launch(cfg, {"launcher": "submitit", "cluster": self.cluster, "job_id": job.job_id,
                               "folder": str(self.folder)})
        last = f" to {jobs[-1].job_id}" if len(jobs) > 1 else ""
        print(f"rskp: sweep: submitted {len(jobs)} cells to {self.cluster} as job {jobs[0].job_id}{last}; "
              f"their logs in {self.folder.parent}", file=sys.stderr)
        return self._follow(dict(zip((job.job_id for job in jobs), cells)), jobs) if self.wait else []

    def _follow(self, cells: dict[str, Config], jobs: list) -> list[str]:
        failures = []
        for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
            cfg = cells[job.job_id]
            if is_finished(cfg):
                print(f"rskp: sweep: {cfg.out} done", file=sys.stderr)
                continue
            failures.append(f"{cfg.out}: job {job.job_id} ended {job.state} ({failure_line(cfg, job)})")
            print(f"rskp: sweep: {failures[-1]}", file=sys.stderr)
        return failures


def rebuilt_job(record: dict[str, Any]):
    """The submitit job of a cell's launch.json, to ask the scheduler about."""
    return JOB_CLASSES[record["cluster"]](folder=record["folder"], job_id=record["job_id"])


def failure_line(cfg: Config, job) -> str:
    """Why the cell's task ended unfinished: the last line of its training log, else of its task's log."""
    return last_log_line(Path(cfg.out) / LOG_FILE) or last_log_line(job.paths.stderr) or "no log"
