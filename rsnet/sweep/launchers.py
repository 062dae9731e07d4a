"""Running a sweep's cells: ``--launcher local`` (a pool of processes on this machine, the default)
or ``--launcher slurm`` (a Slurm job array through submitit, ``rsnet.sweep.slurm``).

``run_cells`` is the engine both share: it keeps the cells of this machine's ``--shard``, reads
finished runs back (refusing those of another config before anything trains), leaves alone the
cells another sweep has queued or is running (``rsnet.sweep.status``), and hands the rest to the
launcher. A launcher returns one message per cell that ended unfinished; the others are kept,
and a rerun continues them from their checkpoints.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import queue
import socket
import sys
from pathlib import Path
from typing import Protocol

from ..config import Config
from ..errors import UserError
from . import status
from .cells import Train, check_reusable, is_finished, unique, write_launch
from .grid import parse_shard, shard


class Launcher(Protocol):
    def run(self, cells: list[Config], train: Train) -> list[str]:
        """Train ``cells`` (none finished, none active elsewhere); one message per cell that failed."""


def run_cells(cells: list[Config], launcher: Launcher, train: Train,
              share: tuple[int, int] | None = None) -> list[Config]:
    """Train the unfinished cells of this share (``--shard K/N``; all without one) with
    ``launcher``; returns the sweep's cells still unfinished after it (other shares', those another
    sweep runs, those left to a scheduler with ``--no-wait``)."""
    cells = unique(cells)  # rows that train the same configuration share its run
    for cfg in cells:
        if is_finished(cfg):
            check_reusable(cfg)
    todo = [cfg for cfg in shard(cells, share) if not is_finished(cfg)]
    elsewhere = {s.cell.out for s in status.cell_states(todo) if s.state in status.ACTIVE}
    for out in elsewhere:
        print(f"rskp: sweep: {out} is queued or running in another sweep; left to it", file=sys.stderr)
    todo = [cfg for cfg in todo if cfg.out not in elsewhere]
    failures = launcher.run(todo, train) if todo else []
    if failures:
        raise UserError(f"{len(failures)} of {len(todo)} runs failed; the others are kept and a rerun continues: "
                        + "; ".join(failures))
    return [cfg for cfg in cells if not is_finished(cfg)]


def worker_environments(device: str, jobs: int | None) -> list[dict[str, str]]:
    """One environment per parallel worker: a GPU each, or a share of the CPU cores each."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus[: jobs or len(gpus)]]
    jobs = jobs or 1
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * jobs


class LocalLauncher:
    """len(environments) cells at a time on this machine, each in one environment (a GPU, or a
    share of the cores). Each cell's launch.json names this process while it is queued or running."""

    def __init__(self, environments: list[dict[str, str]]):
        self.environments = environments

    def run(self, cells: list[Config], train: Train) -> list[str]:
        free: queue.Queue[dict[str, str]] = queue.Queue()
        for env in self.environments:
            free.put(env)
        for cfg in cells:
            self._record(cfg, status.QUEUED)

        def train_with_a_free_worker(cfg: Config) -> None:
            env = free.get()
            try:
                print(f"rskp: ablate: training {cfg.out}", file=sys.stderr)
                self._record(cfg, status.RUNNING)
                train(cfg, env)
            finally:
                free.put(env)

        with concurrent.futures.ThreadPoolExecutor(len(self.environments)) as pool:
            futures = [pool.submit(train_with_a_free_worker, cfg) for cfg in cells]
        return [str(f.exception()) for f in futures if f.exception() is not None]

    @staticmethod
    def _record(cfg: Config, state: str) -> None:
        write_launch(cfg, {"launcher": "local", "host": socket.gethostname(), "pid": os.getpid(), "state": state})


# --- the command line ------------------------------------------------------------------------------

SLURM_FLAGS = ("slurm_partition", "slurm_time", "slurm_gpus_per_task", "slurm_cpus_per_task",
               "slurm_array_parallelism", "slurm_param")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launching the runs")
    group.add_argument("--launcher", choices=["local", "slurm"], default="local",
                       help="local: --jobs processes on this machine (default); slurm: a job array through submitit")
    group.add_argument("--jobs", type=int, help="local: runs side by side (default: one per visible GPU, else 1)")
    group.add_argument("--shard", metavar="K/N", help="run only the K-th of N equal shares of the cells "
                       "(e.g. one per machine under another scheduler); the table needs every share done")
    group.add_argument("--status", action="store_true",
                       help="print each cell as done, running, queued, failed or not started, and train nothing")
    group.add_argument("--slurm-partition", help="slurm: the partition of the tasks")
    group.add_argument("--slurm-time", type=int, metavar="MINUTES",
                       help="slurm: each task's time limit (required); a task at its limit is requeued and resumes")
    group.add_argument("--slurm-gpus-per-task", type=int, metavar="N", help="slurm: GPUs of each task")
    group.add_argument("--slurm-cpus-per-task", type=int, metavar="N", help="slurm: CPU cores of each task")
    group.add_argument("--slurm-array-parallelism", type=int, metavar="N",
                       help="slurm: at most N tasks of the array run at once (default 256)")
    group.add_argument("--slurm-param", action="append", metavar="KEY=VALUE",
                       help="slurm: any other sbatch option (repeatable), e.g. --slurm-param account=vision "
                            "--slurm-param qos=high; KEY alone sets a switch (--slurm-param exclusive)")
    group.add_argument("--no-wait", action="store_true",
                       help="slurm: submit and return; --status follows the tasks, a rerun writes the table")


def check_arguments(args: argparse.Namespace) -> None:
    """Flags that do not fit the launcher, refused before anything runs."""
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    parse_shard(args.shard)
    given = [name for name in SLURM_FLAGS if getattr(args, name) is not None] + ["no_wait"] * args.no_wait
    if args.launcher != "slurm" and given:
        raise UserError(f"--{given[0].replace('_', '-')} is for --launcher slurm")
    if args.launcher == "slurm" and args.jobs is not None:
        raise UserError("--jobs is for --launcher local; --slurm-array-parallelism caps the Slurm tasks at once")
    if args.launcher == "slurm" and args.slurm_time is None:
        raise UserError("--launcher slurm needs --slurm-time MINUTES: each task's time limit (a task that reaches "
                        "it is requeued and resumes from its checkpoint)")
    for name in ("slurm_time", "slurm_gpus_per_task", "slurm_cpus_per_task", "slurm_array_parallelism"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "slurm_gpus_per_task" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


def slurm_parameters(args: argparse.Namespace) -> dict:
    """submitit's parameters (``AutoExecutor.update_parameters``) of the --slurm-* flags."""
    extra = {}
    for item in args.slurm_param or []:
        key, sep, value = item.partition("=")
        if not key:
            raise UserError(f"--slurm-param takes KEY=VALUE or KEY, got {item!r}")
        extra[key] = value if sep else True  # True: a switch, written as #SBATCH --KEY
    given = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_time,
             "slurm_gpus_per_task": args.slurm_gpus_per_task, "cpus_per_task": args.slurm_cpus_per_task,
             "slurm_array_parallelism": args.slurm_array_parallelism, "slurm_additional_parameters": extra or None}
    return {"name": "rskp-sweep", **{key: value for key, value in given.items() if value is not None}}


def make_launcher(args: argparse.Namespace, base: Config) -> Launcher:
    if args.launcher == "local":
        return LocalLauncher(worker_environments(base.device, args.jobs))
    from .slurm import SubmititLauncher

    return SubmititLauncher(Path(base.out), "slurm", slurm_parameters(args), wait=not args.no_wait)
