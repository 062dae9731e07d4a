"""Bad input to ``python -m rsnet.train``, case by case: one owner per run folder, the output
checked before the work. (Tests run as root here, for whom every folder is writable: an
unwritable folder is simulated by refusing os.access for it.)"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsnet import folder_lock, train
from rsnet.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[2]
TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)


def _argv(root, out, epochs=1):
    return ["--data-root", str(root), "--out", str(out), "--epochs", str(epochs), "--warmup-epochs", "0",
            "--embed-dim", "16", "--videos-per-step", "3", "--test-batch-size", "4", "--lenient", "--device", "cpu"]


def _start(argv):
    return subprocess.Popen([sys.executable, "-m", "rsnet.train", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def _wait_for_owner(out: Path, process: subprocess.Popen) -> None:
    lock = out / folder_lock.LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip() == str(process.pid)):
        assert process.poll() is None and time.monotonic() < deadline, "the first run never took its folder"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_trainings_into_one_folder_leave_one_run_and_one_refusal(tiny_root, tmp_path):
    """Both used to exit 0, the folder mixed (one run's config.json beside the other's checkpoint)."""
    out = tmp_path / "run"
    first = _start([*_argv(tiny_root, out, epochs=30), "--eval-every", "10"])  # long enough for the second to start
    _wait_for_owner(out, first)
    second = _start([*_argv(tiny_root, out, epochs=2), "--lr", "1e-3", "--overwrite"])
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert err.strip() == (f"error: {out} is in use by process {first.pid} (a training run): wait for it to end, "
                           f"or choose another folder")
    assert first.wait(timeout=600) == 0
    records = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 30 and '"lr": 5e-05' in (out / "config.json").read_text()


def test_a_lock_left_by_a_killed_run_does_not_block_a_rerun(tiny_root, tmp_path):
    out = tmp_path / "run"
    first = _start(_argv(tiny_root, out, epochs=50))
    _wait_for_owner(out, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert (out / folder_lock.LOCK_FILE).exists()
    assert train.main([*_argv(tiny_root, out), "--overwrite"]) == 0


def test_an_out_that_cannot_be_written_is_refused_before_the_data_loads(tmp_path, capsys, monkeypatch):
    """It used to fail after loading the data, inside the first write."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    missing_data = ["--data-root", str(tmp_path / "no-such-data")]
    assert train.main([*missing_data, "--out", str(locked / "run")]) == 2
    assert capsys.readouterr().err == f"error: --out {locked / 'run'}: cannot write in {locked}\n"
    (tmp_path / "a-file").write_text("")
    assert train.main([*missing_data, "--out", str(tmp_path / "a-file" / "run")]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'a-file' / 'run'}: {tmp_path / 'a-file'} is a file, not a folder\n"
    assert train.main([*missing_data, "--out", str(tmp_path / "a-file")]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'a-file'} is a file, not a folder\n"
