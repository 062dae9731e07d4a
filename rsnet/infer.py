"""``python -m rsnet.infer``: a trained model's predictions or detections, by the suffix of ``--out``.

``python -m rsnet.infer --checkpoint CKPT --out OUT`` runs the model of a run (its folder or
``checkpoint.pt``), its exported ``.safetensors`` or the published RSKP code's ``N.pkl``
(``rsnet.trained.load``), with the branches ``--branches main|intra|all`` names (default intra:
the paper's; docs/design.md, "Inference"), over

- a dataset: ``--data-root ROOT`` (W-TALC) or ``--annotations FILE.json --features DIR`` (the
  JSON layout) ``[--split S]`` (default: the dataset recorded in the checkpoint, and its test split), or
- ``--features PATH`` alone: a folder of ``VIDEO_ID.npy`` arrays (T, feature_dim), or one such ``.npy``;
  no dataset is read (the checkpoint records the class names; the published code's ``N.pkl``
  records none, so it still needs ``--data-root``), or
- ``--video FILE_OR_DIR... --rgb-weights RGB.pt --flow-weights FLOW.pt [--flow tvl1|raft]``: video
  files, whose features ``rsnet.extract`` extracts first (the ``[extract]`` extra) into
  ``--video-cache``, by flow and weights: a video extracted once is not extracted again.

``OUT.npz``: the predictions, in the layout ``python -m rsnet.evaluate --predictions`` reads:
``vid_preds`` (V, C+1), ``frm_preds`` (an object array of (T_i, C+1) class activation sequences) and
``vid_lens`` (V,), the videos in the split's annotation order (or the ``--features`` files' sorted order).

``OUT.json``: the detections, ``{"version", "results": {video_id: [{"label", "score", "segment":
[start_s, end_s]}]}, "external_data"}``: every class's proposals after NMS, made by the evaluator's
own code (``rsnet.evaluate.proposals``, under ``--protocol``, by default the checkpoint's: anet,
the ActivityNet1.2 default, also proposes each video's best class when none reaches 0.1), best
first per video, snippet bounds turned into seconds at ``--frames-per-snippet`` / ``--fps``
(default: the checkpoint's, 16 frames at 25 fps for I3D). ``--max-per-video N`` keeps the N best of each video.

Either way, the command printed after the file is written scores it with ``python -m
rsnet.evaluate`` as the run scored itself (its protocol, thresholds and leniency).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch

from rs_kernels.varlen import Varlen

from . import cli, outputs
from .data import DataError
from .data.dataset import PackedBatch
from .data.safe_npy import load_npy
from .errors import UserError
from .evaluate import PROTOCOLS, best_class_of, command_line
from .evaluate.proposals import proposals
from .extract.flow import FLOW_METHODS
from .extract.pipeline import Recipe
from .model import BRANCHES, predict_batches
from .trained import Trained, add_arguments, dataset_of, json_data, load

FORMAT_VERSION = "RSKP detections 1.0"
OUT_SUFFIXES = (".npz", ".json")  # predictions, detections


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


def feature_files(path: Path) -> list[Path]:
    """The VIDEO_ID.npy files of a folder, sorted, or the one .npy ``path`` names."""
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise DataError(f"--features {path} holds no .npy file")
        return files
    if path.is_file():
        return [path]
    raise DataError(f"--features {path} not found")


def read_features(files: list[Path], feature_dim: int) -> tuple[list[str], list[np.ndarray]]:
    """(video ids, float32 (T, feature_dim) arrays) of VIDEO_ID.npy files."""
    features = []
    for file in files:
        feat = np.asarray(load_npy(file))
        if feat.ndim != 2 or feat.shape[1] != feature_dim or feat.shape[0] == 0 or feat.dtype.kind not in "biuf":
            raise DataError(f"{file}: features of shape {feat.shape} dtype {feat.dtype}; the checkpoint takes "
                            f"(T >= 1, {feature_dim}) real numbers")
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused below
            feat = feat.astype(np.float32)
        if not np.isfinite(feat).all():
            raise DataError(f"{file}: NaN or infinite features (as float32, the model's dtype)")
        features.append(feat)
    return [f.stem for f in files], features


def packed(features: list[np.ndarray], batch_size: int):
    """Batches of the videos in order, packed as the dataset packs them (labels unknown: zeros)."""
    for start in range(0, len(features), batch_size):
        videos = features[start:start + batch_size]
        yield PackedBatch(x=torch.from_numpy(np.concatenate(videos)), varlen=Varlen.from_lengths([len(f) for f in videos]),
                          labels=torch.zeros(len(videos), 0), index=torch.arange(start, start + len(videos)))


class Predicted:
    """What the model predicted for the videos the flags name, and where their ground truth is."""

    def __init__(self, names: list[str], scores: np.ndarray, cas: list[np.ndarray], annotations: str,
                 subset: str | None):
        self.names, self.scores, self.cas = names, scores, cas
        self.annotations, self.subset = annotations, subset  # for the evaluate command; ANNOTATIONS: not known


def predict(args, trained: Trained) -> Predicted:
    """The videos of ``--features``, or of the dataset's ``--split`` (default: its test split), scored."""
    scoring = (trained.device, args.branches, trained.bank)
    batch_size = trained.config.test_batch_size
    if features_alone(args) or args.video is not None:
        files = feature_files(args.features) if args.video is None else extracted(args)
        names, features = read_features(files, trained.config.feature_dim)
        return Predicted(names, *predict_batches(trained.model, packed(features, batch_size), *scoring),
                         "ANNOTATIONS", None)
    dataset = dataset_of(trained)
    annotations = dataset.annotations
    indices = dataset.test_indices if args.split is None else annotations.indices(args.split)
    if len(indices) == 0:
        raise DataError(f"{annotations.folder} has no video of split {args.split!r}")
    scores, cas = predict_batches(trained.model, dataset.batches_in_order(indices, batch_size), *scoring)
    return Predicted([annotations.video_names[v] for v in indices], scores, cas, str(annotations.folder),
                     args.split or dataset.test_subset)


def features_alone(args) -> bool:
    """``--features`` without ``--annotations``: the videos themselves, no dataset."""
    return args.features is not None and args.annotations is None


def extracted(args) -> list[Path]:
    """The features of ``--video`` files (``rsnet.extract``), in a cache folder keyed by the flow
    and the weight files, so a video extracted once is not extracted again."""
    from .extract import extract_videos
    from .extract.extra import check_extra

    check_extra(args.flow, "python -m rsnet.infer --video")
    key = hashlib.sha256(args.flow.encode())
    for weights in (args.rgb_weights, args.flow_weights, args.raft_weights):
        if weights is not None and Path(weights).is_file():
            key.update(hashlib.sha256(Path(weights).read_bytes()).digest())
    key.update(str(args.crop).encode())
    folder = args.video_cache / f"{args.flow}-{key.hexdigest()[:16]}"
    return extract_videos(args.video, folder, args.rgb_weights, args.flow_weights, args.flow, args.device,
                          raft_weights=args.raft_weights, recipe=Recipe(crop=args.crop))


def save_predictions(path: Path, scores: np.ndarray, cas: list[np.ndarray]) -> None:
    """The predictions as ``rsnet.evaluate --predictions`` reads them, written atomically."""
    frames = np.empty(len(cas), dtype=object)
    frames[:] = cas
    archive = io.BytesIO()
    np.savez(archive, vid_preds=scores, frm_preds=frames, vid_lens=np.array([len(c) for c in cas], dtype=np.int64))
    outputs.write(path, archive.getvalue())


def save_detections(path: Path, args, trained: Trained, predicted: Predicted, protocol: str) -> int:
    """The detections file (the module docstring); returns how many detections it holds."""
    per_video = detections_by_video(predicted.scores, predicted.cas, trained.class_names,
                                    1 / snippet_rate(args, trained), args.max_per_video, protocol)
    record = {"version": FORMAT_VERSION, "results": dict(zip(predicted.names, per_video)),
              "external_data": {"used": False, "details": f"RSKP detections of {args.checkpoint}"}}
    outputs.write(path, outputs.json_bytes(record))
    return sum(map(len, per_video))


def snippet_rate(args, trained: Trained) -> float:
    """Snippets per second: --fps / --frames-per-snippet, each by default the checkpoint's."""
    fps = args.fps if args.fps is not None else trained.config.fps
    frames = args.frames_per_snippet if args.frames_per_snippet is not None else trained.config.frames_per_snippet
    return fps / frames


def _check_flags(args) -> None:
    given = [flag for flag, present in (("--features", features_alone(args)), ("--video", args.video is not None))
             if present]
    if len(given) == 2 or (given and args.split is not None):
        raise UserError(f"{' and '.join(given + (['--split'] if args.split else []))}: give one source of videos "
                        f"(--split selects videos of a dataset; --features alone and --video give the videos "
                        f"themselves)")
    if args.video is not None and not (args.rgb_weights and args.flow_weights):
        raise UserError("--video extracts features first: give --rgb-weights and --flow-weights (the pytorch-i3d "
                        "files, rgb_imagenet.pt and flow_imagenet.pt)")
    if args.out.suffix not in OUT_SUFFIXES:
        raise UserError(f"--out {args.out} must end in .npz (predictions) or .json (detections)")
    given = [v for v in (args.frames_per_snippet, args.fps) if v is not None]
    if not all(v > 0 and np.isfinite(v) for v in given):
        raise UserError(f"--frames-per-snippet and --fps must be positive, got {args.frames_per_snippet}, {args.fps}")
    if args.max_per_video is not None and args.max_per_video < 1:
        raise UserError(f"--max-per-video must be at least 1, got {args.max_per_video}")
    outputs.check_out(args.out, OUT_SUFFIXES, (args.checkpoint, args.features))


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--out", required=True, type=Path,
                        help="the file to write: .npz (predictions) or .json (detections)")
    parser.add_argument("--branches", choices=BRANCHES, default="intra",
                        help="main: the main branch alone; intra: main and intra-video (the paper); all: a first "
                             "round predicts the classes, whose memory-bank snippets add the inter-video branch")
    parser.add_argument("--split", default=None, help="subset of the dataset (default: its test split)")
    videos = parser.add_argument_group("--video: video files, their features extracted first (python -m rsnet.extract)")
    videos.add_argument("--video", nargs="+", type=Path, default=None, metavar="VIDEO", help="video files or folders")
    videos.add_argument("--rgb-weights", type=Path, help="pytorch-i3d RGB weights (rgb_imagenet.pt)")
    videos.add_argument("--flow-weights", type=Path, help="pytorch-i3d flow weights (flow_imagenet.pt)")
    videos.add_argument("--flow", choices=FLOW_METHODS, default="tvl1",
                        help="optical flow: tvl1 (default: the published features', which a model trained on them expects)")
    videos.add_argument("--raft-weights", type=Path, default=None, help="torchvision RAFT weights (--flow raft)")
    videos.add_argument("--crop", type=int, default=Recipe.crop,
                        help="I3D input size (default 224, the published features'; smaller only for quick tests)")
    videos.add_argument("--video-cache", type=Path, default=Path(".rskp_cache") / "video-features",
                        help="where extracted features are kept, by flow and weights (default .rskp_cache/video-features)")
    parser.add_argument("--frames-per-snippet", type=float, default=None, help="default: the checkpoint's (16)")
    parser.add_argument("--fps", type=float, default=None, help="default: the checkpoint's (25)")
    parser.add_argument("--max-per-video", type=int, default=None, help="keep the N best detections of each video (.json)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="whose proposals (.json; default: the checkpoint's; anet adds each video's best class "
                             "when no class reaches 0.1)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    _check_flags(args)
    trained = load(args.checkpoint, args.device, args.data_root, args.checkpoint_format,
                   dataset_needed=not (features_alone(args) or args.video is not None),
                   data=None if features_alone(args) or args.video is not None else json_data(args))
    protocol = args.protocol or trained.config.protocol
    predicted = predict(args, trained)
    if args.out.suffix == ".npz":
        save_predictions(args.out, predicted.scores, predicted.cas)
        given, what = ["--predictions", args.out], f"predictions for {len(predicted.names)} videos"
    else:
        count = save_detections(args.out, args, trained, predicted, protocol)
        given, what = ["--detections", args.out], f"{count} detections of {len(predicted.names)} videos"
    command = command_line(given, predicted.annotations, predicted.subset, protocol, trained.config.lenient,
                           snippet_rate(args, trained), None if features_alone(args) else trained.config.classes)
    print(f"{args.out}: {what} of {args.checkpoint}; score them as the run scored itself (the {protocol} "
          f"protocol) with\n{command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
