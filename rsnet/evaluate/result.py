"""A detection evaluation's result: mAP per IoU threshold, their average, the classification mAP.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalResult:
    """Detection mAP (x100) per IoU threshold, their average, and the classification mAP (x100;
    None when scoring a detections file, which has no video scores)."""

    cmap: float | None
    dmap: list[float]
    iou: list[float]
    avg: float
    protocol: str = "rskp"
    classes_without_proposals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "iou": [float(t) for t in self.iou],
            "dmap": [float(d) for d in self.dmap],
            "avg": float(self.avg),
            "cmap": None if self.cmap is None else float(self.cmap),
            "classes_without_proposals": list(self.classes_without_proposals),
        }

    def format_table(self) -> str:
        head = "| protocol | " + " | ".join(f"mAP@{t:g}" for t in self.iou) + " | avg | cmAP |"
        rule = "|" + "---|" * (len(self.iou) + 3)
        cmap = "-" if self.cmap is None else f"{self.cmap:.2f}"
        row = f"| {self.protocol} | " + " | ".join(f"{d:.2f}" for d in self.dmap) + f" | {self.avg:.2f} | {cmap} |"
        return "\n".join([head, rule, row])
