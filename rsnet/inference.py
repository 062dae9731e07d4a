"""Batched inference over a split: video scores and class activation sequences.

``python -m rsnet.inference --checkpoint OUT/checkpoint.pt --out P.npz`` writes the predictions
of a trained run for its test split, in annotation order, in the layout ``python -m
rsnet.evaluate --predictions P.npz`` reads: ``vid_preds`` (V, C+1), ``frm_preds`` (an object
array of (T_i, C+1) class activation sequences) and ``vid_lens`` (V,).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli
from .checkpoint import add_checkpoint_arguments
from .data import WTALCDataset
from .errors import UserError
from .model import RSKP


@torch.no_grad()
def predict_split(model: RSKP, dataset: WTALCDataset, device: torch.device, batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) for the test split, in annotation order."""
    return predict_batches(model, dataset.test_batches(batch_size), device)


@torch.no_grad()
def predict_batches(model: RSKP, batches, device: torch.device) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) of the videos of packed ``batches``, in order."""
    was_training = model.training
    model.eval()
    scores, cas, lengths = [], [], []
    for batch in batches:
        batch = batch.to(device)
        video_scores, snippet_cas = model.predict(batch.x, batch.varlen)
        scores.append(video_scores.float())
        cas.append(snippet_cas.float())
        lengths.extend(batch.varlen.lengths)
    model.train(was_training)
    # One copy back for the whole split: one per video would wait on the GPU once per video.
    all_cas = torch.cat(cas).cpu().numpy()
    return torch.cat(scores).cpu().numpy(), np.split(all_cas, np.cumsum(lengths)[:-1])


def save_predictions(path: Path, scores: np.ndarray, cas: list[np.ndarray]) -> None:
    frames = np.empty(len(cas), dtype=object)
    frames[:] = cas
    np.savez(path, vid_preds=scores, frm_preds=frames, vid_lens=np.array([len(c) for c in cas], dtype=np.int64))


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="the predictions file to write (.npz)")
    parser.add_argument("--device", default="cpu")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.out.suffix != ".npz":
        raise UserError(f"--out {args.out} must end in .npz (numpy would add the suffix itself)")
    from .train import restore  # rsnet.train imports this module

    trainer = restore(args.checkpoint, args.device, args.data_root, args.checkpoint_format)
    scores, cas = predict_split(trainer.model, trainer.dataset, trainer.device, trainer.cfg.test_batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_predictions(args.out, scores, cas)
    lenient = " --lenient" if trainer.cfg.lenient else ""  # as the run scored itself
    print(f"{args.out}: predictions for the {len(cas)} test videos of {args.checkpoint}; score them with "
          f"python -m rsnet.evaluate --predictions {args.out} "
          f"--annotations {trainer.dataset.annotations.folder}{lenient}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
