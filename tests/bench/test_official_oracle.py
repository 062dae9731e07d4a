"""bench/official_oracle.py: its patches apply exactly or stop, its result readers and its statistics."""
import math
import statistics

import pytest
from scipy import stats

from bench import official_oracle as oracle  # noqa: E402


def _upstream_tree(root):
    """Files holding exactly the upstream text each patch replaces (plus what patch_official checks for)."""
    for name, old, _ in oracle.OFFICIAL_PATCHES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text() if path.is_file() else "# upstream\n"
        path.write_text(before + old + "\n")
    (root / "processor.py").write_text((root / "processor.py").read_text() + "\n")
    return root


def test_every_patch_applies_once_and_the_logger_is_stood_in(tmp_path):
    patched = oracle.patch_official(_upstream_tree(tmp_path / "src"), tmp_path / "patched")
    for name, old, new in oracle.OFFICIAL_PATCHES:
        text = (patched / name).read_text()
        assert new in text and (old not in text or old in new), name
    assert "def log_value" in (patched / "tensorboard_logger.py").read_text()


def test_a_patch_that_no_longer_matches_stops_with_its_file(tmp_path):
    source = _upstream_tree(tmp_path / "src")
    name, old, _ = oracle.OFFICIAL_PATCHES[0]
    (source / name).write_text((source / name).read_text().replace(old, "changed upstream"))
    with pytest.raises(SystemExit, match=name):
        oracle.patch_official(source, tmp_path / "patched")


def test_results_are_read_only_from_finished_runs(tmp_path):
    s = oracle.SETS["default"]
    log = tmp_path / "ckpt" / oracle.DATASET_NAME / "3" / f"{oracle.DATASET_NAME}-results.log"
    log.parent.mkdir(parents=True)
    log.write_text("####\nlr: 0.0002\n****\n10 1 2 3 4 5 6 7 12.70 86.98\n20 1 2 3 4 5 6 7 33.40 89.16\n")
    assert oracle.read_official(tmp_path, s, 3) is None, "a run short of its last epoch is not finished"
    log.write_text(log.read_text() + "30 1 2 3 4 5 6 7 47.79 90.09\n")
    assert oracle.read_official(tmp_path, s, 3) == {10: 12.70, 20: 33.40, 30: 47.79}

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 29, "losses": {}}\n{"epoch": 30, "avg": 41.5}\n')
    assert oracle.read_rskp(tmp_path, s) == {30: 41.5}


def test_the_comparison_states_the_difference_its_error_and_the_tests():
    official, ours = [40.0, 44.0, 42.0, 46.0], [39.0, 41.0, 43.0, 41.0]
    diff, ratio, f, p, p_spread, p_ranks = oracle.compare(official, ours)
    d = statistics.mean(ours) - statistics.mean(official)
    se = math.sqrt(statistics.variance(ours) / 4 + statistics.variance(official) / 4)
    assert diff == f"{d:+.2f} ± {se:.2f}" and ratio == f"{abs(d) / se:.2f}"
    var_ratio = statistics.variance(ours) / statistics.variance(official)
    assert f == f"{var_ratio:.2f}" and p == f"{2 * stats.f.cdf(var_ratio, 3, 3):.2f}"


def test_one_run_that_fails_to_learn_breaks_the_f_test_but_not_the_robust_tests():
    official = [44.7, 50.4, 48.8, 47.5, 48.8, 1.6, 49.3, 47.1]  # small56, epoch 60: seed 5 never learned
    ours = [46.4, 42.8, 50.8, 49.2, 48.6, 50.6, 48.0, 50.4]
    _, _, _, p, p_spread, p_ranks = oracle.compare(official, ours)
    assert float(p) < 0.01 and float(p_spread) > 0.2 and float(p_ranks) > 0.2
