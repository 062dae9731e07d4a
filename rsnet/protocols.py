"""The evaluation protocols' names and thresholds, shared by the evaluator, the config and the model.

A leaf (no torch, no rsnet import): ``rsnet.config`` checks a run's ``protocol`` against it,
``rsnet.evaluate`` scores under it, and inference proposes the classes it would score.
"""
from __future__ import annotations

CLASS_THRESHOLD = 0.1  # a video proposes the classes it scores at least this (rsnet.evaluate, inference's inter branch)
DEFAULT_IOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # literals, as the official list (not an arange)
ACTIVITYNET_IOUS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # ActivityNet's 0.5:0.05:0.95
# The thresholds a training run reports under each protocol (its config's ``protocol``): the
# benchmark's own. ``rsnet.evaluate.evaluate`` itself defaults to DEFAULT_IOUS under both, for comparability.
PROTOCOL_IOUS = {"rskp": DEFAULT_IOUS, "anet": ACTIVITYNET_IOUS}
PROTOCOLS = tuple(PROTOCOL_IOUS)


def best_class_of(protocol: str, n_classes: int) -> int | None:
    """The proposals' fallback for the protocol: the anet protocol proposes each video's best class
    when no class reaches CLASS_THRESHOLD (``n_classes``: how many columns are actions); the
    official RSKP evaluator does not (None)."""
    return n_classes if protocol == "anet" else None
