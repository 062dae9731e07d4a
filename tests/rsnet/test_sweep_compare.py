"""The comparison table's numbers are scipy's: Welch's 95 % interval of the difference of the means
(ttest_ind's confidence_interval), the Mann-Whitney U test's two-sided p and the standard error."""
import math

import pytest
from scipy import stats

from rsnet.errors import UserError
from rsnet.sweep.compare import comparison_table, difference, find_row

SCORES = {
    "baseline": [36.1, 37.4, 35.2, 36.9, 36.0, 37.8, 35.5, 36.6],
    "new": [38.0, 39.1, 37.2, 38.8, 36.4, 39.5, 37.9, 38.3],
    "close": [36.3, 37.1, 35.9, 36.2, 37.0, 36.8, 35.4, 36.9],
}


def _row(table: str, name: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_difference_interval_and_p_are_scipys():
    delta, low, high, p = difference(SCORES["new"], SCORES["baseline"])
    welch = stats.ttest_ind(SCORES["new"], SCORES["baseline"], equal_var=False).confidence_interval(0.95)
    assert (low, high) == (welch.low, welch.high)
    assert p == stats.mannwhitneyu(SCORES["new"], SCORES["baseline"], alternative="two-sided").pvalue
    assert delta == pytest.approx(sum(SCORES["new"]) / 8 - sum(SCORES["baseline"]) / 8)


def test_the_table_prints_them_and_marks_the_rows_within_noise():
    table = comparison_table(SCORES, "base", "Last-epoch average mAP")
    _, low, high, p = difference(SCORES["new"], SCORES["baseline"])
    assert _row(table, "new") == ["new", "38.1 ± 1.0", f"{stats.sem(SCORES['new']):.2f}", "+1.7",
                                      f"[{low:+.1f}, {high:+.1f}]", f"{p:.3f}", ""]
    assert _row(table, "baseline")[3] == "reference"
    close = _row(table, "close")
    assert close[-1] == "within noise" and close[4].startswith("[-") and not close[4].startswith("[--")
    floor = stats.mannwhitneyu(range(8), range(8, 16), alternative="two-sided").pvalue
    assert f"with 8 seeds a row it cannot go below {floor:.3f}" in table


def test_without_a_reference_only_the_spread_is_given_and_one_seed_gives_none():
    table = comparison_table({"a": [1.0, 2.0, 4.0], "b": [3.0, 3.5, 2.0]}, None, "x")
    assert _row(table, "a") == ["a", "2.3 ± 1.5", f"{stats.sem([1.0, 2.0, 4.0]):.2f}"]
    assert all(math.isnan(v) for v in difference([1.0], [2.0, 3.0])[1:])
    assert _row(comparison_table({"a": [1.0], "b": [2.0]}, "a", "x"), "b")[-1] == "too few seeds or no spread to tell"


def test_the_reference_is_a_rows_name_or_its_unique_start():
    rows = ["Full model", "Baseline (`--no-intra --no-pseudo-label --no-memory-bank`)"]
    assert find_row(rows, "baseline") == rows[1] and find_row(rows, "Full model") == rows[0]
    with pytest.raises(UserError, match="'x' is no row; the rows are: Full model; Baseline"):
        find_row(rows, "x")
    several = "'Baseline' matches several rows; the rows are: Baseline, no L_att; Baseline, L_att"
    with pytest.raises(UserError, match=several):
        find_row(["Baseline, no L_att", "Baseline, L_att", "+ memory bank"], "Baseline")
