"""Optical flow between consecutive frames, in pixels, for the I3D flow stream.

- ``tvl1``: TV-L1 (Zach, Pock & Bischof 2007), OpenCV's ``cv2.optflow.DualTVL1OpticalFlow_create``
  with its default parameters, on grayscale frames: the algorithm the I3D flow stream was trained
  on and the published THUMOS14 / ActivityNet features were extracted with. CPU only; pairs run
  on ``jobs`` threads (OpenCV releases the GIL).
- ``raft`` / ``raft_small``: torchvision's RAFT (Teed & Deng 2020), on any device, in batches.
  Faster on a GPU, but not the flow the I3D flow weights or a model trained on TV-L1 features saw:
  a model trained on TV-L1 features expects TV-L1 at inference.

Both map frames (N + 1, H, W, 3) uint8 RGB to flows (N, H, W, 2) float32, (dx, dy) from frame i to
frame i + 1; ``to_i3d_input`` then clips and scales them as the I3D flow stream expects.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rsnet.errors import UserError

from .i3d import check_state, load_state

FLOW_BOUND = 20.0  # pixels: the Kinetics recipe truncates flow to [-20, 20], then scales to [-1, 1]
FLOW_METHODS = ("tvl1", "raft", "raft_small")


def to_i3d_input(flow: np.ndarray) -> np.ndarray:
    """Flow in pixels (..., 2) clipped to [-20, 20] and scaled to [-1, 1], float32."""
    return (np.clip(flow, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND).astype(np.float32)


class TVL1:
    """TV-L1 flow of consecutive frames, one OpenCV solver per thread (a solver keeps state)."""

    def __init__(self, jobs: int | None = None):
        import cv2

        if not hasattr(cv2, "optflow"):
            raise UserError("--flow tvl1 needs OpenCV's contrib modules (cv2.optflow), which opencv-python lacks: "
                            'pip uninstall opencv-python opencv-python-headless, then pip install -e ".[extract]"')
        self._cv2 = cv2
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(jobs or os.cpu_count() or 1, thread_name_prefix="tvl1")

    def _pair(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        solver = getattr(self._local, "solver", None)
        if solver is None:
            solver = self._local.solver = self._cv2.optflow.DualTVL1OpticalFlow_create()
        return solver.calc(previous, current, None)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N + 1, H, W, 3) uint8 RGB -> (N, H, W, 2) float32 pixels."""
        gray = [self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2GRAY) for frame in frames]
        return np.stack(list(self._pool.map(self._pair, gray[:-1], gray[1:])))

    def close(self) -> None:
        self._pool.shutdown()


_TORCHVISION_STUBS: list = []  # the op library declared below lives as long as this module


def _compiled_ops_load(package: Path) -> bool:
    library = next(package.glob("_C*.so"), None)
    try:
        torch.ops.load_library(library)
    except (OSError, TypeError):  # TypeError: no compiled library at all
        return False
    return True


def import_raft_models():
    """torchvision's RAFT module.

    torchvision's PyPI wheels are CUDA builds: beside a CPU-only torch their compiled ops (detection
    ops such as nms, which RAFT does not use) fail to load, and torchvision 0.28 then fails at import,
    registering a fake kernel for ``torchvision::nms``. Where that happens the two ops it registers
    unconditionally are declared (never implemented) first, so that RAFT, plain PyTorch, imports.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise ImportError("No module named 'torchvision'")
    if ("torchvision" not in sys.modules and not _TORCHVISION_STUBS
            and not _compiled_ops_load(Path(spec.origin).parent) and not hasattr(torch.ops.torchvision, "nms")):
        stubs = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            stubs.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_STUBS.append(stubs)
    from torchvision.models import optical_flow

    return optical_flow


def raft_weights_file(method: str, weights: Path | None) -> Path:
    """``weights``, or torchvision's own file of the RAFT weights in its download cache (never
    downloaded here); a UserError saying where to put it when neither exists."""
    if weights is not None:
        return Path(weights)
    optical_flow = import_raft_models()
    enum = optical_flow.Raft_Large_Weights if method == "raft" else optical_flow.Raft_Small_Weights
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.DEFAULT.url).name
    if not cached.is_file():
        raise UserError(f"--flow {method}: no RAFT weights: give --raft-weights FILE, or place torchvision's "
                        f"{cached.name} at {cached}")
    return cached


class RAFT:
    """torchvision's RAFT (``raft`` = raft_large, ``raft_small``) with the weights of ``weights``
    (a state dict; default: torchvision's cached file), ``batch`` pairs at a time on ``device``."""

    MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps (1/8 of the frame) of >= 16

    def __init__(self, method: str, weights: Path | None, device: torch.device, batch: int = 8):
        optical_flow = import_raft_models()
        path = raft_weights_file(method, weights)
        self.model = (optical_flow.raft_large if method == "raft" else optical_flow.raft_small)(weights=None)
        state = load_state(path, "--raft-weights")
        check_state(self.model, state, path, f"torchvision {method} weights")
        self.model.load_state_dict(state)
        self.model.eval().to(device)
        self.device, self.batch = device, batch

    def _padded(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1], edge-padded to multiples of 8 and at least MIN_SIDE."""
        height, width = frames.shape[-2:]
        pad_h = max(-(-height // 8) * 8, self.MIN_SIDE) - height
        pad_w = max(-(-width // 8) * 8, self.MIN_SIDE) - width
        return torch.nn.functional.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N + 1, H, W, 3) uint8 RGB -> (N, H, W, 2) float32 pixels."""
        height, width = frames.shape[1:3]
        images = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        images = self._padded(images)
        flows = []
        for start in range(0, len(frames) - 1, self.batch):
            stop = min(start + self.batch, len(frames) - 1)
            flows.append(self.model(images[start:stop], images[start + 1:stop + 1])[-1])  # the last refinement
        return torch.cat(flows)[:, :, :height, :width].permute(0, 2, 3, 1).float().cpu().numpy()

    def close(self) -> None:
        pass


def flow_estimator(method: str, device: torch.device, batch: int, jobs: int | None, raft_weights: Path | None):
    """The ``method`` flow (one of FLOW_METHODS) as a callable frames -> flows with ``close()``."""
    return TVL1(jobs) if method == "tvl1" else RAFT(method, raft_weights, device, batch)
