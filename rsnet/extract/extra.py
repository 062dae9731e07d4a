"""The ``[extract]`` extra (PyAV, OpenCV's contrib build, torchvision): present, or one error line
saying the one command that installs it, before any work."""
from __future__ import annotations

import importlib

from rsnet.errors import UserError

from .flow import import_raft_models

INSTALL = 'pip install -e ".[extract]"'


def _installed(module: str) -> bool:
    try:
        import_raft_models() if module == "torchvision" else importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_extra(flow: str, command: str = "python -m rsnet.extract") -> None:
    """A UserError naming the one command to run when a package of the [extract] extra that
    ``command`` needs (with this ``flow``) is missing."""
    needed = {"av": "av", "cv2": "opencv-contrib-python-headless"}
    if flow != "tvl1":
        needed["torchvision"] = "torchvision"
    missing = [package for module, package in needed.items() if not _installed(module)]
    if missing:
        raise UserError(f"{command} needs the [extract] extra ({', '.join(missing)} missing): "
                        f"run {INSTALL}")
