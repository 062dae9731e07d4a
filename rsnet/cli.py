"""The convention every ``python -m rsnet.*`` command shares: a user error is one line, exit code 2.

``@command`` wraps a ``main(argv) -> int | None``: a ``UserError`` (a bad flag value, file, folder,
checkpoint or dataset) prints ``error: <message>`` on stderr and returns 2, the code argparse
uses for bad flags; with ``--debug`` on the command line it propagates with its traceback.
Any other exception is a bug and keeps its traceback. Before ``main`` runs, the process keeps its
freed memory for reuse (``rsnet.host_memory``).
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

from .errors import UserError
from .host_memory import keep_freed_memory

USER_ERROR_EXIT = 2


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")


def command(main: Callable[[list[str]], int | None]) -> Callable[[Sequence[str] | None], int]:
    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else list(argv)
        keep_freed_memory()
        try:
            return main(args) or 0
        except UserError as exc:
            if "--debug" in args:
                raise
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return USER_ERROR_EXIT

    return run
