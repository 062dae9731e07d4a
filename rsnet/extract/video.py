"""Decoding a video file into RGB frames at a fixed rate (25 fps), upright, resized and cropped.

PyAV decodes: its wheels bundle FFmpeg (every common container and codec, no system FFmpeg to
install or match) and it hands out each frame's timestamp and display rotation, which the
resampling and the orientation here need. Frames are streamed: a video is never held whole.

Resampling (``Video.frames_at``): output frame k is the frame on screen at k / fps seconds after
the first frame, i.e. the last frame whose timestamp is <= that time, computed in exact fractions
of the stream's time base. This handles variable frame rates (phones, screen captures) as
constant ones: a 30 fps video drops one frame in six, a 20 fps one repeats one in four. The last
frame stays on screen as long as the gap before it, which sets the decoded duration.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from rsnet.errors import DataError


def _av():
    import av  # imported here: the [extract] extra may be absent (rsnet.extract.__main__ says so)

    return av


class Video:
    """A video file opened for decoding; ``DataError`` naming the file if it has no video stream or
    cannot be read. ``duration`` (seconds, from the decoded timestamps) is known once
    ``frames_at`` is exhausted."""

    def __init__(self, path: Path):
        av = _av()
        self.path = path
        try:
            self.container = av.open(str(path))
        except av.FFmpegError as exc:
            raise DataError(f"{path}: not a readable video ({exc})") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(f"{path}: no video stream (an audio-only file?)")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame and slice threads: decoding uses every core
        self.duration: float | None = None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _timed_frames(self) -> Iterator[tuple[Fraction, object]]:
        """(seconds, av.VideoFrame) in decoding order, timestamps strictly increasing (a frame whose
        timestamp does not advance is dropped); frames without one are placed at the stream rate."""
        av = _av()
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        time_base = self.stream.time_base or Fraction(1, 1)
        last = None
        try:
            for index, frame in enumerate(self.container.decode(self.stream)):
                t = frame.pts * time_base if frame.pts is not None else Fraction(index) / rate
                if last is None or t > last:
                    last = t
                    yield t, frame
        except av.FFmpegError as exc:
            raise DataError(f"{self.path}: corrupt video data after {0 if last is None else float(last):.2f} s "
                            f"({exc})") from None

    def frames_at(self, fps: Fraction) -> Iterator[object]:
        """The av.VideoFrame on screen at each 1/fps step from the first frame (a frame repeats when
        the video is slower than fps); sets ``duration`` at the end."""
        fps = Fraction(fps)
        start = shown = shown_t = gap = None
        k = 0
        for t, frame in self._timed_frames():
            if start is None:
                start = t
            else:
                while start + k / fps < t:
                    yield shown
                    k += 1
                gap = t - shown_t
            shown, shown_t = frame, t
        if start is None:
            raise DataError(f"{self.path}: no frame could be decoded")
        end = shown_t + (gap if gap is not None else 1 / Fraction(self.stream.average_rate or fps))
        while start + k / fps < end:
            yield shown
            k += 1
        self.duration = float(end - start)


def upright_rgb(frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an av.VideoFrame, turned as its display rotation says (phones store
    portrait video as landscape frames plus a rotation)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise, as FFmpeg's display matrix
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """``image`` (H, W, C) resized bilinearly, aspect kept, so that min(H, W) == short_side."""
    import cv2

    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))  # cv2 takes (W, H)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of ``images`` (..., H, W, C)."""
    height, width = images.shape[-3:-1]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top:top + size, left:left + size, :]
