"""Inference: a trained model's video scores and class activation sequences (CAS), its branches
fused by one rule (docs/design.md, "Inference").

Every path that scores videos (a training run's evaluations, ``rsnet.infer``, ``rsnet.diagnose``,
``rsnet.plot``) calls ``predict_packed`` or ``predict_batches``: the fusion weights are an argument
(default: the model's config), never a config rewritten for the occasion.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rs_kernels.varlen import Varlen

from ..errors import UserError
from ..protocols import CLASS_THRESHOLD
from .banks import MemoryBank
from .head import Prediction
from .rskp import RSKP

BRANCHES = ("main", "intra", "all")  # which branches score a video: o; o and m (the paper); o, m and r
Fusion = tuple[float, float]  # the weights of the main and the intra-video branch


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


@torch.no_grad()
def predict_packed(model: RSKP, x: Tensor, varlen: Varlen, branches: str = "intra", bank: MemoryBank | None = None,
                   fusion: Fusion | None = None) -> tuple[Tensor, Tensor]:
    """Video scores (B, C+1) and CAS (N, C+1) of packed snippets from the branches named: "main" o
    alone; "intra" o and m weighted by ``fusion`` (default the config's ``fuse_main``,
    ``fuse_intra``: the paper's); "all" two rounds: o and m predict the classes, whose rows of
    ``bank`` feed the inter-video branch r. A model without an intra-video branch scores by o.
    The class-wise pooling (p_cw), which training's losses need and scoring does not, is left out."""
    cfg = model.cfg
    main_weight, intra_weight = fusion or (cfg.fuse_main, cfg.fuse_intra)
    if branches == "main":
        main = model.head(model.embed(x), varlen, cfg.ops, class_wise=False)
        return fused([(1.0, main)], main.attention)
    out = model(x, varlen, class_wise=False)
    if out.intra is None:
        return fused([(1.0, out.main)], out.main.attention)
    first_round = fused([(main_weight, out.main), (intra_weight, out.intra)], out.main.attention)
    if branches == "intra":
        return first_round
    memory = bank.read(predicted_classes(first_round[0], bank.count > 0))
    inter = model.head(model.propagate(model.embed(x), varlen, *memory), varlen, cfg.ops, class_wise=False)
    weights = (main_weight, intra_weight * (1 - cfg.pseudo_inter_mix), intra_weight * cfg.pseudo_inter_mix)
    return fused(list(zip(weights, (out.main, out.intra, inter))), out.main.attention)


@torch.no_grad()
def predict_batches(model: RSKP, batches, device: torch.device, branches: str = "intra",
                    bank: MemoryBank | None = None, fusion: Fusion | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(video scores (V, C+1), CAS per video (T_i, C+1)) of the videos of packed ``batches`` (objects
    with ``x``, ``varlen`` and ``to(device)``), in order, scored by ``predict_packed``."""
    check_branches(model, bank, branches)
    was_training = model.training
    model.eval()
    scores, cas, lengths = [], [], []
    for batch in batches:
        batch = batch.to(device)
        video_scores, snippet_cas = predict_packed(model, batch.x, batch.varlen, branches, bank, fusion)
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
