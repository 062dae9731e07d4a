"""A sweep's cells: one run of ``python -m rsnet.train`` each, in its own folder of the sweep folder.

A cell is a ``Config`` whose ``out`` is its folder, named by the config keys its variant changes
and the seed (``memory-bank-False-seed0``; ``base-seed0`` when it changes none), so that rows of
any study or grid that train the same configuration share one run. A cell is finished when its
``metrics.jsonl`` reaches the last epoch; a finished run is read back only if its config.json is
the cell's config (keys that change nothing aside). Each cell folder also holds ``launch.json``:
which launcher took the cell, for ``--status`` and for a rerun that must not start it twice.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import metrics, outputs
from ..config import Config, changed_keys, to_dict
from ..errors import UserError

LAUNCH_FILE = "launch.json"  # written by the launcher that took the cell
LOG_FILE = "train.log"  # the output of every start of the cell's training

# How a launcher trains one cell: (its config, environment variables to set) -> None, raising on failure.
Train = Callable[[Config, dict[str, str]], None]


@dataclass(frozen=True)
class Variant:
    name: str  # the row's label
    switches: dict[str, Any]  # config keys set on top of the sweep's config
    paper: float | None = None  # the supplementary's THUMOS14 average mAP, where its text gives it
    panel: str = ""  # figures: which plot the variant belongs to
    x: float | None = None  # figures: its value on that plot's x axis


def cell_folder(out: Path, base: Config, variant: Variant, seed: int) -> Path:
    """A run's folder, named by the config keys the variant changes (``base`` when none): rows of
    any study that train the same configuration share one run in a sweep folder."""
    changed = sorted((key, value) for key, value in variant.switches.items() if getattr(base, key) != value)
    name = "_".join(f"{key.replace('_', '-')}-{value}" for key, value in changed) or "base"
    return out / f"{name}-seed{seed}"  # e.g. memory-bank-False_representatives-topk-seed0


def cell_config(base: Config, variant: Variant, seed: int, out: Path) -> Config:
    return dataclasses.replace(base, **variant.switches, seed=seed, out=str(out))


def unique(cells: list[Config]) -> list[Config]:
    """The cells, one per folder, in their first order: rows that train one configuration share its run."""
    return list({cfg.out: cfg for cfg in cells}.values())


def completed(out: Path, epochs: int) -> list[dict] | None:
    """The evaluation records of a run that reached its last epoch, else None."""
    path = out / metrics.FILE_NAME
    if not path.is_file():
        return None
    records = metrics.read(path)
    done = records and records[-1]["epoch"] == epochs and metrics.is_evaluated(records[-1])
    return metrics.evaluated(records) if done else None


def is_finished(cfg: Config) -> bool:
    return completed(Path(cfg.out), cfg.epochs) is not None


def check_reusable(cfg: Config) -> None:
    """A finished run in the cell's folder is read back only if it trained the cell's config: a
    sweep rerun with other flags (another --data-root, --lr, ...) into the same folder would
    otherwise report the old runs under the new title."""
    out = Path(cfg.out)
    saved = out / "config.json"
    if not saved.is_file():
        raise UserError(f"{out} holds a finished metrics.jsonl but no config.json: not a run of rsnet.train")
    changed = changed_keys(json.loads(saved.read_text()), cfg)
    if changed:
        raise UserError(f"{out} holds a finished run of another config ({', '.join(changed)}): give this sweep "
                        f"another --out, or remove that run")


def train_cell(cfg: Config, env: dict[str, str]) -> None:
    """One run as its own process, its output appended to OUT/train.log after a line naming the
    command; resumed when it holds a checkpoint."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cell.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    again = "--resume" if (out / "checkpoint.pt").is_file() else "--overwrite"  # the folder is the sweep's own
    command = [sys.executable, "-m", "rsnet.train", "--config", str(out / "cell.json"), again]
    with open(out / LOG_FILE, "a") as log:
        cut = "\n" if log.tell() else ""  # a killed start may have left a progress bar without its line end
        print(f"{cut}rskp: sweep: python -m rsnet.train --config {out / 'cell.json'} {again}", file=log, flush=True)
        result = subprocess.run(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{out}: python -m rsnet.train exited with {result.returncode} (see {out / LOG_FILE})")


def write_launch(cfg: Config, record: dict[str, Any]) -> None:
    outputs.write(Path(cfg.out) / LAUNCH_FILE, (json.dumps(record) + "\n").encode())


def read_launch(cfg: Config) -> dict[str, Any] | None:
    path = Path(cfg.out) / LAUNCH_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def last_log_line(path: Path) -> str:
    """The last non-empty line of a log (a progress bar's last state counts as one), or ''."""
    if not path.is_file():
        return ""
    with open(path, "rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))  # the tail is enough; logs of long runs are long
        tail = log.read().decode(errors="replace")
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""
