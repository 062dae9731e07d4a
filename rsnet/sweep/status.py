"""``--status``: each cell of a sweep as done, running, queued, failed or not started.

Read from the cell's folder (a finished metrics.jsonl, the last line of train.log) and from
whoever took it, as its launch.json names it: a local sweep's process (alive or not, when it is on
this machine) or a scheduler's job (``sacct`` through submitit, one call for all the cells).
"""
from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from .cells import LOG_FILE, completed, is_finished, last_log_line, read_launch

DONE, RUNNING, QUEUED, FAILED, NOT_STARTED = "done", "running", "queued", "failed", "not started"
ACTIVE = (RUNNING, QUEUED)  # a cell someone is training or will train: a rerun leaves it to them

# Scheduler states (Slurm's as sacct prints them, submitit's for its local jobs) of a job not yet
# ended. submitit counts UNKNOWN (sacct lists a job only some seconds after its submission) and
# PREEMPTED (a requeue follows) as not ended too; any other state is an end.
SCHEDULER_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED"}
SCHEDULER_QUEUED = {"PENDING", "READY", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING",
                    "PREEMPTED", "UNKNOWN"}


@dataclass(frozen=True)
class CellState:
    cell: Config
    state: str
    detail: str


def cell_states(cells: list[Config]) -> list[CellState]:
    records = [read_launch(cfg) for cfg in cells]
    jobs = _scheduler_jobs(cells, records)
    return [_state(cfg, record, jobs.get(cfg.out)) for cfg, record in zip(cells, records)]


def _scheduler_jobs(cells: list[Config], records: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The submitit job of each unfinished cell a scheduler took, all made before any is asked
    about: submitit's watcher then asks sacct once for all of them."""
    taken = {cfg.out: record for cfg, record in zip(cells, records)
             if record is not None and record["launcher"] == "submitit" and not is_finished(cfg)}
    if not taken:
        return {}
    from .slurm import rebuilt_job  # only a sweep launched through submitit needs it

    return {out: rebuilt_job(record) for out, record in taken.items()}


def _state(cfg: Config, record: dict[str, Any] | None, job) -> CellState:
    out = Path(cfg.out)
    records = completed(out, cfg.epochs)
    if records is not None:
        return CellState(cfg, DONE, f"avg mAP {records[-1]['avg']:.1f} at epoch {records[-1]['epoch']}")
    log = last_log_line(out / LOG_FILE)
    if job is not None:
        from .slurm import failure_line

        state = job.state.split()[0].upper()  # sacct writes e.g. "CANCELLED by 1234"
        where = f"job {job.job_id} " + ("(not listed by sacct yet)" if state == "UNKNOWN" else state)
        if state in SCHEDULER_RUNNING | SCHEDULER_QUEUED:
            return CellState(cfg, RUNNING if state in SCHEDULER_RUNNING else QUEUED, _join(where, log))
        return CellState(cfg, FAILED, f"{where}: {failure_line(cfg, job)}")
    if record is not None and _local_sweep_alive(record):
        return CellState(cfg, record["state"], _join(f"pid {record['pid']} on {record['host']}", log))
    started = log or (record is not None and record["state"] == RUNNING)
    return CellState(cfg, FAILED, log or "stopped without a log") if started else CellState(cfg, NOT_STARTED, "")


def _local_sweep_alive(record: dict[str, Any]) -> bool:
    """Whether the local sweep that took the cell still runs: it cannot be asked on another machine
    (its record is trusted then), and this process's own pool has ended when a status is asked."""
    if record["host"] != socket.gethostname():
        return True
    if record["pid"] == os.getpid():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _join(where: str, log: str) -> str:
    return f"{where}: {log}" if log else where


def status_table(states: list[CellState]) -> str:
    """A markdown table, a cell a row, under a count of the cells in each state."""
    counts = Counter(s.state for s in states)
    lines = [f"{len(states)} cells: " + ", ".join(f"{counts[state]} {state}" for state in
                                                  (DONE, RUNNING, QUEUED, FAILED, NOT_STARTED) if counts[state]), "",
             "| cell | state | detail |", "|---|---|---|"]
    lines += [f"| {Path(s.cell.out).name} | {s.state} | {s.detail.replace('|', '/')} |" for s in states]
    return "\n".join(lines)
