"""What a sweep runs: ``--grid`` (any config keys, each over its values), ``--seeds`` and ``--shard``.

``--grid lr=1e-4,5e-4 n_representatives=4,8`` is every combination of the values (2 x 2 variants,
each run with every seed). Values are typed and checked by the config's own rules (rsnet.config),
and every cell is validated before anything trains. A repeated key, value or seed is refused: it
would train one run twice under two names, or count one seed twice in a mean.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter

from ..config import Config, apply_overrides, validate
from ..errors import UserError
from .cells import Variant

# Keys a grid cannot sweep: the seeds are --seeds, and the folders are the sweep's.
NOT_SWEPT = {"seed": "--seeds", "out": "--out"}


def _repeated(items: list) -> list:
    return [item for item, count in Counter(items).items() if count > 1]


def parse_seeds(tokens: list[str]) -> list[int]:
    """``0 1 2``, ``0,1,2``, ``0-7`` or any mix, in the order given; a repeated seed is refused."""
    seeds = []
    for piece in (p for token in tokens for p in token.split(",") if p):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", piece)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise UserError(f"--seeds takes seeds and ranges (0 1 2, 0-7), got {piece!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        seeds += range(first, last + 1)
    if not seeds:
        raise UserError("--seeds needs at least one seed")
    repeated = _repeated(seeds)
    if repeated:
        raise UserError(f"--seeds repeats {', '.join(map(str, repeated))}: each seed may count once")
    return seeds


def _axis(token: str, base: Config) -> tuple[str, list[tuple[str, object]]]:
    """``KEY=V1,V2`` as the key and its (value as typed, value as the config holds it) pairs."""
    key, sep, values = token.partition("=")
    key = key.strip().replace("-", "_")
    texts = [v.strip() for v in values.split(",")]
    if not sep or not key or "" in texts:
        raise UserError(f"--grid takes KEY=VALUE,VALUE,... (e.g. lr=1e-4,5e-4), got {token!r}")
    if key in NOT_SWEPT:
        raise UserError(f"--grid cannot sweep {key}: {NOT_SWEPT[key]} gives it")
    typed = [getattr(apply_overrides(base, {key: text}, "--grid"), key) for text in texts]  # the config's errors
    repeated = _repeated(typed)
    if repeated:
        raise UserError(f"--grid {key} repeats {', '.join(map(str, repeated))} (given as {', '.join(texts)})")
    return key, list(zip(texts, typed))


def parse_grid(tokens: list[str], base: Config) -> list[Variant]:
    """One variant per combination of the axes' values, named ``key=value ...`` as typed."""
    axes = [_axis(token, base) for token in tokens]
    keys = [key for key, _ in axes]
    repeated = _repeated(keys)
    if repeated:
        raise UserError(f"--grid names {', '.join(repeated)} more than once: give each key's values in one KEY=V1,V2")
    variants = []
    for combination in itertools.product(*(values for _, values in axes)):
        name = " ".join(f"{key}={text}" for key, (text, _) in zip(keys, combination))
        variants.append(Variant(name, {key: value for key, (_, value) in zip(keys, combination)}))
    for variant in variants:  # a range or a combination the config refuses, before anything trains
        validate(dataclasses.replace(base, **variant.switches))
    return variants


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N``: this machine's share, the K-th of N (1-based)."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise UserError(f"--shard takes K/N with 1 <= K <= N (e.g. 1/4), got {text!r}")
    return int(match[1]), int(match[2])


def shard(cells: list[Config], which: tuple[int, int] | None) -> list[Config]:
    """The K-th of N shares of the cells, every N-th from the K-th: the shares cover each cell once.
    Every machine must list the same cells in the same order (the same command), finished or not."""
    if which is None:
        return cells
    k, n = which
    return cells[k - 1::n]
