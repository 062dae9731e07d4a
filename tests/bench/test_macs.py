"""bench/macs.py: supplementary Table 4 reproduced, closed-form counts, growth with T, the JSON output.

The benchmark is imported as the module it runs as (python -m bench.NAME).
"""
import json

import pytest

from bench import macs  # noqa: E402

T, D, K, C1 = 100, 2048, 8, 21  # C1: 20 classes + background


def _forms(t: int, m: int = K) -> dict[str, int]:
    """The rows' MACs in closed form (what the counter must find, to the MAC)."""
    embed = t * D * D
    head = 2 * t * D * C1 + 2 * t * D + 2 * D * C1  # the official P(.) einsums
    walk_dense = t * t * D + 2 * m * t * D + m * t * t
    walk_woodbury = 3 * m * t * D + m * m * t + m * m * D
    main = embed + head + 2 * 2 * K * t * D + K * D * C1  # + EM (2 iterations) + p_mu
    co2_attention = 1024 * 1024 * 3 + t * (1024 * 1024 * 3 + 1024 * 512 * 3 + 512 * 512 * 3 + 512 + 1024)
    return {
        "wtalc": embed + t * D * 20,
        "co2net": 2 * co2_attention + t * D * D + t * D * D * 3 + t * D * C1,
        "main": main,
        "intra_dense": main + walk_dense + head,
        "inter_paper": main + walk_dense + head + embed,
        "walk_dense": walk_dense,
        "walk_woodbury": walk_woodbury,
    }


@pytest.fixture(scope="module")
def table():
    return macs.measure([T])


@pytest.mark.parametrize("key", ["wtalc", "co2net", "main"])
def test_reproduces_paper(table, key):
    row = next(r for r in macs.ROWS if r.key == key)
    assert abs(table[key][T] / 1e9 - row.paper_macs_g) <= 0.005


@pytest.mark.parametrize("key", ["wtalc", "co2net", "main", "intra_dense", "inter_paper", "walk_dense",
                                 "walk_woodbury"])
def test_closed_forms(table, key):
    assert table[key][T] == _forms(T)[key]


def test_documented_gaps(table):
    """+ intra (dense) falls 0.0116G short of the paper's 0.48; + inter keeps the paper's +1 embedding convention."""
    assert 0.475 - 0.0075 < table["intra_dense"][T] / 1e9 < 0.475  # rounds to 0.47, not 0.48
    assert table["inter_paper"][T] - table["intra_dense"][T] == T * D * D  # 0.4194 -> the paper's +0.42
    assert round((table["inter_paper"][T] - table["intra_dense"][T]) / 1e9, 2) == 0.42


def test_package_rows(table):
    """Woodbury rows; the package's P(.) counts T*D + (C+1)*D less than the official einsums
    (its attention-weighted sums are element-wise products and segment sums)."""
    forms = _forms(T)
    head_pkg = 2 * T * D * C1 + 2 * T * D + 2 * D * C1 - (T * D + C1 * D)
    main_pkg = T * D * D + head_pkg + 2 * 2 * K * T * D + K * D * C1
    intra = main_pkg + forms["walk_woodbury"] + head_pkg
    inter_walk = _forms(T, m=macs.MEMORY_SNIPPETS)["walk_woodbury"]
    assert table["intra_woodbury"][T] == intra
    assert table["inter_two_rounds"][T] == 2 * intra + inter_walk + head_pkg
    assert table["inter_reuse"][T] == intra + inter_walk + head_pkg
    assert table["walk_woodbury"][T] < table["walk_dense"][T] / 4


def _second_difference(fn, t0: int, h: int) -> int:
    values = [fn(macs.make_setup(t)) for t in (t0, t0 + h, t0 + 2 * h)]
    return values[2] - 2 * values[1] + values[0]


def test_woodbury_linear_in_T():
    assert _second_difference(macs.row_walk_woodbury, 20, 20) == 0
    assert _second_difference(macs.row_intra_woodbury, 20, 20) == 0


def test_dense_quadratic_in_T():
    h = 20
    assert _second_difference(macs.row_walk_dense, 20, h) == 2 * h * h * (D + K)  # T^2 D + K T^2
    assert _second_difference(macs.row_intra_dense, 20, h) == 2 * h * h * (D + K)


def test_json_output_parses(capsys, table):
    assert macs.main(["--json"]) == 0  # T = 100, counted once per process: the fixture's numbers
    data = json.loads(capsys.readouterr().out)
    assert data["T"] == [T]
    rows = {row["key"]: row for row in data["rows"]}
    assert set(rows) == {row.key for row in macs.ROWS}
    assert rows["main"]["paper_macs_g"] == 0.44 and rows["main"]["paper_map"] == [55.5, 38.2, 12.5, 44.7]
    assert rows["walk_dense"]["macs"][str(T)] == _forms(T)["walk_dense"]
    assert all(isinstance(note, str) for note in data["notes"]) and len(data["notes"]) >= 5


def test_table_text(table):
    text = macs.format_table(table, [T])
    assert "W-TALC" in text and "0.42G" in text and "2.79G" in text  # the paper's column
    assert "0.4235" in text and "2.7896" in text  # ours, as measured
    assert len(macs.notes(table)) >= 5
