"""``python -m rsnet.ablate``: the supplementary's ablations as resumable parallel sweeps, mean ± std over seeds.

Studies (``--table`` / ``--figure``):

- Table 1: the baseline (FAC-Net head only), + representative snippets (intra-video propagation),
  + pseudo-label supervision, + memory bank, each with and without the attention normalization loss.
- Table 2: how the representatives are made (EM on all of X, on its foreground or background part,
  or the top and bottom k snippets by foreground score) and the video-wise memory bank.
- Table 3: the propagation loss (pseudo labels, or feature L1 / L2 between X and the walked
  features) and the early fusion of the online and memory-bank representatives.
- Table 4: one trained full model scored by the main branch, by main + intra-video (the paper's
  inference) and by the two-round inference with the inter-video branch.
- Figure 2: the number of online representatives K in {2, 4, 8, 16, 32} without the memory bank,
  and the number of memory-bank slots per class in {1, ..., 10} with K = 8.
- Figure 3: the number of EM iterations in {1, ..., 6}.
- ``--baseline``: the full model against the baseline, the two rows a new dataset is first checked on.

Every run is ``python -m rsnet.train`` in its own folder of the sweep folder (``--out``, default
``runs/ablate``), with the training flags given here (``--epochs 30``, ``--data-root ROOT``, ...)
and the variant's switches on top. The folder is named by the keys the switches change and the
seed (``memory-bank-False-seed0``, ``base-seed0`` for the full model), so rows of any study that
train the same configuration (Table 2's full model is Table 3's late fusion, Table 4's model and
Figure 3's 2 iterations) share one run. A run whose ``metrics.jsonl`` reaches the last epoch is read back, not rerun, if its config.json
is the cell's config (keys that change nothing aside; else the sweep stops before training, naming
the keys: a sweep with other flags needs another ``--out``); an interrupted
one resumes from its checkpoint, so an interrupted sweep continues where it stopped. Runs go side
by side: one process per visible GPU (``CUDA_VISIBLE_DEVICES``), or on CPU ``--jobs N`` processes
with the cores split between them. Each study writes a markdown table (the paper's THUMOS14
numbers beside ours where the text gives them; ours as mean ± std over seeds, at the last epoch,
at the best one, picked on the test split as in the paper, and with ``--val-fraction`` at the one
picked on held-out training videos) and, for a figure, a PNG plot.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import queue
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cli, metrics
from .config import Config, add_config_arguments, build_config, changed_keys, to_dict
from .errors import UserError
from .trained import dataset_of, evaluate_videos, load


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


@dataclass(frozen=True)
class Study:
    title: str
    variants: list[Variant]
    note: str = ""  # what the paper reports where it gives no number
    panels: dict[str, str] = field(default_factory=dict)  # figures: panel -> its x-axis label


def _table1() -> Study:
    # Supplementary Table 1: average mAP (IoU 0.1:0.7) on THUMOS14; each row adds one component.
    rows = [
        ("Baseline", {"intra": False, "pseudo_label": False, "memory_bank": False}, 35.6, 36.8),
        ("+ representative snippets", {"intra": True, "pseudo_label": False, "memory_bank": False}, 40.2, 40.1),
        ("+ pseudo label supervision", {"intra": True, "pseudo_label": True, "memory_bank": False}, 42.0, 44.2),
        ("+ memory bank", {"intra": True, "pseudo_label": True, "memory_bank": True}, 42.5, 45.1),
    ]
    variants = []
    for name, switches, without_att, with_att in rows:
        variants.append(Variant(f"{name}, no L_att", {**switches, "att_loss": False}, without_att))
        variants.append(Variant(f"{name}, L_att", {**switches, "att_loss": True}, with_att))
    return Study("Supplementary Table 1", variants)


def _table2() -> Study:
    # Supplementary Table 2: average mAP (IoU 0.1:0.7) on THUMOS14; without the memory bank unless a row says so.
    no_bank = {"memory_bank": False}
    variants = [
        Variant("Baseline", {"intra": False, "pseudo_label": False, **no_bank}, 36.8),
        Variant("Full model w/o memory bank", no_bank, 44.2),
        Variant("Foreground representative snippets", {"representatives": "foreground", **no_bank}, 41.8),
        Variant("Background representative snippets", {"representatives": "background", **no_bank}, 40.2),
        Variant("Representative snippets of high scores (top/bottom k)", {"representatives": "topk", **no_bank}, 39.2),
        Variant("Full model, class-wise memory bank", {"memory_bank": True, "bank": "class"}, 45.1),
        Variant("Video-wise memory bank", {"memory_bank": True, "bank": "video"}, 45.0),
    ]
    return Study("Supplementary Table 2", variants,
                 note="The class-wise memory bank row is the full model; its paper number (45.1) is Table 1's.")


def _table3() -> Study:
    # Supplementary Table 3: average mAP (IoU 0.1:0.7) on THUMOS14.
    variants = [
        Variant("Pseudo-label loss (full model w/o memory bank)", {"memory_bank": False}, 44.2),
        Variant("Feature L1 loss", {"propagation_loss": "feature_l1", "memory_bank": False}, 41.1),
        Variant("Feature L2 loss", {"propagation_loss": "feature_l2", "memory_bank": False}, 41.2),
        Variant("Late fusion (full model)", {"memory_bank": True, "fusion": "late"}, 45.1),
        Variant("Concat mu^a and mu^e (early fusion)", {"memory_bank": True, "fusion": "early"}, 43.0),
    ]
    return Study("Supplementary Table 3", variants,
                 note="The paper's Table 3 lists the variants only; the reference rows' numbers (44.2, 45.1) are "
                      "Table 1's, the feature losses replace the pseudo-label loss without the memory bank, the "
                      "early fusion joins the online and the memory-bank representatives.")


def _figure2() -> Study:
    online = [Variant(f"K = {k}, no memory bank", {"n_representatives": k, "memory_bank": False}, panel="online", x=k)
              for k in (2, 4, 8, 16, 32)]
    offline = [Variant(f"K = 8, {s} bank slots", {"n_representatives": 8, "bank_slots": s}, panel="offline", x=s)
               for s in range(1, 11)]
    return Study("Supplementary Figure 2", online + offline,
                 note="The paper gives Figure 2 as a plot only: best at K = 8 and at 5 slots; K = 2 already beats "
                      "the baseline (36.8); insensitive to the number of slots.",
                 panels={"online": "online representatives K (no memory bank)",
                         "offline": "memory-bank slots per class (K = 8)"})


def _figure3() -> Study:
    variants = [Variant(f"{n} EM iterations", {"em_iters": n}, panel="em", x=n) for n in range(1, 7)]
    return Study("Supplementary Figure 3", variants,
                 note="The paper gives Figure 3 as a plot only: best at 2 iterations, slightly lower beyond.",
                 panels={"em": "EM iterations"})


def _baseline() -> Study:
    return Study("The full model against the baseline", [
        Variant("Full model", {}, 45.1),
        Variant("Baseline (`--no-intra --no-pseudo-label --no-memory-bank`)",
                {"intra": False, "pseudo_label": False, "memory_bank": False}, 36.8),
    ], note="The paper numbers are THUMOS14's (Table 1), whatever the dataset of the runs.")


def _table4() -> Study:
    return Study("Supplementary Table 4", [Variant("Full model", {})],
                 note="One trained full model per seed, scored by three sets of branches. The MACs are the paper's "
                      "(one video of 100 snippets, without I3D); `python -m bench.macs` reproduces them.")


# Supplementary Table 4's rows: (row, rsnet.infer --branches, the paper's THUMOS14 average mAP, its MACs)
TABLE4_BRANCHES = [
    ("Main branch", "main", 44.7, "0.44G"),
    ("+ intra-video branch", "intra", 45.1, "0.48G"),
    ("+ inter-video branch (two-round inference)", "all", 45.2, "0.90G"),
]

STUDIES = {"table1": _table1(), "table2": _table2(), "table3": _table3(), "table4": _table4(), "figure2": _figure2(),
           "figure3": _figure3(), "baseline": _baseline()}


# --- running the cells ---------------------------------------------------------------------------

def completed(out: Path, epochs: int) -> list[dict] | None:
    """The evaluation records of a run that reached its last epoch, else None."""
    path = out / metrics.FILE_NAME
    if not path.is_file():
        return None
    records = metrics.read(path)
    done = records and records[-1]["epoch"] == epochs and metrics.is_evaluated(records[-1])
    return metrics.evaluated(records) if done else None


def cell_config(base: Config, variant: Variant, seed: int, out: Path) -> Config:
    return dataclasses.replace(base, **variant.switches, seed=seed, out=str(out))


def train_cell(cfg: Config, env: dict[str, str]) -> None:
    """One run as its own process, its output in OUT/train.log; resumed when it holds a checkpoint."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cell.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    again = "--resume" if (out / "checkpoint.pt").is_file() else "--overwrite"  # the folder is the sweep's own
    command = [sys.executable, "-m", "rsnet.train", "--config", str(out / "cell.json"), again]
    with open(out / "train.log", "a") as log:
        result = subprocess.run(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{out}: python -m rsnet.train exited with {result.returncode} (see {out / 'train.log'})")


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


def run_cells(cells: list[Config], environments: list[dict[str, str]]) -> None:
    """Train the cells not yet finished, len(environments) at a time; every failure is reported at the
    end. Finished runs are checked against their cells before any training starts."""
    unique = {cfg.out: cfg for cfg in cells}  # rows that train the same configuration share its run
    todo = [cfg for cfg in unique.values() if completed(Path(cfg.out), cfg.epochs) is None]
    for cfg in unique.values():
        if cfg not in todo:
            check_reusable(cfg)
    free: queue.Queue[dict[str, str]] = queue.Queue()
    for env in environments:
        free.put(env)

    def train_with_a_free_worker(cfg: Config) -> None:
        env = free.get()
        try:
            print(f"rskp: ablate: training {cfg.out}", file=sys.stderr)
            train_cell(cfg, env)
        finally:
            free.put(env)

    with concurrent.futures.ThreadPoolExecutor(len(environments)) as pool:
        futures = [pool.submit(train_with_a_free_worker, cfg) for cfg in todo]
    failures = [str(f.exception()) for f in futures if f.exception() is not None]
    if failures:
        raise UserError(f"{len(failures)} of {len(todo)} runs failed; the others are kept and a rerun continues: "
                        + "; ".join(failures))


# --- reporting -----------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def _where(base: Config) -> str:
    return f"synthetic data (preset {base.preset})" if base.data_root is None else base.data_root


# summarize's columns: (key, header, the test score of a run's evaluation records it reports)
COLUMNS = [
    ("last", "ours, last epoch", lambda records: records[-1]["avg"]),
    ("best", "ours, best epoch (picked on test)", lambda records: metrics.best(records)["avg"]),
    ("held_out", "ours, picked on held-out training videos", lambda records: metrics.held_out_best(records)["avg"]),
]


def summarize(study: Study, base: Config, seeds: list[int], out: Path) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """The study's markdown table and, per variant name and column, the test average mAP of each
    seed: at the last epoch, at the best one, and (with ``--val-fraction``) at the one best on the
    held-out training videos."""
    columns = [c for c in COLUMNS if c[0] != "held_out" or base.val_fraction > 0]
    lines = [f"{study.title} on {_where(base)}, {len(seeds)} seeds, {base.epochs} epochs (warm-up {base.warmup_epochs}); "
             "average mAP over the dataset's IoUs; each seed's at the last epoch, then mean ± std over the seeds.", ""]
    if study.note:
        lines += [study.note, ""]
    lines += ["| variant | paper (THUMOS14) | " + " | ".join(f"seed {seed}" for seed in seeds) + " | "
              + " | ".join(header for _, header, _ in columns) + " |", "|---|---|" + "---|" * (len(seeds) + len(columns))]
    scores = {}
    for variant in study.variants:
        records = [completed(cell_folder(out, base, variant, seed), base.epochs) for seed in seeds]
        scores[variant.name] = {key: [score(r) for r in records] for key, _, score in columns}
        paper = "-" if variant.paper is None else f"{variant.paper:.1f}"
        lines.append(f"| {variant.name} | {paper} | " + " | ".join(f"{last:.1f}" for last in scores[variant.name]["last"])
                     + " | " + " | ".join(_mean_std(scores[variant.name][key]) for key, _, _ in columns) + " |")
    return "\n".join(lines), scores


def branch_table(study: Study, base: Config, seeds: list[int], out: Path) -> str:
    """Table 4: each seed's trained model (its last epoch) scored by the main branch, by main + intra
    and by the two-round inference with the inter-video branch."""
    runs = [load(cell_folder(out, base, study.variants[0], seed), base.device) for seed in seeds]
    datasets = [dataset_of(run) for run in runs]
    lines = [f"{study.title} on {_where(base)}, {len(seeds)} seeds, {base.epochs} epochs (warm-up {base.warmup_epochs}); "
             "average mAP over the dataset's IoUs, last epoch.", "", study.note, "",
             "| branches | paper (THUMOS14) | paper MACs | ours |", "|---|---|---|---|"]
    for row, branches, paper, macs in TABLE4_BRANCHES:
        ours = _mean_std([evaluate_videos(run.model, run.bank, dataset, run.config, run.device, branches=branches).avg
                          for run, dataset in zip(runs, datasets)])
        lines.append(f"| {row} | {paper:.1f} | {macs} | {ours} |")
    return "\n".join(lines)


def plot(study: Study, scores: dict[str, dict[str, list[float]]], path: Path) -> None:
    """One panel per swept setting: mean ± std over seeds of the last and the best epoch's average mAP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(study.panels), figsize=(4.5 * len(study.panels), 3.4), squeeze=False)
    for ax, (panel, label) in zip(axes[0], study.panels.items()):
        variants = [v for v in study.variants if v.panel == panel]
        xs = [v.x for v in variants]
        for which, style in (("last", "o-"), ("best", "s--")):
            means = [statistics.mean(scores[v.name][which]) for v in variants]
            stds = [statistics.stdev(scores[v.name][which]) if len(scores[v.name][which]) > 1 else 0.0 for v in variants]
            ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=f"{which} epoch")
        if panel == "online":
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("average mAP (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(study.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("the figures need matplotlib: pip install -e .[plots]") from None


def ablate(name: str, base: Config, seeds: list[int], jobs: int | None) -> str:
    study, out = STUDIES[name], Path(base.out)
    if study.panels:
        _require_matplotlib()  # before hours of training, not after
    cells = [cell_config(base, v, seed, cell_folder(out, base, v, seed)) for v in study.variants for seed in seeds]
    run_cells(cells, worker_environments(base.device, jobs))
    if name == "table4":
        text = branch_table(study, base, seeds, out)
    else:
        text, scores = summarize(study, base, seeds, out)
    (out / f"{name}.md").write_text(text + "\n")
    if study.panels:
        plot(study, scores, out / f"{name}.png")
    return text


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", type=int, choices=[1, 2, 3, 4], help="a supplementary table")
    which.add_argument("--figure", type=int, choices=[2, 3], help="a supplementary figure")
    which.add_argument("--baseline", action="store_true", help="the full model against the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, help="runs side by side (default: one per visible GPU, else 1)")
    parser.add_argument("--config", help="YAML or JSON file of config keys")
    cli.add_debug_flag(parser)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    name = "baseline" if args.baseline else f"table{args.table}" if args.table else f"figure{args.figure}"
    if args.out is None:
        args.out = "runs/ablate"
    print(ablate(name, build_config(args), args.seeds, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
