"""Bad input to ``python -m rsnet.infer`` (and the trained model it reads), case by case: no silent
wrong result, one line naming the cause."""
import json
import shutil
import struct

import numpy as np
import pytest

from rsnet import checkpoint, infer, outputs, train
from rsnet.checkpoint.command import main as checkpoint_main
from rsnet.config import Config
from rsnet.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)
    out = tmp_path_factory.mktemp("run")
    train.run(Config(data_root=str(root), out=str(out), epochs=1, warmup_epochs=0, embed_dim=16, videos_per_step=3,
                     test_batch_size=4, lenient=True, device="cpu"))
    return root, out


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def test_two_videos_of_one_name_are_refused_at_load(run, tmp_path, capsys):
    """infer used to report '19 detections of 8 videos' and write 7: one video's detections vanished."""
    root, out = run
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    names_file = copy / "Thumos14reduced" / "videoname.npy"
    names = np.load(names_file, allow_pickle=True)
    names[-1] = names[-2]
    np.save(names_file, names)
    assert infer.main(["--checkpoint", str(out), "--data-root", str(copy), "--out", str(tmp_path / "d.json")]) == 2
    n, name = len(names), names[-1].decode()
    assert _error(capsys) == (f"error: {out} is a model of Thumos14reduced: {names_file} names video {name!r} twice "
                              f"(positions {n - 2} and {n - 1}): each video needs its own name")
    assert not (tmp_path / "d.json").exists()


def test_features_infinite_as_float32_are_refused_naming_the_video(run, tmp_path, capsys):
    """float64 1e39 is finite, and infinite once cast to the model's float32: infer used to write
    "score": NaN, which is not JSON, and exit 0."""
    _, out = run
    folder = tmp_path / "features"
    folder.mkdir()
    video = np.ones((20, 2048))
    video[3, 5] = 1e39
    np.save(folder / "big.npy", video)
    assert infer.main(["--checkpoint", str(out), "--features", str(folder), "--out", str(tmp_path / "d.json")]) == 2
    assert _error(capsys) == f"error: {folder / 'big.npy'}: NaN or infinite features (as float32, the model's dtype)"


def test_the_writers_never_emit_nan_into_json():
    assert json.loads(outputs.json_bytes({"score": 0.5})) == {"score": 0.5}
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="refusing to write NaN or Infinity into JSON"):
            outputs.json_bytes({"results": {"v": [{"score": bad}]}})


def test_a_run_folder_is_a_checkpoint(run, tmp_path, capsys):
    """--checkpoint RUN_DIR used to say 'checkpoint not found' for a folder that exists."""
    _, out = run
    assert infer.main(["--checkpoint", str(out), "--out", str(tmp_path / "p.npz")]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(empty), "--out", str(tmp_path / "q.npz")]) == 2
    assert _error(capsys).startswith(f"error: {empty} is a folder without a checkpoint.pt: give a run folder")


def test_weights_whose_tensors_disagree_with_their_metadata_name_the_file_and_the_shapes(run, tmp_path, capsys):
    """The metadata claims 64-d features, the tensors hold 16-d ones: the message used to blame the
    dataset's features file."""
    _, out = run
    weights = tmp_path / "model.safetensors"
    assert checkpoint_main(["export", str(out), "--out", str(weights)]) == 0
    stored = checkpoint.load_trained(weights, dataset_needed=False)
    forged = tmp_path / "forged.safetensors"
    checkpoint.save_weights(stored._replace(config={**stored.config, "feature_dim": 64}), forged)
    capsys.readouterr()
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "v.npy", np.ones((20, 64), np.float32))
    assert infer.main(["--checkpoint", str(forged), "--features", str(features), "--out", str(tmp_path / "p.npz")]) == 2
    assert _error(capsys) == (f"error: {forged}: its model's tensors do not fit the config it records: "
                              f"embedding.weight (16, 2048) where the config needs (16, 64)")
    header = json.loads(forged.read_bytes()[8:8 + struct.unpack("<Q", forged.read_bytes()[:8])[0]])
    assert json.loads(header["__metadata__"]["config"])["feature_dim"] == 64
