"""Batched inference over a split: video scores and class activation sequences.

``python -m rsnet.inference --checkpoint OUT/checkpoint.pt --out P.npz`` writes the predictions
of a trained run for its test split, in annotation order, in the layout ``python -m
rsnet.evaluate --predictions P.npz`` reads: ``vid_preds`` (V, C+1), ``frm_preds`` (an object
array of (T_i, C+1) class activation sequences) and ``vid_lens`` (V,). ``--checkpoint`` may also
be exported weights or the published RSKP code's ``N.pkl`` (``rsnet.checkpoint.load_trained``);
``--branches main|intra|all`` picks the branches that score a video (docs/design.md, "Inference").
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rs_kernels.varlen import Varlen

from . import cli, outputs
from .checkpoint import add_checkpoint_arguments
from .data import WTALCDataset
from .errors import UserError
from .evaluate import CLASS_THRESHOLD, command_line
from .memory import MemoryBank
from .model import RSKP, Prediction


BRANCHES = ("main", "intra", "all")  # which branches score a video: o; o and m (the paper); o, m and r


@torch.no_grad()
def predict_split(model: RSKP, dataset: WTALCDataset, device: torch.device, batch_size: int, branches: str = "intra",
                  bank: MemoryBank | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) for the test split, in annotation order."""
    return predict_batches(model, dataset.test_batches(batch_size), device, branches, bank)


@torch.no_grad()
def predict_batches(model: RSKP, batches, device: torch.device, branches: str = "intra",
                    bank: MemoryBank | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) of the videos of packed ``batches``, in order,
    scored by ``branches`` (``predict_packed``)."""
    check_branches(model, bank, branches)
    was_training = model.training
    model.eval()
    scores, cas, lengths = [], [], []
    for batch in batches:
        batch = batch.to(device)
        video_scores, snippet_cas = predict_packed(model, batch.x, batch.varlen, branches, bank)
        scores.append(video_scores)
        cas.append(snippet_cas)
        lengths.extend(batch.varlen.lengths)
    model.train(was_training)
    # One copy back for the whole split: one per video would wait on the GPU once per video.
    all_cas = torch.cat(cas).cpu().numpy()
    return torch.cat(scores).cpu().numpy(), np.split(all_cas, np.cumsum(lengths)[:-1])


def check_branches(model: RSKP, bank: MemoryBank | None, branches: str) -> None:
    """A UserError naming why ``branches`` cannot score with this model and bank.

    ``all`` adds the branch of a walk of the whole of X toward the class-wise bank's rows of the
    predicted classes, the inter-video branch of the paper's model (and of ``--representatives
    topk``, whose walks move the whole of X too). Refused, as that branch would be one the model
    never trained: ``--bank video`` (its bank has an entry per training video, no rows by class),
    ``--fusion early`` (no inter-video branch: one walk goes toward the online and the bank's
    representatives together) and ``--representatives foreground|background`` (their walks move
    only that part of X, the rest added back after)."""
    if branches not in BRANCHES:
        raise UserError(f"--branches {branches!r}: expected one of {', '.join(BRANCHES)}")
    if branches != "all":
        return
    cfg = model.cfg
    if not cfg.intra:
        raise UserError("--branches all: the model has no intra-video branch (trained with --no-intra)")
    if cfg.bank != "class":
        raise UserError(f"--branches all needs the class-wise memory bank (it reads the rows of the predicted classes); "
                        f"the model was trained with --bank {cfg.bank}: use --branches intra or main")
    if cfg.fusion != "late":
        raise UserError(f"--branches all adds an inter-video branch, which a model trained with --fusion {cfg.fusion} "
                        f"does not have (one walk toward the online and the bank's representatives joined): "
                        f"use --branches intra or main")
    if cfg.representatives in ("foreground", "background"):
        raise UserError(f"--branches all walks the whole of X toward the bank's rows; a model trained with "
                        f"--representatives {cfg.representatives} walks only that part of X: use --branches intra or main")
    if bank is None or int(bank.count.sum()) == 0:
        raise UserError("--branches all reads the memory bank, and the checkpoint's is empty (the published "
                        "RSKP code's checkpoints carry none): use --branches intra or main")


@torch.no_grad()
def predict_packed(model: RSKP, x: Tensor, varlen: Varlen, branches: str = "intra",
                   bank: MemoryBank | None = None) -> tuple[Tensor, Tensor]:
    """Video scores (B, C+1) and CAS (N, C+1) of packed snippets from the branches named
    (docs/design.md, "Inference"): "main" o alone; "intra" o and m (``RSKP.predict``, the paper);
    "all" two rounds: o and m predict the classes, whose rows of ``bank`` feed the inter-video branch r."""
    if branches == "intra":
        return model.predict(x, varlen)
    if branches == "main":
        main = model.head(model.embed(x), varlen, model.cfg.ops)
        return fused([(1.0, main)], main.attention)
    cfg = model.cfg
    out = model(x, varlen)
    first_round, _ = fused([(cfg.fuse_main, out.main), (cfg.fuse_intra, out.intra)], out.main.attention)
    memory = bank.read(predicted_classes(first_round, bank.count > 0))
    inter = model.head(model.propagate(model.embed(x), varlen, *memory), varlen, cfg.ops)
    weights = (cfg.fuse_main, cfg.fuse_intra * (1 - cfg.pseudo_inter_mix), cfg.fuse_intra * cfg.pseudo_inter_mix)
    return fused(list(zip(weights, (out.main, out.intra, inter))), out.main.attention)


def fused(parts: list[tuple[float, Prediction]], attention: Tensor) -> tuple[Tensor, Tensor]:
    """(sum_i w_i p_ca_i, sum_i w_i softmax(S_i) * a): the branches' video scores and CAS, weighted."""
    scores = sum(weight * part.p_ca for weight, part in parts)
    cas = sum(weight * torch.softmax(part.logits, dim=-1) for weight, part in parts) * attention[:, None]
    return scores, cas


def predicted_classes(scores: Tensor, in_bank: Tensor) -> Tensor:
    """(B, C) bool: per video, the classes of the bank (``in_bank`` (C,)) that the evaluator would
    propose (video score >= its class threshold), and always the best scoring of them."""
    actions = scores[:, :-1].masked_fill(~in_bank, -torch.inf)
    top = torch.zeros_like(actions, dtype=torch.bool).scatter_(1, actions.argmax(1, keepdim=True), True)
    return (actions >= CLASS_THRESHOLD) | top


def add_branches_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--branches", choices=BRANCHES, default="intra",
                        help="main: the main branch alone; intra: main and intra-video (the paper); all: a first "
                             "round predicts the classes, whose memory-bank snippets add the inter-video branch")


def save_predictions(path: Path, scores: np.ndarray, cas: list[np.ndarray]) -> None:
    """The predictions as ``rsnet.evaluate --predictions`` reads them, written atomically."""
    frames = np.empty(len(cas), dtype=object)
    frames[:] = cas
    archive = io.BytesIO()
    np.savez(archive, vid_preds=scores, frm_preds=frames, vid_lens=np.array([len(c) for c in cas], dtype=np.int64))
    outputs.write(path, archive.getvalue())


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="the predictions file to write (.npz)")
    add_branches_argument(parser)
    parser.add_argument("--device", default="cpu")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    outputs.check_out(args.out, ".npz", (args.checkpoint,))
    from .train import restore  # rsnet.train imports this module

    trainer = restore(args.checkpoint, args.device, args.data_root, args.checkpoint_format)
    scores, cas = predict_split(trainer.model, trainer.dataset, trainer.device, trainer.cfg.test_batch_size,
                                args.branches, trainer.bank)
    save_predictions(args.out, scores, cas)
    cfg = trainer.cfg
    print(f"{args.out}: predictions for the {len(cas)} test videos of {args.checkpoint}; score them as the run "
          f"scored itself (the {cfg.protocol} protocol) with")
    print(command_line(["--predictions", args.out], trainer.dataset.annotations.folder, trainer.dataset.info.test_subset,
                       cfg.protocol, cfg.lenient))
    return 0


if __name__ == "__main__":
    sys.exit(main())
