"""``python -m rsnet.synthetic``: write a synthetic dataset (the package docstring says what it holds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import cli
from ..errors import UserError
from ..presets import PRESETS
from .writer import annotated_dataset, describe, generate


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="root folder; the dataset goes to OUT/<dataset>/")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotations",
                        help="a W-TALC annotation folder whose ground truth to use (the preset's sizes are unused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT/<dataset>/ even if it is not a synthetic dataset written by this command "
                             "(it is deleted: real features, any file there)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")
    started = time.perf_counter()
    root = generate(args.out, args.preset, args.seed, annotations=args.annotations, overwrite=args.overwrite)
    dataset = annotated_dataset(args.annotations) if args.annotations else PRESETS[args.preset].spec.dataset
    source = f"ground truth of {args.annotations}" if args.annotations else "standalone layout"
    print(f"{describe(root, dataset)} Preset {args.preset!r}, seed {args.seed}, {source}; "
          f"generated in {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
