"""Shared files behave like files (``python -m rsnet.checkpoint export`` and every result written
through ``rsnet.outputs``): the umask's permissions, no temporary left by a killed write, the same
bytes for the same run."""
import hashlib
import os

import pytest

from rsnet import outputs, train
from rsnet.checkpoint.command import main as checkpoint_main
from rsnet.config import Config
from rsnet.synthetic import SyntheticSpec, generate


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_outputs_get_the_umasks_permissions(tmp_path, umask_022):
    """Every file used to be created 0600 whatever the umask: a colleague could not read the weights."""
    path = tmp_path / "result.json"
    outputs.write(path, b"{}")
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    os.umask(0o077)
    outputs.write(path, b"{}")
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_the_next_write_removes_what_a_killed_write_left(tmp_path):
    """A SIGKILL during a write left checkpoint.pt.*.tmp behind forever (--overwrite included)."""
    path = tmp_path / "checkpoint.pt"
    stale = tmp_path / "checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "metrics.jsonl.def456.tmp"  # another file's: not this write's to remove
    other.write_bytes(b"")
    outputs.write(path, b"whole")
    assert path.read_bytes() == b"whole" and not stale.exists() and other.exists()


def test_export_is_reproducible_byte_for_byte_and_readable_by_the_group(tmp_path, umask_022):
    """Two exports of the same run used to give different bytes (safetensors writes its metadata in
    an arbitrary order) and different checksums."""
    root = generate(tmp_path / "data", SyntheticSpec(n_train=6, n_test=4, length_scale=0.15), seed=1)
    run = tmp_path / "run"
    train.run(Config(data_root=str(root), out=str(run), epochs=1, warmup_epochs=0, embed_dim=16, videos_per_step=3,
                     test_batch_size=4, lenient=True, device="cpu"))
    digests = []
    for name in ("a.safetensors", "b.safetensors"):
        assert checkpoint_main(["export", str(run), "--out", str(tmp_path / name)]) == 0
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o644)
    assert digests[0] == digests[1]
