"""python -m rsnet.extract VIDEO_OR_DIR... --out FEATURES_DIR --rgb-weights RGB.pt --flow-weights FLOW.pt

Writes FEATURES_DIR/VIDEO_ID.npy, (T, 2048) float32 (RGB 1024 then flow 1024, T = int(duration x
25 / 16) snippets of 16 frames at 25 fps), for each video file given or found in a folder given,
from the two-stream I3D of the pytorch-i3d weight files (rgb_imagenet.pt, flow_imagenet.pt); then
``python -m rsnet.infer --features FEATURES_DIR`` runs a model on them. A video whose .npy exists
is skipped, so a killed run resumes where it stopped. A video that cannot be used (unreadable, no
video stream, shorter than 0.64 s) is named in the one error line at the end, after the others are
written; the exit code is then 2.

--flow tvl1 (default) is the flow the published THUMOS14 / ActivityNet features and the I3D flow
weights used; a model trained on TV-L1 features expects TV-L1 features. --flow raft / raft_small
(torchvision's RAFT, weights from --raft-weights or torchvision's cache) is faster on a GPU but
gives other features. Needs the [extract] extra: pip install -e ".[extract]".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsnet import cli
from rsnet.errors import UserError

from .extra import check_extra
from .flow import FLOW_METHODS
from .pipeline import Recipe, extract_videos


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO_OR_DIR", help="video files or folders of them")
    parser.add_argument("--out", required=True, type=Path, help="the folder of VIDEO_ID.npy features to write")
    parser.add_argument("--rgb-weights", required=True, type=Path, help="pytorch-i3d RGB weights (rgb_imagenet.pt)")
    parser.add_argument("--flow-weights", required=True, type=Path, help="pytorch-i3d flow weights (flow_imagenet.pt)")
    parser.add_argument("--flow", choices=FLOW_METHODS, default="tvl1",
                        help="optical flow: tvl1 (default, the published features'), raft, raft_small")
    parser.add_argument("--raft-weights", type=Path, default=None,
                        help="a state dict of torchvision's RAFT (default: torchvision's cached download)")
    parser.add_argument("--device", default="auto", help="auto (the GPU if any), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch", type=int, default=8, help="snippets per I3D forward, frame pairs per RAFT call")
    parser.add_argument("--jobs", type=int, default=None, help="TV-L1 threads (default: every core)")
    parser.add_argument("--crop", type=int, default=Recipe.crop,
                        help="I3D input size (default 224, the published features'; smaller only for quick tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no summary line")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.crop < 32:
        raise UserError(f"--crop must be at least 32 (I3D downsamples by 32), got {args.crop}")
    check_extra(args.flow)
    extract_videos(args.videos, args.out, args.rgb_weights, args.flow_weights, args.flow, args.device, args.batch,
                   progress=not args.quiet, jobs=args.jobs, raft_weights=args.raft_weights,
                   recipe=Recipe(crop=args.crop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
