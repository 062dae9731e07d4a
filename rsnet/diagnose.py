"""``python -m rsnet.diagnose --checkpoint OUT/checkpoint.pt``: what a trained RSKP model's branches do.

Prints, on the run's test split:
- how peaked the EM assignments are (the mean largest assignment per snippet against 1/K, and
  their normalized entropy): near-uniform assignments mean the K representatives collapse toward
  the video mean and the random walk only smooths toward it;
- the mean cosine similarity of a video's embedded snippets to each other and to its representatives;
- the detection mAP when scoring with the main branch alone, the paper's fusion, and the
  intra-video branch alone (the CAS is always weighted by the main branch's attention), and, when
  the class-wise memory bank holds snippets, with the inter-video branch on the predicted classes'
  snippets (``--branches all`` of ``rsnet.infer``, docs/design.md "Inference"); a run with the
  video-wise bank (``--bank video``), which holds training videos' entries and no class's, has a
  note in place of that row.
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

from rs_kernels import reference
from rs_kernels.varlen import split

from . import cli
from .data.dataset import VideoDataset
from .errors import UserError
from .model import RSKP, check_branches
from .trained import Trained, add_arguments, dataset_of, evaluate_videos, json_data, load


@torch.no_grad()
def assignment_statistics(model: RSKP, dataset: VideoDataset, device: torch.device) -> dict[str, float]:
    model, cfg = model.eval(), model.cfg
    largest, entropy, snippet_cos, representative_cos = [], [], [], []
    for batch in dataset.test_batches(cfg.test_batch_size):
        batch = batch.to(device)
        online = model.summarize(model.embed(batch.x), batch.varlen)  # the variant's representatives
        for xb, mb in zip(split(online.walk_input, batch.varlen), online.mu):
            z = reference.assignments(xb, mb, cfg.tau)  # (K, T)
            largest.append(z.max(0).values.mean())
            entropy.append((-(z * z.clamp_min(1e-12).log()).sum(0) / math.log(z.shape[0])).mean())
            nx = reference.l2_normalize(xb)
            snippet_cos.append((nx @ nx.T).mean())
            representative_cos.append((reference.l2_normalize(mb) @ nx.T).mean())
    mean = lambda values: torch.stack(values).mean().item()  # noqa: E731
    return {"largest_assignment": mean(largest), "uniform_assignment": 1 / cfg.n_representatives,
            "normalized_entropy": mean(entropy), "snippet_cosine": mean(snippet_cos),
            "representative_cosine": mean(representative_cos)}


def all_branches_refused(trained: Trained) -> str | None:
    """Why ``--branches all`` cannot score this run (``rsnet.model.check_branches``), or None."""
    try:
        check_branches(trained.model, trained.bank, "all")
    except UserError as why:
        return str(why)
    return None


def branch_maps(trained: Trained, dataset: VideoDataset, all_branches: bool) -> dict[str, float]:
    """Average detection mAP with each fusion of the main (o) and intra-video (m) branches, and, with
    ``all_branches`` (where ``all_branches_refused`` finds nothing), with the inter-video branch's
    second round added (``--branches all``): every one under the run's protocol, lenient rule and
    IoUs (``rsnet.trained.evaluate_videos``)."""
    cfg = trained.config
    fusions = {"main only": (1.0, 0.0), "fused (paper)": (cfg.fuse_main, cfg.fuse_intra), "intra only": (0.0, 1.0)}
    score = lambda branches, fusion=None: evaluate_videos(trained.model, trained.bank, dataset, cfg,  # noqa: E731
                                                          trained.device, branches=branches, fusion=fusion).avg
    out = {name: score("intra", fusion) for name, fusion in fusions.items()}
    if all_branches:
        out["all branches"] = score("all")
    return out


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.diagnose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    trained = load(args.checkpoint, args.device, args.data_root, args.checkpoint_format, data=json_data(args))
    cfg = trained.config
    if not cfg.intra:
        raise UserError(f"{args.checkpoint}: the run has no intra-video branch (--no-intra): nothing to diagnose")
    dataset = dataset_of(trained)
    stats = assignment_statistics(trained.model, dataset, trained.device)
    print(f"EM assignments (K = {cfg.n_representatives}, tau = {cfg.tau}): mean largest "
          f"{stats['largest_assignment']:.3f} (uniform {stats['uniform_assignment']:.3f}), "
          f"normalized entropy {stats['normalized_entropy']:.3f} (uniform 1.000)")
    print(f"cosine similarity: snippet-snippet {stats['snippet_cosine']:.3f}, "
          f"representative-snippet {stats['representative_cosine']:.3f} (within a video, mean)")
    refused = all_branches_refused(trained)
    for name, avg in branch_maps(trained, dataset, all_branches=refused is None).items():
        print(f"average mAP, {name:<14} {avg:.1f}")
    if refused is not None:
        print(f"average mAP, all branches: not scored: {refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
