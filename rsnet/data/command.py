"""``python -m rsnet.data``: dataset tools: ``convert`` (pack features into a memory-mapped store),
``export-json`` (a W-TALC folder's ground truth as ActivityNet JSON), ``build`` (a dataset from a
CSV of one's own labels)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import cli
from ..datasets import FEATURE_DIM, FPS, FRAMES_PER_SNIPPET, WTALC_DATASETS
from ..errors import UserError
from .activitynet_json import load_activitynet_json, write_activitynet_json
from .annotations import annotation_folder, load_annotations
from .convert import convert
from .feature_folder import pack_folder
from .feature_store import FEATURES
from .own_labels import build


def _convert_command(commands) -> None:
    pack = commands.add_parser("convert", help="pack a dataset's features into a memory-mapped store, which the loader "
                                               "reads instead while it is current: ROOT/<dataset>/'s W-TALC file "
                                               "(beside it), or with --annotations FILE.json --features DIR the "
                                               "annotations' videos of DIR (into DIR.store)")
    pack.add_argument("root", nargs="?", help="the W-TALC loader root: ROOT/<dataset>/ holds the W-TALC files")
    pack.add_argument("--dataset", default="Thumos14reduced", choices=sorted(WTALC_DATASETS))
    pack.add_argument("--annotations", help="ActivityNet JSON annotations (the JSON layout, instead of ROOT)")
    pack.add_argument("--features", help="with --annotations: the folder of VIDEO_ID.npy to pack")
    pack.add_argument("--classes", help=argparse.SUPPRESS)  # accepted as train takes it; packing needs no class order
    pack.add_argument("--feature-dim", type=int, default=FEATURE_DIM)
    pack.add_argument("--feature-cache", metavar="DIR",
                      help="write the store in DIR instead of beside the data (a read-only or shared data folder); "
                           "train with --feature-cache DIR to read it (the run's checkpoint records it)")
    cli.add_debug_flag(pack)


def _run_convert(args) -> Path:
    if (args.root is None) == (args.annotations is None):
        raise UserError("convert takes ROOT (a W-TALC root) or --annotations FILE.json --features DIR: one of them")
    if args.root is not None:
        return convert(args.root, args.dataset, args.feature_dim, args.feature_cache)
    if args.features is None:
        raise UserError("--annotations needs --features DIR, the folder of VIDEO_ID.npy to pack")
    names = load_activitynet_json(args.annotations, args.classes).video_names
    return pack_folder(args.features, names, args.feature_dim, args.feature_cache)


def _export_command(commands) -> None:
    export = commands.add_parser("export-json", help="write a W-TALC folder's ground truth as ActivityNet JSON "
                                                     "(with its video-level labels and ambiguous spans)")
    export.add_argument("--data-root", required=True, help="the W-TALC root: ROOT/<dataset>/ holds the annotations")
    export.add_argument("--dataset", default="Thumos14reduced", choices=sorted(WTALC_DATASETS))
    export.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    cli.add_debug_flag(export)


def _run_export(args) -> None:
    annotations = load_annotations(annotation_folder(Path(args.data_root) / args.dataset, args.dataset))
    classes = write_activitynet_json(annotations, args.out)
    print(f"{args.out}: {len(annotations)} videos, {len(annotations.class_names)} classes of {annotations.folder}")
    if classes is not None:
        print(f"{classes}: its class order (not the sorted labels): give --classes {classes} with --annotations")


def _build_command(commands) -> None:
    make = commands.add_parser("build", help="a dataset from one's own labels: a CSV of video,label rows (and "
                                             "video,label,start,end for the videos to evaluate on) over a folder "
                                             "of VIDEO_ID.npy, written as ActivityNet JSON")
    make.add_argument("--features", required=True, help="the folder of VIDEO_ID.npy (python -m rsnet.extract --out)")
    make.add_argument("--labels", required=True, help="the CSV: video,label[,start,end][,subset] rows")
    make.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    make.add_argument("--test-fraction", type=float, default=None,
                      help="without a subset column: evaluate on this share of the videos with segments (stratified "
                           "by class), train on the rest (default: every video with segments is evaluated on)")
    make.add_argument("--seed", type=int, default=0, help="the draw of --test-fraction")
    make.add_argument("--fps", type=float, default=FPS, help="frames per second the features were extracted at")
    make.add_argument("--frames-per-snippet", type=float, default=FRAMES_PER_SNIPPET)
    cli.add_debug_flag(make)


def _run_build(args) -> None:
    if not (args.fps > 0 and args.frames_per_snippet > 0):
        raise UserError(f"--fps and --frames-per-snippet must be positive, got {args.fps}, {args.frames_per_snippet}")
    counts = build(args.features, args.labels, args.out, args.test_fraction, args.seed,
                   args.fps / args.frames_per_snippet)
    rate = "" if (args.fps, args.frames_per_snippet) == (FPS, FRAMES_PER_SNIPPET) else \
        f" --fps {args.fps:g} --frames-per-snippet {args.frames_per_snippet:g}"
    print(f"{args.out}: {counts['training']} training and {counts['validation']} test videos, {counts['classes']} "
          f"classes; train with\npython -m rsnet.train --annotations {args.out} --features {args.features}{rate}")


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    _convert_command(commands)
    _export_command(commands)
    _build_command(commands)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.command == "convert":
        store = _run_convert(args)
        print(f"{store}: {(store / FEATURES).stat().st_size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s")
    elif args.command == "export-json":
        _run_export(args)
    else:
        _run_build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
