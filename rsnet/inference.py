"""Batched inference over a split: video scores and class activation sequences."""
from __future__ import annotations

import numpy as np
import torch

from .data import WTALCDataset
from .model import RSKP


@torch.no_grad()
def predict_split(model: RSKP, dataset: WTALCDataset, device: torch.device, batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) for the test split, in annotation order."""
    was_training = model.training
    model.eval()
    scores, cas, lengths = [], [], []
    for batch in dataset.test_batches(batch_size):
        batch = batch.to(device)
        video_scores, snippet_cas = model.predict(batch.x, batch.varlen)
        scores.append(video_scores.float())
        cas.append(snippet_cas.float())
        lengths.extend(batch.varlen.lengths)
    model.train(was_training)
    # One copy back for the whole split: one per video would wait on the GPU once per video.
    all_cas = torch.cat(cas).cpu().numpy()
    return torch.cat(scores).cpu().numpy(), np.split(all_cas, np.cumsum(lengths)[:-1])
