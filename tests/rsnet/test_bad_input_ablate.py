"""Bad input to ``python -m rsnet.ablate``, case by case."""
from rsnet.ablate import main as ablate_main


def test_duplicate_seeds_and_grid_values_are_refused(tmp_path, capsys):
    """--seeds 0 0 used to run once and print a table saying '2 seeds, ± 0.0'."""
    for argv in (["--table", "1", "--seeds", "0", "0"], ["--grid", "lr=1e-4,1e-4"], ["--grid", "lr=1e-4,0.0001"]):
        assert ablate_main([*argv, "--out", str(tmp_path / "sweep")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --") and len(err.splitlines()) == 1 and " repeats " in err, err
    assert not (tmp_path / "sweep").exists()
