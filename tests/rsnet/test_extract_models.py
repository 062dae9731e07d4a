"""rsnet.extract's networks: the I3D (pinned on fixed random weights; weight files checked key by
key) and the two flows (TV-L1 recovers a known shift; RAFT runs on random weights, never downloads).

The I3D's equality with the reference implementation is shown by bench/i3d_reference.py (it needs
a checkout of piergiaj/pytorch-i3d); the pins here are its outputs at that commit, so that any
later change of the network shows.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rsnet.errors import DataError, UserError
from rsnet.extract.i3d import InceptionI3d, load_i3d, random_state

cv2 = pytest.importorskip("cv2")


def _features(in_channels: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    model = InceptionI3d(in_channels)
    model.load_state_dict(random_state(in_channels, seed=7))
    clips = torch.rand((shape[0], in_channels, *shape[1:]), generator=torch.Generator().manual_seed(11)) * 2 - 1
    with torch.inference_mode():
        features = model.eval().features(clips)
        return features, model.class_logits(features)


def test_i3d_rgb_features_pinned_on_fixed_random_weights():
    features, logits = _features(3, (2, 16, 64, 64))
    assert features.shape == (2, 1024) and features.dtype == torch.float32
    np.testing.assert_allclose(features[0, :6], [4.40644, 1.56286, 0.99966, 0.0, 0.02244, 11.65977], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.sum(dim=1), [4442.4526, 4465.7939], rtol=1e-4)
    np.testing.assert_allclose(features.norm(dim=1), [249.77686, 249.72520], rtol=1e-4)
    np.testing.assert_allclose(logits[0, :3], [-6.490787, 7.285685, -5.252375], rtol=1e-4)


def test_i3d_flow_features_pinned_on_a_non_square_clip():
    features, logits = _features(2, (1, 16, 32, 48))
    np.testing.assert_allclose(features[0, :6], [0.0, 0.0, 0.0, 12.00071, 0.0, 3.35544], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.sum(dim=1), [1799.6510], rtol=1e-4)
    np.testing.assert_allclose(logits[0, :3], [3.939343, -3.354495, 2.341697], rtol=1e-4)


def test_i3d_parameter_names_are_the_pytorch_i3d_files():
    names = set(InceptionI3d(3).state_dict())
    for name in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var", "Mixed_4b.b1b.conv3d.weight",
                 "Mixed_5c.b3b.bn.bias", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert name in names
    assert InceptionI3d(3).state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)


def test_weight_file_with_a_wrong_key_is_refused_by_name(tmp_path):
    state = random_state(3)
    state["Mixed_4b.b0.conv.weight"] = state.pop("Mixed_4b.b0.conv3d.weight")
    torch.save(state, tmp_path / "rgb.pt")
    with pytest.raises(DataError, match="missing: Mixed_4b.b0.conv3d.weight; unexpected: Mixed_4b.b0.conv.weight"):
        load_i3d(tmp_path / "rgb.pt", "rgb")


def test_flow_weights_given_as_rgb_are_refused_with_the_mis_shaped_key(tmp_path):
    torch.save(random_state(2), tmp_path / "flow.pt")
    with pytest.raises(DataError, match=r"rgb weights.*mis-shaped: Conv3d_1a_7x7.conv3d.weight \(64, 2, 7, 7, 7\) "
                                        r"\(expected \(64, 3, 7, 7, 7\)\)"):
        load_i3d(tmp_path / "flow.pt", "rgb")


def test_weights_saved_before_num_batches_tracked_load(tmp_path):
    state = {k: v for k, v in random_state(2, seed=3).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pt")
    model = load_i3d(tmp_path / "old.pt", "flow")
    assert torch.equal(model.state_dict()["Mixed_5c.b0.bn.running_mean"], state["Mixed_5c.b0.bn.running_mean"])
    assert not model.training


def test_missing_or_unreadable_weight_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--rgb-weights .*nope.pt not found"):
        load_i3d(tmp_path / "nope.pt", "rgb")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt: not a PyTorch weight file"):
        load_i3d(tmp_path / "junk.pt", "flow")


def _texture(height: int, width: int) -> np.ndarray:
    noise = np.random.default_rng(0).random((height, width)) * 255
    return cv2.GaussianBlur(noise.astype(np.uint8), (0, 0), 2.0)


def test_tvl1_recovers_a_known_shift():
    from rsnet.extract.flow import TVL1, to_i3d_input

    gray = _texture(72, 96)
    shifted = np.roll(gray, (-2, 3), axis=(0, 1))  # content moves 3 px right and 2 px up
    frames = np.stack([np.repeat(g[..., None], 3, axis=2) for g in (gray, shifted)])
    tvl1 = TVL1(jobs=1)
    flow = tvl1(frames)
    tvl1.close()
    assert flow.shape == (1, 72, 96, 2) and flow.dtype == np.float32
    inner = flow[0, 12:-12, 12:-12]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(-2.0, abs=0.25)
    scaled = to_i3d_input(np.array([-30.0, -10.0, 0.0, 25.0]))
    np.testing.assert_allclose(scaled, [-1.0, -0.5, 0.0, 1.0])


@pytest.mark.slow  # ~5-8 s on a 2-core CPU: torchvision's import and RAFT's 12 iterations at 128 x 128
def test_raft_small_runs_on_random_weights(tmp_path):
    from rsnet.extract.flow import RAFT, import_raft_models

    optical_flow = import_raft_models()
    torch.manual_seed(0)
    torch.save(optical_flow.raft_small(weights=None).state_dict(), tmp_path / "raft_small.pt")
    raft = RAFT("raft_small", tmp_path / "raft_small.pt", torch.device("cpu"), batch=2)
    frames = np.stack([np.repeat(_texture(40, 56)[..., None], 3, axis=2)] * 3)  # padded to 128 x 128 inside
    flow = raft(frames)
    assert flow.shape == (2, 40, 56, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_raft_without_weights_says_where_to_put_them_and_downloads_nothing(tmp_path, monkeypatch):
    from rsnet.extract.flow import RAFT

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"--flow raft: no RAFT weights: give --raft-weights FILE, or place"):
        RAFT("raft", None, torch.device("cpu"))
    assert not any(tmp_path.rglob("*.pth"))
