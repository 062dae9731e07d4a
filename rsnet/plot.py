"""``python -m rsnet.plot``: pictures of trained runs, as PNG or SVG (the ``--out`` suffix decides).

- ``cas``: the supplementary's Figure 4 for one video: the action activation (the fused class
  activation sequence inference scores) of each ground-truth class over time, the pseudo-label
  scores of those classes (the target of L_spl: softmax at the training temperature of the
  intra-video branch's logits, mixed with the inter-video branch's as training mixes them when
  the run has a class-wise memory bank), and the ground truth (ambiguous spans apart). The
  video-wise bank (``--bank video``) pairs each training video with another drawn afresh every
  epoch, and holds no entry for a test video: its runs' pseudo labels are the intra-video branch's.
- ``embedding``: a 2-D projection (PCA) of one video's embedded snippets, coloured by ground
  truth, with its K online representatives and the class-wise memory bank's entries of its
  classes (none drawn for the video-wise bank, whose entries are training videos', not classes').
- ``bank``: the supplementary's Figure 7: the memory bank's entries of each class among the
  dataset's action features (each training video's embedded snippets inside one class's segments,
  averaged), projected to 2-D (PCA) as ``embedding`` projects them.
- ``curves``: mAP at each IoU and their average, and the loss terms, over epochs, from the runs'
  ``metrics.jsonl``; several runs are drawn as mean ± std.

Needs matplotlib: ``pip install -e .[plots]``.
"""
from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rs_kernels.reference import l2_normalize

from . import cli, metrics, outputs
from .data import Annotations
from .data.dataset import VideoDataset
from .datasets import SNIPPETS_PER_SECOND
from .errors import UserError
from .model.losses import pseudo_label_target_logits
from .model.predict import predict_packed
from .trained import Trained, add_arguments, dataset_of, json_data, load

IMAGE_SUFFIXES = (".png", ".svg")
BACKGROUND = -1  # snippet class of a snippet outside every ground-truth segment


def figure_class():
    """matplotlib's Figure, used without pyplot (no global figure state, no display backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("python -m rsnet.plot needs matplotlib: pip install -e .[plots]") from None
    return Figure


def check_flags(args) -> None:
    """--out (an image the suffix names the format of, where it can be written) and --dpi, before any work."""
    outputs.check_out(args.out, IMAGE_SUFFIXES, (getattr(args, "checkpoint", None),))
    if not (math.isfinite(args.dpi) and args.dpi > 0):
        raise UserError(f"--dpi must be a positive number, got {args.dpi}")


def save(fig, out: Path, dpi: float) -> None:
    """The figure as the image ``out``'s suffix names, written whole (``rsnet.outputs.write``)."""
    image = io.BytesIO()
    fig.savefig(image, format=out.suffix[1:].lower(), dpi=dpi, bbox_inches="tight")
    outputs.write(out, image.getvalue())


# ----------------------------------------------------------------------------------------------
# one video of a trained run


def video_index(annotations: Annotations, name: str) -> int:
    if name in annotations.video_names:
        return annotations.video_names.index(name)
    raise UserError(f"no video {name!r} in {annotations.folder}: the names are those of its videoname.npy, "
                    f"e.g. {', '.join(annotations.video_names[:3])} ({len(annotations)} videos)")


def ground_truth_classes(annotations: Annotations, video: int) -> list[int]:
    """The video's classes: its labels and those of its segments."""
    labels = set(np.flatnonzero(annotations.video_labels[video]).tolist())
    classes = sorted(labels | set(annotations.segment_labels[video].tolist()))
    if not classes:
        raise UserError(f"video {annotations.video_names[video]} has no ground-truth action: nothing to plot")
    return classes


def snippet_seconds(length: int, per_second: float = SNIPPETS_PER_SECOND) -> np.ndarray:
    """The middle of each snippet, in seconds, at ``per_second`` snippets a second (the dataset's rate)."""
    return (np.arange(length) + 0.5) / per_second


def snippet_classes(annotations: Annotations, video: int, length: int,
                    per_second: float = SNIPPETS_PER_SECOND) -> np.ndarray:
    """(T,) the class of the segment each snippet's middle falls in, BACKGROUND outside all."""
    times, classes = snippet_seconds(length, per_second), np.full(length, BACKGROUND)
    for (start, end), label in zip(annotations.segments[video], annotations.segment_labels[video]):
        classes[(times >= start) & (times <= end)] = label
    return classes


class Run(NamedTuple):
    """What the pictures of a trained run draw: its model and the dataset it was trained on."""

    trained: Trained
    dataset: VideoDataset


def open_run(path: Path, device: str = "auto", data_root: str | None = None, checkpoint_format: str = "auto",
             data: dict[str, str | None] | None = None) -> Run:
    trained = load(path, device, data_root, checkpoint_format, data=data)
    return Run(trained, dataset_of(trained))


class VideoOutputs(NamedTuple):
    embedded: Tensor  # (T, D) the embedded snippets (eval mode: no dropout)
    representatives: Tensor  # (K, D) the online representatives
    cas: Tensor  # (T, C+1) the fused class activation sequence inference scores
    pseudo_labels: Tensor | None  # (T, C+1) the target of L_spl; None without an intra-video branch


def memory_of(run: Run, labels: Tensor):
    """The model's read of the class-wise memory bank's entries of the video's classes (a read only:
    the picture leaves the bank as it is), or None when the run has no such bank or it holds none of
    them (the inter-video branch does not run then)."""
    if not any(len(entries) for _, entries in class_bank_entries(run, np.flatnonzero(labels[0].cpu()))):
        return None
    return lambda mu, p_mu: run.trained.bank.read(labels)


def class_bank_entries(run: Run, classes) -> list[tuple[int, Tensor]]:
    """(class, its entries (n, D)) of the class-wise memory bank for each of ``classes``; none when
    the run has no memory bank or the video-wise one (``--bank video``), which holds no class's."""
    bank = run.trained.bank
    return [] if bank is None else bank.class_entries(classes)


@torch.no_grad()
def video_outputs(run: Run, video: int) -> VideoOutputs:
    model, cfg = run.trained.model.eval(), run.trained.config
    batch = run.dataset.pack([video]).to(run.trained.device)
    embedded = model.embed(batch.x)
    representatives = model.summarize(embedded, batch.varlen).mu[0] if cfg.intra else embedded[:0]  # the variant's
    _, cas = predict_packed(model, batch.x, batch.varlen)
    pseudo_labels = None
    if cfg.intra:
        out = model(batch.x, batch.varlen, memory_of(run, batch.labels))
        pseudo_labels = torch.softmax(pseudo_label_target_logits(out, cfg) / cfg.spl_temperature, dim=-1)
    return VideoOutputs(embedded, representatives, cas, pseudo_labels)


def draw_ground_truth(ax, annotations: Annotations, video: int, classes: list[int]) -> None:
    """One row of bars per class; the video's ambiguous spans as hatched grey bars across all rows."""
    for row, c in enumerate(classes):
        spans = annotations.segments[video][annotations.segment_labels[video] == c]
        ax.broken_barh([(s, e - s) for s, e in spans], (row + 0.1, 0.8), color=f"C{row}")
    ambiguous = annotations.ambiguous.get(annotations.video_names[video], np.zeros((0, 2)))
    if len(ambiguous):
        ax.broken_barh([(s, e - s) for s, e in ambiguous], (0, len(classes)), facecolor="0.85", edgecolor="0.5",
                       hatch="//", label="ambiguous")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_yticks(np.arange(len(classes)) + 0.5, [annotations.class_names[c] for c in classes])
    ax.set_ylim(0, len(classes))


def cas_figure(run: Run, video: int):
    annotations = run.dataset.annotations
    classes = ground_truth_classes(annotations, video)
    outputs = video_outputs(run, video)
    per_second = run.dataset.snippets_per_second
    times = snippet_seconds(outputs.cas.shape[0], per_second)
    panels = [("action activation", outputs.cas)]
    if outputs.pseudo_labels is not None:
        panels.append(("pseudo label", outputs.pseudo_labels))
    fig = figure_class()(figsize=(8, 1.6 * len(panels) + 0.4 + 0.3 * len(classes)), layout="constrained")
    axes = fig.subplots(len(panels) + 1, 1, sharex=True,
                        height_ratios=[2] * len(panels) + [0.6 + 0.3 * len(classes)])
    for ax, (title, scores) in zip(axes, panels):
        for row, c in enumerate(classes):
            ax.plot(times, scores[:, c].cpu().numpy(), color=f"C{row}", label=annotations.class_names[c])
        ax.set_ylabel(title)
        ax.set_ylim(0, 1.02)
    axes[0].legend(loc="upper right", fontsize="small")
    draw_ground_truth(axes[-1], annotations, video, classes)
    axes[-1].set_ylabel("ground truth")
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, times[-1] + 0.5 / per_second)
    fig.suptitle(annotations.video_names[video])
    return fig


def pca_2d(points: Tensor) -> Tensor:
    """(n, 2): the points' coordinates on their two principal axes (SVD of the centred points)."""
    centred = points.double() - points.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:2].T


def embedding_figure(run: Run, video: int):
    annotations = run.dataset.annotations
    classes = ground_truth_classes(annotations, video)
    outputs = video_outputs(run, video)
    entries = class_bank_entries(run, classes)
    # cosine similarity is what EM attention, the walks and the heads compare: project directions
    parts = [outputs.embedded, outputs.representatives, *(e for _, e in entries)]
    xy = pca_2d(l2_normalize(torch.cat(parts).float())).cpu().numpy()
    snippets, rest = xy[: len(outputs.embedded)], xy[len(outputs.embedded):]
    labels = snippet_classes(annotations, video, len(snippets), run.dataset.snippets_per_second)
    fig = figure_class()(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    background = labels == BACKGROUND
    ax.scatter(*snippets[background].T, s=10, color="0.7", label="background snippets")
    for row, c in enumerate(classes):
        ax.scatter(*snippets[labels == c].T, s=12, color=f"C{row}", label=f"{annotations.class_names[c]} snippets")
    k = len(outputs.representatives)
    if k:
        ax.scatter(*rest[:k].T, s=160, marker="*", color="black", label=f"{k} online representatives")
    start = k
    for row, (c, e) in enumerate(entries):
        if len(e):
            ax.scatter(*rest[start:start + len(e)].T, s=70, marker="D", color=f"C{row}", edgecolor="black",
                       label=f"memory bank: {annotations.class_names[c]}")
        start += len(e)
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(f"{annotations.video_names[video]}: embedded snippets (PCA of directions)")
    ax.legend(fontsize="small", loc="best")
    return fig


# ----------------------------------------------------------------------------------------------
# the memory bank among the dataset


@torch.no_grad()
def action_features(run: Run) -> tuple[Tensor, np.ndarray]:
    """(n, D) each training video's embedded snippets (eval mode, directions) inside the segments of
    one of its classes, averaged, and (n,) that class: one point per (video, class)."""
    model, dataset, size = run.trained.model.eval(), run.dataset, run.trained.config.test_batch_size
    features, classes = [], []
    for start in range(0, len(dataset.train_indices), size):
        videos = dataset.train_indices[start:start + size]
        batch = dataset.pack(videos).to(run.trained.device)
        embedded = l2_normalize(model.embed(batch.x).float())
        offsets = batch.varlen.offsets
        for video, first, end in zip(videos, offsets, offsets[1:]):
            labels = snippet_classes(dataset.annotations, video, end - first, dataset.snippets_per_second)
            for c in np.unique(labels[labels != BACKGROUND]):
                features.append(embedded[first:end][torch.from_numpy(labels == c).to(embedded.device)].mean(0))
                classes.append(c)
    return torch.stack(features) if features else torch.zeros(0, run.trained.config.embed_dim), np.array(classes, dtype=int)


def bank_figure(run: Run):
    from matplotlib import colormaps  # present: figure_class() checked it

    if run.trained.config.bank != "class":
        raise UserError("the bank picture draws the class-wise memory bank; this run has the video-wise one (--bank video)")
    annotations = run.dataset.annotations
    by_class = [(c, e) for c, e in class_bank_entries(run, range(len(annotations.class_names))) if len(e)]
    if not by_class:
        raise UserError("the run's memory bank holds no entry (trained without it, or not past the warm-up): "
                        "nothing to plot")
    features, feature_classes = action_features(run)
    entries = torch.cat([e for _, e in by_class]).float()
    entry_classes = np.repeat([c for c, _ in by_class], [len(e) for _, e in by_class])
    xy = pca_2d(l2_normalize(torch.cat([features.to(entries.device), entries]))).cpu().numpy()
    points, stars = xy[: len(features)], xy[len(features):]
    fig = figure_class()(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    palette = colormaps["tab20"]  # 20 colours: past 20 classes (ActivityNet1.2) they repeat, and no legend is drawn
    drawn = np.unique(np.concatenate([feature_classes, entry_classes]))
    for c in drawn:
        color = palette(c % 20)
        ax.scatter(*points[feature_classes == c].T, s=12, color=color, alpha=0.6)
        ax.scatter(*stars[entry_classes == c].T, s=150, marker="*", color=color, edgecolor="black",
                   label=annotations.class_names[c])
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(f"memory bank (stars, {len(entries)} entries) among the training videos' action features "
                 f"(dots, {len(features)})", fontsize="medium")
    if len(drawn) <= 20:
        ax.legend(fontsize="x-small", ncol=2, loc="best")
    return fig


# ----------------------------------------------------------------------------------------------
# curves over epochs


class Curves(NamedTuple):
    epochs: list[int]
    names: list[str]  # one per curve
    values: np.ndarray  # (runs, epochs, curves)


def _same_epochs(curves: list[Curves], runs: list[Path], what: str) -> None:
    first = curves[0]
    for run, other in zip(runs[1:], curves[1:]):
        if other.epochs != first.epochs:
            raise UserError(f"{run} has {what} at epochs {_listed(other.epochs)} but {runs[0]} at "
                            f"{_listed(first.epochs)}: runs drawn together need the same epochs")
        if other.names != first.names:
            raise UserError(f"{run} has {what} of {', '.join(other.names)} but {runs[0]} of "
                            f"{', '.join(first.names)}: runs drawn together need the same curves")


def _listed(epochs: list[int]) -> str:
    return ", ".join(map(str, epochs)) if len(epochs) <= 6 else f"{epochs[0]}, {epochs[1]}, ..., {epochs[-1]}"


def map_curves(records: list[dict[str, Any]]) -> Curves:
    rows = metrics.evaluated(records)
    names = [f"mAP@{t:g}" for t in rows[0]["iou"]] + ["avg"] if rows else []
    values = [[*r["dmap"], r["avg"]] for r in rows]
    return Curves([r["epoch"] for r in rows], names, np.array(values, dtype=np.float64).reshape(1, len(rows), len(names)))


def loss_curves(records: list[dict[str, Any]]) -> Curves:
    rows = [r for r in records if "losses" in r]  # records of runs from before the losses were logged have none
    names = list(rows[0]["losses"]) if rows else []
    values = [[r["losses"][n] for n in names] for r in rows]
    return Curves([r["epoch"] for r in rows], names, np.array(values, dtype=np.float64).reshape(1, len(rows), len(names)))


def stacked(runs: list[Path], extract, what: str) -> Curves:
    """The runs' curves stacked along the first axis; every run must have the same epochs."""
    curves = [extract(metrics.read(run / metrics.FILE_NAME)) for run in runs]
    _same_epochs(curves, runs, what)
    return Curves(curves[0].epochs, curves[0].names, np.concatenate([c.values for c in curves]))


def draw_curves(ax, curves: Curves, emphasised: str | None) -> None:
    """Each curve's mean over the runs, and the band of one standard deviation when there are several."""
    mean = curves.values.mean(0)
    std = curves.values.std(0, ddof=1) if len(curves.values) > 1 else None
    for i, name in enumerate(curves.names):
        thick = name == emphasised
        color = "black" if thick else f"C{i}"
        ax.plot(curves.epochs, mean[:, i], color=color, linewidth=2.2 if thick else 1.2, label=name,
                marker="." if len(curves.epochs) < 30 else None)
        if std is not None:
            ax.fill_between(curves.epochs, mean[:, i] - std[:, i], mean[:, i] + std[:, i], color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", ncol=2)


def curves_figure(runs: list[Path]):
    maps, losses = stacked(runs, map_curves, "evaluations"), stacked(runs, loss_curves, "losses")
    if not maps.epochs and not losses.epochs:
        raise UserError(f"{runs[0] / metrics.FILE_NAME} holds no epoch yet: nothing to plot")
    fig = figure_class()(figsize=(11, 4), layout="constrained")
    map_ax, loss_ax = fig.subplots(1, 2)
    for ax, curves, emphasised, title in ((map_ax, maps, "avg", "detection mAP (%)"),
                                          (loss_ax, losses, "total", "loss per training video")):
        ax.set_title(title)
        if curves.epochs:
            draw_curves(ax, curves, emphasised)
        else:
            ax.text(0.5, 0.5, "none in metrics.jsonl", ha="center", va="center", transform=ax.transAxes)
    runs_text = str(runs[0]) if len(runs) == 1 else f"mean ± std of {len(runs)} runs"
    fig.suptitle(runs_text)
    return fig


# ----------------------------------------------------------------------------------------------
# command line


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def _add_video_arguments(parser: argparse.ArgumentParser) -> None:
    _add_run_arguments(parser)
    parser.add_argument("--video", required=True, help="the video's name, as in the dataset's videoname.npy")


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_video_arguments(commands.add_parser("cas", help="Figure 4 of the supplementary for one video"))
    _add_video_arguments(commands.add_parser("embedding", help="one video's embedded snippets, representatives "
                                                               "and memory-bank entries, projected to 2-D"))
    _add_run_arguments(commands.add_parser("bank", help="Figure 7 of the supplementary: the memory bank's entries "
                                                        "among the training videos' action features, projected to 2-D"))
    curves = commands.add_parser("curves", help="mAP and losses over epochs of one run or several (mean ± std)")
    curves.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run folders (OUT of python -m rsnet.train); several runs must have the same "
                             "epochs (of evaluation and of losses): a run that differs is an error")
    for subcommand in commands.choices.values():
        subcommand.add_argument("--out", required=True, type=Path, help="the image to write: .png or .svg")
        subcommand.add_argument("--dpi", type=float, default=100, help="resolution of a .png (default 100)")
        cli.add_debug_flag(subcommand)
    args = parser.parse_args(argv)
    check_flags(args)
    figure_class()  # a missing matplotlib is an error before any work
    if args.command == "curves":
        fig, source = curves_figure(args.runs), ", ".join(map(str, args.runs))
    elif args.command == "bank":
        run = open_run(args.checkpoint, args.device, args.data_root, args.checkpoint_format, json_data(args))
        fig, source = bank_figure(run), str(args.checkpoint)
    else:
        run = open_run(args.checkpoint, args.device, args.data_root, args.checkpoint_format, json_data(args))
        video = video_index(run.dataset.annotations, args.video)
        fig = (cas_figure if args.command == "cas" else embedding_figure)(run, video)
        source = f"{args.video} of {args.checkpoint}"
    save(fig, args.out, args.dpi)
    print(f"{args.out}: {args.command} of {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
