"""Small helpers shared by the test modules (tests/ is on sys.path under pytest)."""
import torch


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()
