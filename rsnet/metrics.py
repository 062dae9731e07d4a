"""A run's ``metrics.jsonl``: one JSON record per trained epoch, in epoch order.

Every record holds ``epoch`` (1-based) and ``losses``: the loss terms of that epoch per training
video (``total``, ``fore``, ``back``, ``att``, ``spl``, as ``Trainer.train_epoch`` returns them).
The record of an evaluated epoch (every ``--eval-every`` epochs and the last) also holds the
evaluation's fields (``EvalResult.to_dict``: ``iou``, ``dmap``, ``avg``, ``cmap``, ...); the others
do not, so a reader that wants mAP takes ``evaluated(records)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import outputs
from .errors import UserError

FILE_NAME = "metrics.jsonl"


def epoch_record(epoch: int, losses: dict[str, float]) -> dict[str, Any]:
    return {"epoch": epoch, "losses": dict(losses)}


def is_evaluated(record: dict[str, Any]) -> bool:
    return "avg" in record


def evaluated(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if is_evaluated(r)]


def best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evaluated record of the highest average mAP (the earliest of equals); None before any."""
    return max(evaluated(records), key=lambda r: r["avg"], default=None)


def held_out_best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first evaluation record best on the held-out training videos (None without them): by
    their average detection mAP, then by their classification mAP. The tie-break matters where the
    held-out videos are few: on a small set every epoch may localize none of them (mAP 0), and the
    first epoch would win by default."""
    scored = [r for r in records if "held_out" in r]
    return max(scored, key=lambda r: (r["held_out"]["avg"], r["held_out"]["cmap"])) if scored else None


def write(path: Path, records: list[dict[str, Any]]) -> None:
    """All the records, replacing the file at once: a crash leaves the previous file whole."""
    outputs.write(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def read(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, or a UserError naming the file (and the line) that is not one."""
    if not path.is_file():
        raise UserError(f"{path} not found: not a run folder of python -m rsnet.train")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise UserError(f"{path}:{number} is not a metrics record (a JSON object with an integer epoch)")
        records.append(record)
    return records


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under TensorBoard tags: ``loss/<term>``, ``mAP/<IoU>``, ``mAP/avg``, ``cmAP``."""
    # records of runs from before the losses were logged per epoch have none
    values = {f"loss/{term}": value for term, value in record.get("losses", {}).items()}
    if is_evaluated(record):
        values.update({f"mAP/{iou:g}": dmap for iou, dmap in zip(record["iou"], record["dmap"])})
        values["mAP/avg"] = record["avg"]
        if record["cmap"] is not None:
            values["cmAP"] = record["cmap"]
    return values


def summary_writer_class():
    """torch's SummaryWriter; imported only for --tensorboard, and a UserError when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter


def add_scalars(writer, records: list[dict[str, Any]]) -> None:
    """Each record's scalars at its epoch, flushed: the log follows the run epoch by epoch."""
    for record in records:
        for tag, value in scalars(record).items():
            writer.add_scalar(tag, value, record["epoch"])
    writer.flush()
