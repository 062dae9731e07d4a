"""Memory of the class-wise bank against the video-wise bank of supplementary Table 2 (the paper: about 15x).

    python -m bench.bank_memory

Bytes of each bank's buffers (``rsnet.model.banks.buffer_bytes``), built at the default sizes: D = 2048,
K = 8 representatives per video, S = 5 slots per class, float32 rows; the training-set sizes of
THUMOS14 (200 videos, 20 classes) and ActivityNet1.2 (4,819 videos, 100 classes).
"""
from __future__ import annotations

import numpy as np

from rsnet.config import Config
from rsnet.model import MemoryBank
from rsnet.model.banks import VideoBank, buffer_bytes

TRAINING_SETS = {"THUMOS14": (200, 20), "ActivityNet1.2": (4819, 100)}  # (training videos, classes)


def bank_bytes(videos: int, classes: int, cfg: Config) -> tuple[int, int]:
    """(class-wise, video-wise) bytes of the banks' buffers for a training set of that size."""
    class_wise = MemoryBank(classes, cfg.bank_slots, cfg.embed_dim)
    labels = np.eye(classes)[np.arange(videos) % classes]
    video_wise = VideoBank(np.arange(videos), labels, cfg.n_representatives, cfg.embed_dim, cfg.bank_momentum, cfg.seed)
    return buffer_bytes(class_wise), buffer_bytes(video_wise)


def main() -> None:
    cfg = Config()
    print(f"D = {cfg.embed_dim}, K = {cfg.n_representatives}, S = {cfg.bank_slots}, float32")
    print("| training set | class-wise bank | video-wise bank | ratio |")
    print("|---|---|---|---|")
    for name, (videos, classes) in TRAINING_SETS.items():
        class_wise, video_wise = bank_bytes(videos, classes, cfg)
        print(f"| {name} ({videos:,} videos, {classes} classes) | {class_wise:,} B | {video_wise:,} B | "
              f"{video_wise / class_wise:.1f}x |")


if __name__ == "__main__":
    main()
