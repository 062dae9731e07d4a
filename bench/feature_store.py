"""Loading a dataset's features: the W-TALC pickle against the packed store, same process, same data.

    python -m bench.feature_store [--root ROOT --dataset NAME] [--preset default] [--repeats 3]

With ``--root`` it measures ROOT/<dataset>/ (converting it to a store first if it has none);
without, a synthetic dataset of ``--preset`` generated in a temporary folder. For each format:
the load time (``WTALCDataset``'s feature read: unpickling, or mapping and checking the store),
the time to then read every video once (what an epoch does), and the peak memory the load
allocates (``tracemalloc``: numpy's allocations; the store's pages are the OS page cache, not
counted). Best of ``--repeats``; the ratios pickle / store. Run twice in a row, the second figures
have the files in the page cache.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from rsnet.data import annotation_folder, load_annotations
from rsnet.data.convert import convert
from rsnet.data.dataset import load_features
from rsnet.data.feature_store import load_store, store_of
from rsnet.datasets import FEATURE_DIM, features_file


def _measure(load, repeats: int) -> dict[str, float]:
    best = {"load_s": float("inf"), "read_s": float("inf"), "peak_mb": float("inf")}
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        videos = load()
        loaded = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        total = sum(float(v.sum(dtype=np.float64)) for v in videos)  # every value read once
        read = time.perf_counter()
        assert np.isfinite(total)
        best = {"load_s": min(best["load_s"], loaded - start), "read_s": min(best["read_s"], read - loaded),
                "peak_mb": min(best["peak_mb"], peak / 1e6)}
        del videos
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="a W-TALC loader root (default: a generated synthetic dataset)")
    parser.add_argument("--dataset", default="Thumos14reduced")
    parser.add_argument("--preset", default="default", help="the synthetic preset generated without --root")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root, dataset = args.root, args.dataset
        if root is None:
            from rsnet.synthetic import PRESETS, generate

            dataset = PRESETS[args.preset].spec.dataset
            root = generate(Path(scratch), args.preset)
        source = root / dataset / features_file(dataset)
        n_videos = len(load_annotations(annotation_folder(root / dataset, dataset)))
        if load_store(source, n_videos, FEATURE_DIM) is None:
            convert(root, dataset)
        store = _measure(lambda: load_store(source, n_videos, FEATURE_DIM), args.repeats)
        pickle = _measure(lambda: load_features(source, n_videos, FEATURE_DIM), args.repeats)
        size_gb = (store_of(source) / "features.npy").stat().st_size / 1e9
    print(f"{dataset}: {n_videos} videos, {size_gb:.2f} GB of float32 features; "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}, best of {args.repeats}")
    print("| format | load s | read every video s | peak allocated MB |")
    print("|---|---|---|---|")
    for name, m in (("W-TALC pickle", pickle), ("packed store", store)):
        print(f"| {name} | {m['load_s']:.3f} | {m['read_s']:.3f} | {m['peak_mb']:.1f} |")
    print(f"| pickle / store | {pickle['load_s'] / store['load_s']:.1f}x | {pickle['read_s'] / store['read_s']:.2f}x | "
          f"{pickle['peak_mb'] / max(store['peak_mb'], 1e-3):.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
