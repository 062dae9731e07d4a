"""``python -m rsnet.data``: dataset tools."""
from __future__ import annotations

import argparse
import sys
import time

from .. import cli
from ..datasets import DATASETS, FEATURE_DIM
from .convert import convert
from .feature_store import FEATURES


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("convert", help="pack ROOT/<dataset>/'s W-TALC feature file into a memory-mapped store "
                                               "beside it (or in --feature-cache DIR), which the loader reads instead "
                                               "while it is current")
    pack.add_argument("root", help="the loader root: ROOT/<dataset>/ holds the W-TALC files")
    pack.add_argument("--dataset", default="Thumos14reduced", choices=sorted(DATASETS))
    pack.add_argument("--feature-dim", type=int, default=FEATURE_DIM)
    pack.add_argument("--feature-cache", metavar="DIR",
                      help="write the store in DIR instead of beside the W-TALC file (a read-only or shared data "
                           "folder); train with --feature-cache DIR to read it (the run's checkpoint records it)")
    cli.add_debug_flag(pack)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    store = convert(args.root, args.dataset, args.feature_dim, args.feature_cache)
    print(f"{store}: {(store / FEATURES).stat().st_size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

