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
- ``--grid KEY=V1,V2 ...``: every combination of the values of any config keys (``grid.md``).

``--seeds`` takes seeds and ranges (``0-7``). The sweep engine is ``rsnet.sweep``; docs/sweeps.md
runs one on a Slurm cluster (``--launcher slurm``: a job array through submitit, pre-empted and
timed-out tasks requeued and resumed), ``--shard K/N`` a share of the cells under any scheduler,
``--status`` prints each cell's state, ``--against ROW`` compares every row to one (the difference,
Welch's 95 % interval, a rank test's p, rows within noise marked).

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
picked on held-out training videos) and, for a figure, a PNG plot; with two seeds or more, the
comparison table below it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import cli, metrics
from .config import Config, add_config_arguments, build_config
from .errors import UserError
from .sweep import compare, launchers, status
from .sweep.cells import Variant, cell_config, cell_folder, completed, train_cell, unique
from .sweep.grid import parse_grid, parse_seeds, parse_shard
from .sweep.launchers import Launcher, LocalLauncher, run_cells, worker_environments
from .trained import dataset_of, evaluate_videos, load


@dataclass(frozen=True)
class Study:
    title: str
    variants: list[Variant]
    note: str = ""  # what the paper reports where it gives no number
    panels: dict[str, str] = field(default_factory=dict)  # figures: panel -> its x-axis label
    paper_column: bool = True  # a grid of the user's own keys has no paper numbers


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


# --- reporting -----------------------------------------------------------------------------------

def _where(base: Config) -> str:
    if base.annotations is not None:
        return f"{base.annotations} with the features of {base.features}"
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
    paper_header = "paper (THUMOS14) | " if study.paper_column else ""
    lines += [f"| variant | {paper_header}" + " | ".join(f"seed {seed}" for seed in seeds) + " | "
              + " | ".join(header for _, header, _ in columns) + " |",
              "|---|" + "---|" * (study.paper_column + len(seeds) + len(columns))]
    scores = {}
    for variant in study.variants:
        epochs = variant.switches.get("epochs", base.epochs)  # a grid may sweep it
        records = [completed(cell_folder(out, base, variant, seed), epochs) for seed in seeds]
        scores[variant.name] = {key: [score(r) for r in records] for key, _, score in columns}
        paper = ("-" if variant.paper is None else f"{variant.paper:.1f}") + " | " if study.paper_column else ""
        lines.append(f"| {variant.name} | {paper}" + " | ".join(f"{last:.1f}" for last in scores[variant.name]["last"])
                     + " | " + " | ".join(compare.mean_std(scores[variant.name][key]) for key, _, _ in columns) + " |")
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
        ours = compare.mean_std([evaluate_videos(run.model, run.bank, dataset, run.config, run.device, branches=branches).avg
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


def study_cells(study: Study, base: Config, seeds: list[int]) -> list[Config]:
    """Every run of the study: each variant with each seed, in the sweep folder (``base.out``)."""
    out = Path(base.out)
    return [cell_config(base, v, seed, cell_folder(out, base, v, seed)) for v in study.variants for seed in seeds]


def check_against(name: str, study: Study, against: str | None) -> None:
    """``--against`` must name a row of the table, before anything trains."""
    if against is None:
        return
    if name == "table4":
        raise UserError("--against compares the rows of a table of runs; Table 4's rows are one model's branches")
    compare.find_row([v.name for v in study.variants], against)


def unfinished_report(cells: list[Config], unfinished: list[Config]) -> str:
    states = status.cell_states(unique(cells))
    return (f"{len(unfinished)} of {len(states)} cells are not finished (other shards', or queued or running): "
            "the table needs them all; rerun this command once they are (--status follows them)\n\n"
            + status.status_table(states))


def ablate(name: str, base: Config, seeds: list[int], jobs: int | None = None, *, study: Study | None = None,
           launcher: Launcher | None = None, shard: tuple[int, int] | None = None, against: str | None = None) -> str:
    """Run the study (``STUDIES[name]``, or ``study`` named ``name``) with every seed and write its
    table as OUT/NAME.md; the table of what is unfinished where cells are left to other shards or
    a scheduler. ``launcher``: this machine's pool of ``jobs`` processes by default."""
    study, out = study or STUDIES[name], Path(base.out)
    if study.panels:
        _require_matplotlib()  # before hours of training, not after
    check_against(name, study, against)
    cells = study_cells(study, base, seeds)
    unfinished = run_cells(cells, launcher or LocalLauncher(worker_environments(base.device, jobs)), train_cell, shard)
    if unfinished:
        return unfinished_report(cells, unfinished)
    if name == "table4":
        text = branch_table(study, base, seeds, out)
    else:
        text, scores = summarize(study, base, seeds, out)
        if len(seeds) > 1 or against is not None:
            lasts = {variant: columns["last"] for variant, columns in scores.items()}
            text += "\n\n" + compare.comparison_table(lasts, against, "Last-epoch average mAP")
    (out / f"{name}.md").write_text(text + "\n")
    if study.panels:
        plot(study, scores, out / f"{name}.png")
    return text


def grid_study(tokens: list[str], base: Config) -> Study:
    variants = parse_grid(tokens, base)
    keys = list(variants[0].switches)
    return Study(f"Grid over {', '.join(keys)}", variants, paper_column=False)


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", type=int, choices=[1, 2, 3, 4], help="a supplementary table")
    which.add_argument("--figure", type=int, choices=[2, 3], help="a supplementary figure")
    which.add_argument("--baseline", action="store_true", help="the full model against the baseline")
    which.add_argument("--grid", nargs="+", metavar="KEY=V1,V2",
                       help="every combination of these config keys' values, e.g. lr=1e-4,5e-4 n_representatives=4,8")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], metavar="SEEDS",
                        help="seeds and ranges, e.g. 0 1 2 or 0-7 (default 0 1 2)")
    parser.add_argument("--against", metavar="ROW",
                        help="a row's name (or its start): each row's difference to it, its 95%% interval and p")
    parser.add_argument("--config", help="YAML or JSON file of config keys")
    launchers.add_arguments(parser)
    cli.add_debug_flag(parser)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    launchers.check_arguments(args)
    if args.out is None:
        args.out = "runs/ablate"
    base, seeds = build_config(args), parse_seeds(args.seeds)
    if args.grid:
        name, study = "grid", grid_study(args.grid, base)
    else:
        name = "baseline" if args.baseline else f"table{args.table}" if args.table else f"figure{args.figure}"
        study = STUDIES[name]
    if args.status:
        print(status.status_table(status.cell_states(unique(study_cells(study, base, seeds)))))
        return 0
    print(ablate(name, base, seeds, study=study, launcher=launchers.make_launcher(args, base),
                 shard=parse_shard(args.shard), against=args.against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
