"""Batched inference over a split: video scores and class activation sequences."""
from __future__ import annotations

import numpy as np
import torch

from rs_kernels.varlen import split

from .data import WTALCDataset
from .model import RSKP


@torch.no_grad()
def predict_split(model: RSKP, dataset: WTALCDataset, device: torch.device, batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) for the test split, in annotation order."""
    was_training = model.training
    model.eval()
    scores, cas = [], []
    for batch in dataset.test_batches(batch_size):
        batch = batch.to(device)
        video_scores, snippet_cas = model.predict(batch.x, batch.cu_seqlens)
        scores.append(video_scores.float().cpu().numpy())
        cas.extend(c.float().cpu().numpy() for c in split(snippet_cas, batch.cu_seqlens))
    model.train(was_training)
    return np.concatenate(scores), cas
