"""``python -m rsnet.ablate --table 1``: the supplementary's Table 1 on our data, mean ± std over seeds.

Rows: the baseline (FAC-Net head only), + representative snippets (intra-video propagation),
+ pseudo-label supervision, + memory bank, each with and without the attention normalization
loss. The paper's THUMOS14 averages stand beside ours, labelled as the paper's. A run whose
``metrics.jsonl`` is complete is reused, so an interrupted ablation picks up where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

from . import cli, metrics
from .config import Config, add_config_arguments, build_config
from .train import run

# (row name, switches) in the paper's order; each row adds one component to the one before.
TABLE1_ROWS = [
    ("Baseline", {"intra": False, "pseudo_label": False, "memory_bank": False}),
    ("+ representative snippets", {"intra": True, "pseudo_label": False, "memory_bank": False}),
    ("+ pseudo label supervision", {"intra": True, "pseudo_label": True, "memory_bank": False}),
    ("+ memory bank", {"intra": True, "pseudo_label": True, "memory_bank": True}),
]
# Supplementary Table 1: average mAP (IoU 0.1:0.7) on THUMOS14, keyed by (row, attention loss).
PAPER_TABLE1 = {
    ("Baseline", False): 35.6, ("Baseline", True): 36.8,
    ("+ representative snippets", False): 40.2, ("+ representative snippets", True): 40.1,
    ("+ pseudo label supervision", False): 42.0, ("+ pseudo label supervision", True): 44.2,
    ("+ memory bank", False): 42.5, ("+ memory bank", True): 45.1,
}


def _slug(row: str, att_loss: bool) -> str:
    return row.strip("+ ").replace(" ", "-") + ("-att" if att_loss else "-noatt")


def _completed(out: Path, epochs: int) -> list[dict] | None:
    """The run's records if it trained and evaluated its last epoch, else None."""
    path = out / metrics.FILE_NAME
    if not path.is_file():
        return None
    records = metrics.read(path)
    done = records and records[-1]["epoch"] == epochs and metrics.is_evaluated(records[-1])
    return records if done else None


def run_cell(base: Config, switches: dict, att_loss: bool, seed: int, out: Path) -> dict:
    """The last and best evaluated records of one (row, attention loss, seed) run."""
    cfg = dataclasses.replace(base, **switches, att_loss=att_loss, seed=seed, out=str(out))
    records = _completed(out, cfg.epochs)
    if records is None:
        interrupted = (out / "checkpoint.pt").is_file()
        run(cfg, resume=interrupted, overwrite=not interrupted)  # the cell's folder is the driver's own
        records = _completed(out, cfg.epochs)
    return {"last": records[-1], "best": metrics.best(records)}


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def table1(base: Config, seeds: list[int], out: Path) -> str:
    lines = [
        f"Supplementary Table 1 on {'synthetic data (preset ' + base.preset + ')' if base.data_root is None else base.data_root}, "
        f"{len(seeds)} seeds, {base.epochs} epochs (warm-up {base.warmup_epochs}); average mAP over IoU 0.1:0.7.",
        "",
        "| method | L_att | paper (THUMOS14) | ours, last epoch | ours, best epoch (picked on test) |",
        "|---|---|---|---|---|",
    ]
    for row, switches in TABLE1_ROWS:
        for att_loss in (False, True):
            cells = [run_cell(base, switches, att_loss, seed, out / f"{_slug(row, att_loss)}-seed{seed}") for seed in seeds]
            last = _mean_std([c["last"]["avg"] for c in cells])
            best = _mean_std([c["best"]["avg"] for c in cells])
            mark = "✓" if att_loss else "✗"
            lines.append(f"| {row} | {mark} | {PAPER_TABLE1[(row, att_loss)]:.1f} | {last} | {best} |")
    return "\n".join(lines)


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=int, choices=[1], required=True, help="which supplementary table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", help="YAML or JSON file of config keys")
    cli.add_debug_flag(parser)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "runs/ablate-table1"
    base = build_config(args)
    text = table1(base, args.seeds, Path(base.out))
    (Path(base.out) / "table1.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
