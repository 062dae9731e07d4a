"""Bad input to ``python -m rsnet.plot``, case by case: --out and --dpi refused before any work
(they used to be tracebacks after it). Tests run as root, for whom every folder is writable: an
unwritable folder is simulated by refusing os.access for it."""
import os
from pathlib import Path

import pytest

from rsnet import plot

pytest.importorskip("matplotlib")


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("command", ["cas", "curves"])
def test_out_and_dpi_are_refused_before_any_work(command, tmp_path, capsys, monkeypatch):
    source = ["--checkpoint", str(tmp_path / "no-run"), "--video", "v"] if command == "cas" else [str(tmp_path)]
    folder = tmp_path / "pictures.png"
    folder.mkdir()
    assert plot.main([command, *source, "--out", str(folder)]) == 2
    assert _error(capsys) == f"error: --out {folder} is a folder; give the .png file to write"
    assert plot.main([command, *source, "--out", str(tmp_path / "a.png"), "--dpi", "-5"]) == 2
    assert _error(capsys) == "error: --dpi must be a positive number, got -5.0"
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    assert plot.main([command, *source, "--out", str(locked / "a.png")]) == 2
    assert _error(capsys) == f"error: --out {locked / 'a.png'}: cannot write in {locked}"
