"""Detections of a trained model, in the ActivityNet results format, for other methods to use.

``python -m rsnet.infer --checkpoint CKPT --out detections.json`` runs the model of a run's
``checkpoint.pt`` (or its exported ``.safetensors``, or the published RSKP code's ``N.pkl``), with
the branches ``--branches main|intra|all`` names (default intra: the paper's), over

- a W-TALC dataset: ``--data-root ROOT [--split S]`` (default: the dataset recorded in the
  checkpoint's config, and its test split), or
- ``--features PATH``: a folder of ``VIDEO_ID.npy`` arrays (T, feature_dim), or one such ``.npy``
  (the checkpoint's dataset, recorded or under ``--data-root``, still gives the class names),

and writes ``{"version", "results": {video_id: [{"label", "score", "segment": [start_s, end_s]}]},
"external_data"}``: every class's proposals after NMS, made by the evaluator's own code
(``rsnet.evaluate.proposals``, under ``--protocol``, by default the checkpoint's: anet, the
ActivityNet1.2 default, also proposes each video's best class when none reaches 0.1), best first per video, snippet bounds turned into seconds at
``--frames-per-snippet`` / ``--fps`` (16 frames at 25 fps). ``python -m rsnet.evaluate
--detections detections.json --annotations DIR`` scores the file as the evaluator scores the
predictions themselves; the command printed after the file is written names the protocol the
detections were proposed under and scores them under it, with the thresholds and leniency the
run scored itself with. ``--max-per-video N`` keeps the N best of each video.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from rs_kernels.varlen import Varlen

from . import cli, outputs
from .checkpoint import add_checkpoint_arguments
from .data import PackedBatch
from .errors import DataError, UserError
from .evaluate import PROTOCOLS, best_class_of, command_line, proposals
from .inference import add_branches_argument, predict_batches, predict_split
from .safe_npy import load_npy
from .train import restore

FORMAT_VERSION = "RSKP detections 1.0"


def detections_by_video(scores: np.ndarray, cas: list[np.ndarray], class_names: list[str], seconds_per_snippet: float,
                        max_per_video: int | None = None, protocol: str = "rskp") -> list[list[dict]]:
    """Per video, its detections of every class, best first (equal scores keep the evaluator's order),
    proposed as the protocol's evaluator proposes them."""
    n_classes = len(class_names)
    props = proposals(scores, cas, np.arange(len(cas)), np.arange(n_classes), best_class_of(protocol, n_classes))
    per_video = []
    for v in range(len(cas)):
        rows = np.flatnonzero(props.video == v)
        rows = rows[np.argsort(-props.score[rows], kind="stable")][:max_per_video]
        per_video.append([{"label": class_names[props.cls[r]], "score": float(props.score[r]),
                           "segment": [float(props.s[r] * seconds_per_snippet), float(props.e[r] * seconds_per_snippet)]}
                          for r in rows.tolist()])
    return per_video


def read_features(path: Path, feature_dim: int) -> tuple[list[str], list[np.ndarray]]:
    """(video ids, float32 (T, feature_dim) arrays) of a folder of VIDEO_ID.npy, or of one .npy."""
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise DataError(f"--features {path} holds no .npy file")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"--features {path} not found")
    features = []
    for file in files:
        feat = np.asarray(load_npy(file))
        if feat.ndim != 2 or feat.shape[1] != feature_dim or feat.shape[0] == 0 or feat.dtype.kind not in "biuf":
            raise DataError(f"{file}: features of shape {feat.shape} dtype {feat.dtype}; the checkpoint takes "
                            f"(T >= 1, {feature_dim}) real numbers")
        if not np.isfinite(feat).all():
            raise DataError(f"{file}: NaN or infinite features")
        features.append(feat.astype(np.float32))
    return [f.stem for f in files], features


def packed(features: list[np.ndarray], batch_size: int):
    """Batches of the videos in order, packed as the dataset packs them (labels unknown: zeros)."""
    for start in range(0, len(features), batch_size):
        videos = features[start:start + batch_size]
        yield PackedBatch(x=torch.from_numpy(np.concatenate(videos)), varlen=Varlen.from_lengths([len(f) for f in videos]),
                          labels=torch.zeros(len(videos), 0), index=torch.arange(start, start + len(videos)))


def _predict(args, trainer) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """(video ids, video scores, CAS) of the videos the flags name."""
    model, device, batch_size = trainer.model, trainer.device, trainer.cfg.test_batch_size
    scoring = (args.branches, trainer.bank)
    annotations = trainer.dataset.annotations
    if args.features is not None:
        names, features = read_features(args.features, trainer.cfg.feature_dim)
        scores, cas = predict_batches(model, packed(features, batch_size), device, *scoring)
    elif args.split is None:
        names = [annotations.video_names[v] for v in trainer.dataset.test_indices]
        scores, cas = predict_split(model, trainer.dataset, device, batch_size, *scoring)
    else:
        indices = annotations.indices(args.split)
        if len(indices) == 0:
            raise DataError(f"{annotations.folder}/subset.npy has no video of split {args.split!r}")
        names = [annotations.video_names[v] for v in indices]
        scores, cas = predict_batches(model, trainer.dataset.batches_in_order(indices, batch_size), device, *scoring)
    return names, scores, cas


def _how_to_score(args, trainer, protocol: str) -> str:
    """What the detections were proposed under, and the rsnet.evaluate command that scores them so
    (the protocol's thresholds, the run's leniency); ANNOTATIONS stands for the folder of --features videos."""
    dataset = trainer.dataset
    if args.features is not None:
        annotations, subset = "ANNOTATIONS", None
    else:
        annotations, subset = dataset.annotations.folder, args.split or dataset.info.test_subset
    command = command_line(["--detections", args.out], annotations, subset, protocol, trainer.cfg.lenient,
                           args.fps / args.frames_per_snippet)
    return f"proposed under the {protocol} protocol; score them under it with\n{command}"


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="the detections file to write (.json)")
    add_branches_argument(parser)
    parser.add_argument("--features", type=Path, default=None, help="a folder of VIDEO_ID.npy (T, feature_dim), or one .npy")
    parser.add_argument("--split", default=None, help="subset of the dataset (default: its test split)")
    parser.add_argument("--frames-per-snippet", type=float, default=16)
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--max-per-video", type=int, default=None, help="keep the N best detections of each video")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="whose proposals (default: the checkpoint's; anet adds each video's best class "
                             "when no class reaches 0.1)")
    parser.add_argument("--device", default="cpu")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.features is not None and args.split is not None:
        raise UserError("--split selects videos of a dataset; --features gives the videos itself")
    if not (args.frames_per_snippet > 0 and args.fps > 0 and np.isfinite([args.frames_per_snippet, args.fps]).all()):
        raise UserError(f"--frames-per-snippet and --fps must be positive, got {args.frames_per_snippet}, {args.fps}")
    if args.max_per_video is not None and args.max_per_video < 1:
        raise UserError(f"--max-per-video must be at least 1, got {args.max_per_video}")
    outputs.check_out(args.out, ".json", (args.checkpoint, args.features))
    trainer = restore(args.checkpoint, args.device, args.data_root, args.checkpoint_format)
    protocol = args.protocol or trainer.cfg.protocol
    names, scores, cas = _predict(args, trainer)
    per_video = detections_by_video(scores, cas, trainer.dataset.annotations.class_names,
                                    args.frames_per_snippet / args.fps, args.max_per_video, protocol)
    record = {"version": FORMAT_VERSION, "results": dict(zip(names, per_video)),
              "external_data": {"used": False, "details": f"RSKP detections of {args.checkpoint}"}}
    outputs.write(args.out, (json.dumps(record) + "\n").encode())
    print(f"{args.out}: {sum(map(len, per_video))} detections of {len(names)} videos, "
          f"{_how_to_score(args, trainer, protocol)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
