"""The comparison table: is a row's score apart from a reference row's, or within the seeds' noise?

Per row: the mean ± std of its seeds' scores and the standard error of the mean; against the
reference row (``--against``, a row's name): the difference of the means with Welch's 95 %
interval (unequal variances) and the two-sided p of the Mann-Whitney U rank test, which assumes no
normal scores. A row whose interval holds 0 is within noise: its seeds do not tell it apart from
the reference. The statistics are scipy's.
"""
from __future__ import annotations

import math
import statistics

from scipy import stats

from ..errors import UserError

CONFIDENCE = 0.95


def find_row(names: list[str], wanted: str) -> str:
    """The row ``wanted`` names: its exact name, else the one row whose name starts with it (case
    aside), so that ``--against baseline`` finds "Baseline (`--no-intra ...`)"."""
    if wanted in names:
        return wanted
    matches = [name for name in names if name.lower().startswith(wanted.lower())]
    if len(matches) == 1:
        return matches[0]
    which = "matches several rows" if matches else "is no row"
    raise UserError(f"--against {wanted!r} {which}; the rows are: {'; '.join(matches or names)}")


def difference(scores: list[float], reference: list[float]) -> tuple[float, float, float, float]:
    """(mean of scores - mean of reference, Welch's 95 % interval of it, Mann-Whitney U's two-sided p);
    NaN where the seeds cannot give one (one seed a row, or no spread in either)."""
    delta = statistics.mean(scores) - statistics.mean(reference)
    if min(len(scores), len(reference)) < 2:
        return delta, math.nan, math.nan, math.nan
    interval = stats.ttest_ind(scores, reference, equal_var=False).confidence_interval(CONFIDENCE)
    p = stats.mannwhitneyu(scores, reference, alternative="two-sided").pvalue
    return delta, float(interval.low), float(interval.high), float(p)


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over the seeds (the sample std; 0.0 for one seed), as every table prints it."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def _number(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:+.{digits}f}"


def comparison_table(scores: dict[str, list[float]], against: str | None, what: str) -> str:
    """Markdown: a row per entry of ``scores`` (row name -> each seed's score, ``what``), and with
    ``against`` (a row's name, ``find_row``) each row's difference to it."""
    seeds = min(len(values) for values in scores.values())
    lines = [f"{what}: mean ± std over the seeds and the standard error of the mean"]
    header = "| variant | mean ± std | s.e. |"
    if against is not None:
        reference = find_row(list(scores), against)
        # with few seeds the rank test cannot reach a small p whatever the scores: say where its floor is
        floor = stats.mannwhitneyu(range(seeds), range(seeds, 2 * seeds), alternative="two-sided").pvalue
        lines[0] += (f"; against {reference!r}: the difference of the means, Welch's {CONFIDENCE:.0%} interval and "
                     f"the Mann-Whitney U test's two-sided p (with {seeds} seeds a row it cannot go below "
                     f"{floor:.3f}). Within noise: the interval holds 0.")
        header += f" difference | {CONFIDENCE:.0%} interval | p (rank test) | verdict |"
    lines += ["", header, "|---" * (header.count("|") - 1) + "|"]
    for name, values in scores.items():
        row = f"| {name} | {mean_std(values)} | " + ("-" if len(values) < 2 else f"{stats.sem(values):.2f}") + " |"
        if against is not None:
            row += _against(values, scores[reference], name == reference)
        lines.append(row)
    return "\n".join(lines)


def _against(values: list[float], reference: list[float], is_reference: bool) -> str:
    if is_reference:
        return " reference | | | |"
    delta, low, high, p = difference(values, reference)
    if math.isnan(low):
        verdict = "too few seeds or no spread to tell"
    else:
        verdict = "within noise" if low <= 0 <= high else ""
    interval = "-" if math.isnan(low) else f"[{low:+.1f}, {high:+.1f}]"
    p_text = "-" if math.isnan(p) else f"{p:.3f}"
    return f" {_number(delta)} | {interval} | {p_text} | {verdict} |"
