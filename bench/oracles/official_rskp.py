"""The published code's way of training, written from docs/design.md ('Model', 'Losses', 'Training
schedule'): one video at a time, eager, einsum over a batch dimension of 1, a dense T x T solve
for the random walk, and the memory bank read per class. It shares the parameters of an ``RSKP``
model but none of its code, so it is the oracle of the parity tests (a step: ``step_loss``; the
whole loop with its bank: ``train_epochs``) and the baseline of the speed benchmarks.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rsnet.config import Config
from rsnet.model import RSKP


def _l2n(v: Tensor) -> Tensor:
    return v / (torch.norm(v, p=2, dim=-1, keepdim=True) + 1e-9)


def prediction_module(model: RSKP, x: Tensor):
    """x (1, T, D) -> (p_ca (1, C+1), p_cw (1, C+1), attention (1, T), logits (1, T, C+1))."""
    s = model.cfg.scale
    nx, nac, nfg = _l2n(x), _l2n(model.head.class_centres), _l2n(model.head.fg_centre)
    frm_scrs = torch.einsum("ntd,cd->ntc", nx, nac) * s
    ca_att = torch.sigmoid(torch.einsum("ntd,kd->ntk", nx, nfg).squeeze(-1) * s)
    cw_att = torch.sigmoid(frm_scrs)
    ca_norm = ca_att / (ca_att.sum(dim=1, keepdim=True) + 1e-5)
    cw_norm = cw_att / (cw_att.sum(dim=1, keepdim=True) + 1e-5)
    ca_feat = torch.einsum("ntd,nt->nd", x, ca_norm)
    p_ca = F.softmax(torch.einsum("nd,cd->nc", _l2n(ca_feat), nac) * s, dim=-1)
    cw_feat = torch.einsum("ntd,ntc->ncd", x, cw_norm)
    p_cw = F.softmax(torch.einsum("ncd,cd->nc", _l2n(cw_feat), nac) * s, dim=-1)
    return p_ca, p_cw, ca_att, frm_scrs


def em(mu: Tensor, x: Tensor, iters: int, tau: float) -> Tensor:
    norm_x = _l2n(x)
    for _ in range(iters):
        z = F.softmax(torch.einsum("nkd,ntd->nkt", _l2n(mu), norm_x) * tau, dim=1)
        mu = torch.einsum("nkt,ntd->nkd", z / (z.sum(dim=-1, keepdim=True) + 1e-9), x)
    return mu


def random_walk(x: Tensor, y: Tensor, w: float, tau: float) -> Tensor:
    z = F.softmax(torch.einsum("nkd,ntd->nkt", _l2n(y), _l2n(x)) * tau, dim=1)
    norm_z = z / (z.sum(dim=-1, keepdim=True) + 1e-9)
    affinity = torch.einsum("nkt,nks->nts", z, norm_z)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    inverse = torch.linalg.solve(eye - w**2 * affinity, eye.expand_as(affinity))
    return (1 - w) * torch.einsum("nts,nsd->ntd", inverse, w * torch.einsum("nkt,nkd->ntd", z, y) + x)


def _nce(p: Tensor, label: Tensor) -> Tensor:
    return -torch.mean(torch.sum(label / (label.sum(dim=1, keepdim=True) + 1e-8) * torch.log(p), dim=1))


def read_memory(bank: Tensor, count: Tensor, label: Tensor) -> Tensor:
    """The bank's filled snippets of the video's classes, class by class."""
    return torch.cat([bank[c, : int(count[c])] for c in range(label.numel()) if label[c] > 0])


def video_loss(model: RSKP, x_in: Tensor, label: Tensor, memory: Tensor | None, after_warmup: bool):
    """One video's loss (and its mu, p_mu), as the official training loop computes it."""
    cfg: Config = model.cfg
    x = model.dropout(F.relu(model.embedding(x_in)))[None]
    fg = torch.cat([label, label.new_zeros(1)])[None]
    bg = torch.cat([label, label.new_ones(1)])[None]
    mu = em(model.mu0[None], x, cfg.em_iters, cfg.tau)
    o = prediction_module(model, x)
    m = prediction_module(model, random_walk(x, mu, cfg.walk_weight, cfg.tau))
    fore = _nce(o[0], fg) + _nce(m[0], fg)
    back = _nce(o[1], bg) + _nce(m[1], bg)
    target = m[3]
    if memory is not None:
        r = prediction_module(model, random_walk(x, memory[None], cfg.walk_weight, cfg.tau))
        fore = fore + cfg.inter_weight * _nce(r[0], fg)
        back = back + cfg.inter_weight * _nce(r[1], bg)
        target = (1 - cfg.pseudo_inter_mix) * m[3] + cfg.pseudo_inter_mix * r[3]
    k = max(x.shape[1] // 8, 1)
    att = torch.topk(o[2], k, largest=False)[0].mean() - torch.topk(o[2], k)[0].mean()
    q = F.softmax(target.detach() / cfg.spl_temperature, dim=-1)
    spl = -(q * F.log_softmax(o[3] / cfg.spl_temperature, dim=-1)).sum(-1).mean()
    spl_weight = cfg.spl_weight_after_warmup if after_warmup else cfg.spl_weight
    loss = fore + cfg.back_weight * back + cfg.att_weight * att + spl_weight * spl
    return loss, mu[0], _mu_scores(model, mu)[0]


def _mu_scores(model: RSKP, mu: Tensor) -> Tensor:
    """(1, K, C+1) class probabilities of the representatives: the memory bank's scores."""
    return F.softmax(torch.einsum("nkd,cd->nkc", _l2n(mu), _l2n(model.head.class_centres)) * model.cfg.scale, dim=-1)


def step_loss(model: RSKP, videos: list[Tensor], labels: Tensor, bank=None, after_warmup: bool = False) -> Tensor:
    """The summed loss of a step's videos; bank = (rows (C, S, D), count (C,)) enables the inter branch."""
    total = 0.0
    for x_in, label in zip(videos, labels):
        memory = read_memory(*bank, label) if bank is not None else None
        total = total + video_loss(model, x_in, label, memory, after_warmup)[0]
    return total


@torch.no_grad()
def predict_video(model: RSKP, x_in: Tensor) -> tuple[Tensor, Tensor]:
    """One test video's scores (C+1,) and CAS (T, C+1): the inference fusion, the official way."""
    cfg: Config = model.cfg
    x = model.dropout(F.relu(model.embedding(x_in)))[None]
    o = prediction_module(model, x)
    mu = em(model.mu0[None], x, cfg.em_iters, cfg.tau)
    m = prediction_module(model, random_walk(x, mu, cfg.walk_weight, cfg.tau))
    scores = cfg.fuse_main * o[0] + cfg.fuse_intra * m[0]
    cas = (cfg.fuse_main * F.softmax(o[3], -1) + cfg.fuse_intra * F.softmax(m[3], -1)) * o[2][..., None]
    return scores[0], cas[0]


def read_queue(rows: Tensor, label: Tensor) -> Tensor:
    """All S slots of each of the video's classes, unfilled (zero) ones included, class by class."""
    return torch.cat([rows[c] for c in range(label.numel()) if label[c] > 0])


@torch.no_grad()
def update_queue(rows: Tensor, scores: Tensor, mu: Tensor, p_mu: Tensor, label: Tensor) -> None:
    """Per class of the video: its S slots and the video's K representatives sorted by score, the S best kept."""
    for c in range(label.numel()):
        if label[c] > 0:
            pool, pool_scores = torch.cat([rows[c], mu]), torch.cat([scores[c], p_mu[:, c]])
            best = torch.sort(pool_scores, descending=True).indices[: rows.shape[1]]
            rows[c], scores[c] = pool[best], pool_scores[best]


def train_epochs(model: RSKP, optimizer: torch.optim.Optimizer, features: Sequence[Tensor], labels: Tensor,
                 orders: Sequence[Sequence[int]], fill_order: Sequence[int]) -> Iterator[tuple[Tensor, Tensor]]:
    """The published training loop, one epoch per order in ``orders`` (video ids into ``features``
    and ``labels`` (V, C)); yields its bank (rows (C, S, D), scores (C, S)) after each epoch.

    A global video counter: every video's loss is backpropagated at once (gradients accumulate)
    and the optimizer steps after every ``videos_per_step``-th video of the run, whatever the epoch.
    After warm-up a video reads all slots of its classes, then inserts its representatives. At the
    end of epoch ``warmup_epochs`` the bank is filled in eval mode from every video of
    ``fill_order`` and lambda_s switches to its after-warm-up value.
    """
    cfg: Config = model.cfg
    n_classes = labels.shape[1]
    rows = features[0].new_zeros(n_classes, cfg.bank_slots, cfg.embed_dim)
    scores = features[0].new_zeros(n_classes, cfg.bank_slots)
    seen, lambda_s_switched = 0, False
    for epoch, order in enumerate(orders):
        model.train()
        for v in order:
            seen += 1
            inter = epoch > cfg.warmup_epochs
            memory = read_queue(rows, labels[v]) if inter else None
            loss, mu, p_mu = video_loss(model, features[v], labels[v], memory, lambda_s_switched)
            if inter:
                update_queue(rows, scores, mu, p_mu[:, :n_classes], labels[v])
            loss.backward()
            if seen % cfg.videos_per_step == 0:
                optimizer.step()
                optimizer.zero_grad()
        if epoch == cfg.warmup_epochs:
            model.eval()
            with torch.no_grad():
                for v in fill_order:
                    x = model.dropout(F.relu(model.embedding(features[v])))[None]
                    mu = em(model.mu0[None], x, cfg.em_iters, cfg.tau)
                    update_queue(rows, scores, mu[0], _mu_scores(model, mu)[0, :, :n_classes], labels[v])
            model.train()
            lambda_s_switched = True
        yield rows, scores
