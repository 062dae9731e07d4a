"""``python -m rsnet.evaluate``: detection and classification mAP of saved predictions, or detection
mAP of a detections file.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

from .. import cli, outputs
from ..data import Annotations, DataError, load_annotations
from ..data.activitynet_json import load_activitynet_json
from ..data.safe_npy import load_npz
from ..errors import UserError
from ..protocols import DEFAULT_IOUS, PROTOCOL_IOUS, PROTOCOLS
from .detections_file import evaluate_detections, load_detections
from .matching import evaluate


def command_line(given: list[str], annotations: Path | str, subset: str | None, protocol: str, lenient: bool,
                 fps_factor: float = 25 / 16, classes: str | None = None) -> str:
    """The ``python -m rsnet.evaluate`` command that scores ``given`` (``["--predictions", P]`` or
    ``["--detections", D]``) of the videos of ``subset`` (None: the evaluator's default) as a
    training run of this protocol and leniency scores itself: the protocol's thresholds
    (``PROTOCOL_IOUS``, not the evaluator's default under anet) at ``fps_factor`` snippets per second."""
    words = ["python", "-m", "rsnet.evaluate", *map(str, given), "--annotations", str(annotations),
             *(["--classes", str(classes)] if classes else []), *(["--subset", subset] if subset else []),
             "--protocol", protocol]
    if PROTOCOL_IOUS[protocol] != DEFAULT_IOUS:
        words += ["--iou", *map(repr, PROTOCOL_IOUS[protocol])]
    if fps_factor != 25 / 16:
        words += ["--fps-factor", repr(fps_factor)]
    return shlex.join(words + (["--lenient"] if lenient else []))


def _default_subset(annotations: Annotations) -> str:
    subsets = set(annotations.subsets)
    if "test" in subsets:
        return "test"
    if "validation" in subsets:
        return "validation"
    raise DataError(f"{annotations.folder} has neither a 'test' nor a 'validation' subset; pass --subset")


def read_annotations(path: Path, classes: str | None = None) -> Annotations:
    """A W-TALC annotation folder, or an ActivityNet JSON file (``classes``: its class order)."""
    if path.suffix == ".json" or path.is_file():
        return load_activitynet_json(path, classes)
    if classes is not None:
        raise UserError("--classes applies to an ActivityNet JSON --annotations file, not to a W-TALC folder")
    return load_annotations(path)


def subset_indices(annotations: Annotations, subsets: str) -> np.ndarray:
    """The videos of the comma-separated ``subsets``, in the file's order."""
    names = [s.strip() for s in subsets.split(",") if s.strip()]
    for name in names:
        if name not in annotations.subsets:
            raise DataError(f"{annotations.folder} has no video of subset {name!r} "
                            f"(its subsets: {', '.join(dict.fromkeys(annotations.subsets))})")
    return np.array([v for v, s in enumerate(annotations.subsets) if s in names], dtype=np.int64)


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.evaluate",
                                     description="Detection and classification mAP of saved predictions, or detection mAP of a detections file.")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--detections", type=Path,
                       help="a detections JSON in the ActivityNet results format, as python -m rsnet.infer writes")
    given.add_argument("--predictions", type=Path,
                        help="npz with vid_preds (V, C+1), frm_preds (object array of (T_i, C+1)), as the test vectors")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="annotation folder in the W-TALC layout, or an ActivityNet JSON file")
    parser.add_argument("--classes", default=None,
                        help="with a JSON file: the class order (one a line) its run was trained with")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="rskp")
    parser.add_argument("--lenient", action="store_true", help="a class without proposals counts as AP 0 (rskp)")
    parser.add_argument("--subset", default=None,
                        help="subset(s) to evaluate, comma-separated (default: 'test', else 'validation')")
    parser.add_argument("--iou", type=float, nargs="+", default=None, help="IoU thresholds (default 0.1 ... 0.7)")
    parser.add_argument("--fps-factor", type=float, default=25 / 16, help="snippets per second (25/16; 10/4 for UNT)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the result as JSON here (.json; replaced whole, never one of the inputs)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.out is not None:
        outputs.check_out(args.out, ".json", (args.detections, args.predictions))
    annotations = read_annotations(args.annotations, args.classes)
    subset = args.subset or _default_subset(annotations)
    indices = subset_indices(annotations, subset)
    options = dict(protocol=args.protocol, lenient=args.lenient, iou_thresholds=args.iou, fps_factor=args.fps_factor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.detections is not None:
            result = evaluate_detections(load_detections(args.detections), annotations, indices, **options)
        else:
            result = evaluate(*_load_predictions(args.predictions), annotations, indices, **options)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(result.format_table())
    if args.out is not None:
        record = {**result.to_dict(), "subset": subset, "n_videos": int(len(indices)),
                  "predictions": str(args.detections or args.predictions), "annotations": str(args.annotations)}
        outputs.write(args.out, outputs.json_bytes(record, indent=2))
    return 0


def _load_predictions(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    if not path.is_file():
        raise UserError(f"predictions file not found: {path}")
    archive = load_npz(path)
    for key in ("vid_preds", "frm_preds"):
        if key not in archive:
            raise UserError(f"{path} has no {key!r} array (has {', '.join(archive)})")
    return archive["vid_preds"], list(archive["frm_preds"])


if __name__ == "__main__":
    sys.exit(main())
