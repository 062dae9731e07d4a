"""The checkpoint file: a torch.save archive anyone can torch.load(weights_only=True), signed with
a SHA-256 of every byte before its signature, so that no flipped byte goes unnoticed."""
import pytest
import torch

from rsnet import checkpoint
from rsnet.checkpoint import CheckpointError


def _state():
    return {"format": "test", "w": torch.arange(7, dtype=torch.float32), "betas": (0.9, 0.99), "best": None,
            "metrics": [{"epoch": 1, "dmap": [1.5, 2.5]}], "name": "x"}


def test_round_trip_and_plain_torch_load(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    for state in (checkpoint.load(path), torch.load(path, weights_only=True)):
        assert torch.equal(state["w"], _state()["w"])
        assert {k: v for k, v in state.items() if k != "w"} == {k: v for k, v in _state().items() if k != "w"}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_every_flipped_byte_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    good = path.read_bytes()
    for offset in range(len(good)):
        damaged = bytearray(good)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match=str(path)):
            checkpoint.load(path)


def test_unsigned_files_are_refused_before_unpickling(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="carries no rskp checksum"):
        checkpoint.load(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="carries no rskp checksum"):
        checkpoint.load(path)


def test_a_signed_file_that_is_not_a_run_is_named(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    with pytest.raises(CheckpointError, match="not a training run's checkpoint"):
        checkpoint.load_run(path)
    checkpoint.save_atomic({"format": checkpoint.RUN_FORMAT, "version": checkpoint.RUN_VERSION, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="lacks config, model"):
        checkpoint.load_run(path)
