"""rsnet.extract from video files to features: decoding at 25 fps, the pipeline, the command.

Every video is written here by PyAV (libx264, lossless where a frame's content is read back), and
the I3D weights are random (``random_state``) at a 32-pixel crop, so that the whole file runs in
seconds on a CPU; the published 224-pixel recipe is the same code with ``crop=224``.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from rsnet.data import expected_length
from rsnet.errors import DataError, UserError

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from rsnet.extract import ExtractionError, Recipe, extract_videos  # noqa: E402
from rsnet.extract.__main__ import main  # noqa: E402
from rsnet.extract.i3d import random_state  # noqa: E402
from rsnet.extract.video import Video, upright_rgb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = Recipe(crop=32)


def moving_square(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A frame with a square that moves 2 px right per frame over a gradient."""
    frame = np.tile(np.linspace(0, 120, width, dtype=np.uint8), (height, 1))[..., None].repeat(3, axis=2)
    left = (4 + 2 * index) % (width - 16)
    frame[16:32, left:left + 16] = (250, 120, 10)
    return frame


def index_pattern(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A frame whose top half spells ``index`` in 8 black or white bars (bit b in bar b), and whose
    bottom-left quarter is grey: its content says which source frame it is, and which way is up."""
    frame = np.zeros((height, width, 3), np.uint8)
    bar = width // 8
    for bit in range(8):
        frame[:height // 2, bit * bar:(bit + 1) * bar] = 255 * ((index >> bit) & 1)
    frame[height // 2:, :width // 4] = 128
    return frame


def read_index(frame: np.ndarray) -> int:
    height, width = frame.shape[:2]
    bar = width // 8
    return sum(int(frame[height // 4, bit * bar + bar // 2].mean() > 127) << bit for bit in range(8))


def write_video(path: Path, n_frames: int, fps: int = 25, draw=moving_square, times_ms: list[int] | None = None,
                rotation: int | None = None) -> Path:
    """``n_frames`` of ``draw(i)`` at ``fps``, or at the timestamps ``times_ms`` (a variable frame
    rate); lossless H.264 so that the pixels read back as drawn."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000 if times_ms else fps)
        first = draw(0)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt, stream.options = "yuv444p", {"qp": "0", "preset": "ultrafast"}
        if times_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
            if times_ms:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("weights")
    torch.save(random_state(3, seed=1), folder / "rgb.pt")
    torch.save(random_state(2, seed=2), folder / "flow.pt")
    return folder / "rgb.pt", folder / "flow.pt"


def decoded_indices(path: Path) -> tuple[list[int], float]:
    with Video(path) as video:
        indices = [read_index(upright_rgb(frame)) for frame in video.frames_at(Fraction(25))]
        return indices, video.duration


# -- decoding -------------------------------------------------------------------------------------

def test_30_fps_is_resampled_to_the_frame_on_screen_every_40_ms(tmp_path):
    indices, duration = decoded_indices(write_video(tmp_path / "a.mp4", 45, fps=30, draw=index_pattern))
    assert duration == pytest.approx(1.5)
    assert len(indices) == 38  # 25 fps instants in [0, 1.5 s): 0, 0.04, ..., 1.48
    assert indices == [k * 30 // 25 for k in range(38)]  # frame j is on screen over [j/30, (j+1)/30)
    assert indices[:7] == [0, 1, 2, 3, 4, 6, 7]  # one frame in six dropped


def test_25_fps_passes_every_frame_once(tmp_path):
    indices, duration = decoded_indices(write_video(tmp_path / "a.mp4", 30, fps=25, draw=index_pattern))
    assert indices == list(range(30)) and duration == pytest.approx(1.2)


def test_variable_frame_rate_follows_the_timestamps(tmp_path):
    times = [0, 30, 100, 110, 120, 250, 260]  # ms: a stall at 120-250, then the last frame for 10 ms
    indices, duration = decoded_indices(write_video(tmp_path / "vfr.mkv", len(times), draw=index_pattern,
                                                    times_ms=times))
    assert duration == pytest.approx(0.27)
    # instants 0, 40, ..., 240, 280 > 270: the frame on screen at each
    assert indices == [0, 1, 1, 4, 4, 4, 4]


def test_rotation_metadata_turns_the_frames_upright(tmp_path):
    path = write_video(tmp_path / "phone.mp4", 3, draw=index_pattern, rotation=90)
    with Video(path) as video:
        frame = next(iter(video.frames_at(Fraction(25))))
        upright = upright_rgb(frame)
    assert frame.rotation == 90 and upright.shape == (64, 48, 3)  # 90 degrees counterclockwise
    assert upright[-4, -4].mean() == pytest.approx(128, abs=2)  # the grey bottom-left corner is now bottom-right
    assert upright[-4, 4].mean() < 10


@pytest.mark.parametrize("kind", ["garbage", "truncated", "audio only"])
def test_unusable_file_is_a_data_error_naming_it(tmp_path, kind):
    path = tmp_path / "bad.mp4"
    if kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        whole = write_video(tmp_path / "whole.mp4", 30).read_bytes()
        path.write_bytes(whole[:len(whole) // 2])  # the index (moov) is at the end: gone
    else:
        write_audio_only(path)
    with pytest.raises(DataError, match=f"{path}: (not a readable video|no video stream)"):
        with Video(path) as video:
            list(video.frames_at(Fraction(25)))


# -- the pipeline ---------------------------------------------------------------------------------

@pytest.mark.slow  # ~10 s on a loaded 2-core CPU: TV-L1 over 100 frame pairs
def test_videos_at_30_and_25_fps_give_the_evaluators_length(tmp_path, weights):
    # 45 frames at 30 fps: 38 at 25 fps, 2 snippets and a following frame (its flow is the last
    # frame's); 32 frames at 25 fps: exactly 2 snippets, the last frame's flow repeats the one before
    videos = [write_video(tmp_path / "v30.mp4", 45, fps=30), write_video(tmp_path / "v25.mp4", 32, fps=25)]
    paths = extract_videos(videos, tmp_path / "features", *weights, device="cpu", batch=1, progress=False,
                           jobs=1, recipe=TINY)
    assert paths == [tmp_path / "features" / "v30.npy", tmp_path / "features" / "v25.npy"]
    for path, duration in zip(paths, (45 / 30, 32 / 25)):
        features = np.load(path)
        assert features.shape == (int(expected_length(duration, 25 / 16)[0]), 2048) == (2, 2048)
        assert features.dtype == np.float32 and np.isfinite(features).all()
        assert np.abs(features[:, :1024]).sum() > 0 and np.abs(features[:, 1024:]).sum() > 0
    # the batch size does not change the features: 1 snippet at a time above, both at once here
    again = extract_videos(videos[1:], tmp_path / "batched", *weights, device="cpu", batch=8, progress=False,
                           jobs=1, recipe=TINY)
    np.testing.assert_allclose(np.load(again[0]), np.load(paths[1]), rtol=1e-4, atol=1e-4)


def test_video_shorter_than_a_snippet_fails_and_the_others_are_written(tmp_path, weights):
    good = write_video(tmp_path / "good.mp4", 20)
    short = write_video(tmp_path / "short.mp4", 10)  # 0.4 s < 16 frames at 25 fps
    with pytest.raises(ExtractionError, match=r"1 of 2 videos failed .*short.mp4: 0.40 s of video, shorter than "
                                              r"one snippet") as caught:
        extract_videos([short, good], tmp_path / "out", *weights, device="cpu", progress=False, recipe=TINY)
    assert caught.value.written == [tmp_path / "out" / "good.npy"]
    assert np.load(tmp_path / "out" / "good.npy").shape == (1, 2048)
    assert not (tmp_path / "out" / "short.npy").exists()


def test_existing_features_are_skipped(tmp_path, weights):
    video = write_video(tmp_path / "v.mp4", 20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "v.npy").write_bytes(b"a previous run's file")  # an existing file is whole (written atomically)
    assert extract_videos([video], out, *weights, progress=False, recipe=TINY) == [out / "v.npy"]
    assert (out / "v.npy").read_bytes() == b"a previous run's file"


@pytest.mark.slow  # ~15 s on a loaded 2-core CPU: a second interpreter, and 100 frames of TV-L1
def test_killed_extraction_resumes_without_redoing_or_reading_partial_files(tmp_path, weights):
    videos = [write_video(tmp_path / f"v{i}.mp4", n) for i, n in enumerate((20, 40, 40))]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rsnet.extract", *map(str, videos), "--out", str(out), "--rgb-weights",
               str(weights[0]), "--flow-weights", str(weights[1]), "--crop", "32", "--device", "cpu",
               "--batch", "1", "--jobs", "1", "--quiet"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "v0.npy").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "v0.npy").exists(), proc.stderr.read().decode()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert len(finished) < 3, "the run ended before the kill: make the later videos longer"
    for name in finished:  # whatever the kill left under a .npy name is whole
        assert np.load(out / name).shape[1] == 2048
    (out / "v1.npy.abc123.tmp").write_bytes(b"\x93NUMPY torn")  # what a kill inside a write leaves

    assert main([*map(str, videos), "--out", str(out), "--rgb-weights", str(weights[0]), "--flow-weights",
                 str(weights[1]), "--crop", "32", "--device", "cpu", "--quiet"]) == 0
    assert {p.name for p in out.glob("*.npy")} == {"v0.npy", "v1.npy", "v2.npy"}
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    assert np.load(out / "v1.npy").shape == (int(expected_length(1.6, 25 / 16)[0]), 2048)


# -- the command ----------------------------------------------------------------------------------

def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_corrupt_file_is_named_in_one_error_line_after_the_others(tmp_path, weights, capsys):
    good = write_video(tmp_path / "good.mp4", 20)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(2048))
    code, out, err = run_cli(capsys, str(corrupt), str(good), "--out", str(tmp_path / "f"), "--rgb-weights",
                             str(weights[0]), "--flow-weights", str(weights[1]), "--crop", "32", "--quiet")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: 1 of 2 videos failed") and str(corrupt) in err
    assert np.load(tmp_path / "f" / "good.npy").shape == (1, 2048)


def test_cli_summary_line_names_the_stages(tmp_path, weights, capsys):
    good = write_video(tmp_path / "good.mp4", 20)
    code, _, err = run_cli(capsys, str(tmp_path), "--out", str(tmp_path / "f"), "--rgb-weights", str(weights[0]),
                           "--flow-weights", str(weights[1]), "--crop", "32")
    assert code == 0 and good.exists()
    summary = [line for line in err.splitlines() if line.startswith("extract: ")]
    assert len(summary) == 1 and "1 videos (1 extracted, 0 already there, 0 failed), 1 snippets" in summary[0]
    for stage in ("decode", "resize/crop", "flow", "i3d rgb", "i3d flow", "write", "slowest"):
        assert stage in summary[0]


@pytest.mark.parametrize("case, message", [
    ("missing video", "no such video file or folder"),
    ("missing weights", "--rgb-weights .*not found"),
    ("wrong key", "missing: Conv3d_1a_7x7.conv3d.weight; unexpected: Conv3d_1a.conv3d.weight"),
    ("same name", "would both write v.npy"),
    ("out is a file", "is a file, not a folder"),
    ("bad batch", "--batch must be at least 1"),
])
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, weights, capsys, case, message):
    video = write_video(tmp_path / "v.mp4", 20)
    rgb, flow = weights
    videos, out, batch = [str(video)], tmp_path / "f", "8"
    if case == "missing video":
        videos.append(str(tmp_path / "nope.mp4"))
    elif case == "missing weights":
        rgb = tmp_path / "nope.pt"
    elif case == "wrong key":
        state = random_state(3)
        state["Conv3d_1a.conv3d.weight"] = state.pop("Conv3d_1a_7x7.conv3d.weight")
        rgb = tmp_path / "renamed.pt"
        torch.save(state, rgb)
    elif case == "same name":
        (tmp_path / "other").mkdir()
        videos.append(str(write_video(tmp_path / "other" / "v.mkv", 20)))
    elif case == "out is a file":
        out.write_text("")
    else:
        batch = "0"
    code, stdout, err = run_cli(capsys, *videos, "--out", str(out), "--rgb-weights", str(rgb), "--flow-weights",
                                str(flow), "--crop", "32", "--batch", batch, "--quiet")
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err


def test_cli_without_the_extract_extra_names_the_command_to_run(tmp_path, weights, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now fails as if not installed
    code, _, err = run_cli(capsys, str(tmp_path), "--out", str(tmp_path / "f"), "--rgb-weights", str(weights[0]),
                           "--flow-weights", str(weights[1]))
    assert code == 2
    assert err == 'error: python -m rsnet.extract needs the [extract] extra (av missing): run pip install -e ".[extract]"\n'


def test_library_refuses_bad_arguments_before_any_work(tmp_path, weights):
    video = write_video(tmp_path / "v.mp4", 20)
    with pytest.raises(UserError, match="--flow 'farneback'"):
        extract_videos([video], tmp_path / "f", *weights, flow="farneback", progress=False, recipe=TINY)
    with pytest.raises(UserError, match="--device 'gpu0'"):
        extract_videos([video], tmp_path / "f", *weights, device="gpu0", progress=False, recipe=TINY)
    assert not (tmp_path / "f").exists()


@pytest.mark.slow  # a second interpreter
def test_importing_the_package_loads_none_of_the_extra():
    blocked = ("av", "cv2", "torchvision")
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None  # any import of them fails\n"
            "import rsnet.extract, rsnet.extract.__main__\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


@pytest.mark.slow  # ~15 s on a 2-core CPU: RAFT on 16 frame pairs
def test_raft_flow_through_the_pipeline(tmp_path, weights):
    from rsnet.extract.flow import import_raft_models

    torch.manual_seed(0)
    torch.save(import_raft_models().raft_small(weights=None).state_dict(), tmp_path / "raft_small.pt")
    video = write_video(tmp_path / "v.mp4", 17)
    [path] = extract_videos([video], tmp_path / "f", *weights, flow="raft_small", device="auto", batch=4,
                            progress=False, raft_weights=tmp_path / "raft_small.pt", recipe=TINY)
    features = np.load(path)
    assert features.shape == (1, 2048) and np.isfinite(features).all()
