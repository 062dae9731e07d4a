"""``python -m rsnet.infer --video``: from a video file to detections in one command (random I3D
weights, a generated video, a tiny trained model), and the detections file the evaluator reads."""
from pathlib import Path

import numpy as np
import pytest
import torch

from rsnet import infer
from rsnet.evaluate.command import main as evaluate_main
from rsnet.synthetic import VideoLayout, write_annotations
from rsnet.synthetic.statistics import CLASSES

av = pytest.importorskip("av")


def _write_video(path: Path, n_frames: int) -> Path:
    """A square moving across a textured background, 25 fps, lossless."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            frame = background.copy()
            frame[10:26, i % 48:i % 48 + 16] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    """The tiny run's folder (a model of the THUMOS14 classes)."""
    return tiny_run.out


@pytest.mark.slow  # TV-L1 flow and I3D over 80 frames
def test_a_video_file_becomes_detections_the_evaluator_reads(checkpoint, tmp_path, capsys):
    from rsnet.extract.i3d import random_state

    torch.save(random_state(3, seed=1), tmp_path / "rgb.pt")
    torch.save(random_state(2, seed=2), tmp_path / "flow.pt")
    video = _write_video(tmp_path / "clip.mp4", 80)  # 3.2 s: 5 snippets
    argv = ["--checkpoint", str(checkpoint), "--video", str(video), "--rgb-weights", str(tmp_path / "rgb.pt"),
            "--flow-weights", str(tmp_path / "flow.pt"), "--crop", "32", "--video-cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "d.json")]
    assert infer.main(argv) == 0
    cached = list((tmp_path / "cache").glob("tvl1-*/clip.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (5, 2048)
    assert "--annotations ANNOTATIONS" in capsys.readouterr().out
    # the evaluator reads it, over ground truth written for the clip
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    layout = VideoLayout(name="clip", subset="test", duration=3.2, segments=[[0.5, 2.5]], labels=[CLASSES[0]],
                         ambiguous=[])
    write_annotations(annotations, list(CLASSES), [layout], "Thumos14reduced")
    assert evaluate_main(["--detections", str(tmp_path / "d.json"), "--annotations", str(annotations),
                          "--lenient"]) == 0
    # a second run reads the cache: nothing is extracted again
    before = cached[0].stat().st_mtime_ns
    assert infer.main([*argv[:-1], str(tmp_path / "p.npz")]) == 0
    assert cached[0].stat().st_mtime_ns == before and (tmp_path / "p.npz").is_file()


def test_video_without_weights_or_with_another_source_is_one_line(checkpoint, tmp_path, capsys):
    out = ["--out", str(tmp_path / "d.json")]
    assert infer.main(["--checkpoint", str(checkpoint), "--video", "a.mp4", *out]) == 2
    assert capsys.readouterr().err.startswith("error: --video extracts features first: give --rgb-weights")
    assert infer.main(["--checkpoint", str(checkpoint), "--video", "a.mp4", "--features", str(tmp_path), *out]) == 2
    assert capsys.readouterr().err.startswith("error: --features and --video: give one source of videos")
