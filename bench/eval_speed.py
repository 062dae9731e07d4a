"""rsnet.evaluate against the official-style loops (bench/oracles/official_eval.py), same process, same input.

    python -m bench.eval_speed [--repeats 20] [--official-repeats 1]

Runs on the test vectors of the shared data folder (the real THUMOS14 test split, 212 videos),
or, when that folder is absent, on random predictions and annotations shaped like them. Prints
the wall time (best of the repeats) and the CPU time of this process for both, the ratio, and the
largest difference of the numbers (dmap, avg, cmap). The machine is shared: CPU time is the
steadier figure when other jobs run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench.oracles.official_eval import official_evaluate
from rsnet.data import Annotations, load_annotations
from rsnet.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _real_inputs():
    ann = load_annotations(SHARED / "Thumos14reduced-Annotations")
    with np.load(SHARED / "eval-vectors" / "preds_a.npz", allow_pickle=True) as z:
        return "THUMOS14 test split, eval-vectors/preds_a.npz", z["vid_preds"], list(z["frm_preds"]), ann, ann.indices("test")


def _random_inputs(seed: int = 0, n_videos: int = 212, n_classes: int = 20):
    """Predictions shaped like the test vectors: T ~ 340 snippets, a few confident classes per video
    whose CAS has bumps across the thresholds 0.001-0.04, THUMOS-like ground truth."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(5.6, 0.6, n_videos).astype(int), 20, 2600)
    segments, labels, cas = [], [], []
    scores = np.full((n_videos, n_classes + 1), 0.01, dtype=np.float32)
    for v in range(n_videos):
        T = lengths[v]
        classes = rng.choice(n_classes, rng.integers(1, 3), replace=False)
        scores[v, classes] = rng.uniform(0.3, 1.0, len(classes))
        scores[v, rng.integers(n_classes)] = max(scores[v].max(), rng.uniform(0.05, 0.2))
        t = np.arange(T)
        col = rng.random((T, n_classes + 1)).astype(np.float32) * 0.002
        segs, labs = [], []
        for c in classes:
            for _ in range(rng.integers(2, 15)):
                s = rng.uniform(0, T - 5)
                d = rng.uniform(2, 25)
                segs.append([s * 16 / 25, (s + d) * 16 / 25])
                labs.append(c)
                col[:, c] += rng.uniform(0.01, 0.3) * np.exp(-0.5 * ((t - s - d / 2) / (d / 2 + rng.normal(0, 1) ** 2)) ** 2)
        segments.append(np.array(segs).reshape(-1, 2))
        labels.append(np.array(labs, dtype=np.int64))
        cas.append(col.astype(np.float32))
    video_labels = np.zeros((n_videos, n_classes), dtype=np.float32)
    for v, labs in enumerate(labels):
        video_labels[v, labs] = 1
    ann = Annotations(folder=Path("."), class_names=[f"class{c:02d}" for c in range(n_classes)],
                      video_names=[f"video_test_{v:07d}" for v in range(n_videos)], subsets=["test"] * n_videos,
                      durations=lengths * 16 / 25, segments=segments, segment_labels=labels, video_labels=video_labels,
                      ambiguous={f"video_test_{v:07d}": np.array([[5.0, 8.0]]) for v in range(0, n_videos, 6)})
    return f"random predictions shaped like the test split (seed {seed})", scores, cas, ann, np.arange(n_videos)


def _timed(fn, repeats: int):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, min(walls), float(np.median(walls)), min(cpus)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="runs of rsnet.evaluate (best and median reported)")
    parser.add_argument("--official-repeats", type=int, default=1, help="runs of the official-style loops")
    parser.add_argument("--random", action="store_true", help="random predictions even when the test vectors exist")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    use_real = (SHARED / "eval-vectors" / "preds_a.npz").is_file() and not args.random
    what, scores, cas, ann, indices = _real_inputs() if use_real else _random_inputs()
    print(f"input: {what}; {len(indices)} videos, {sum(len(c) for c in cas)} snippets")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    warnings.simplefilter("ignore")
    ours, o_best, o_median, o_cpu = _timed(lambda: evaluate(scores, cas, ann, indices), args.repeats)
    ref, r_best, r_median, r_cpu = _timed(lambda: official_evaluate(scores, cas, ann, indices), args.official_repeats)
    diff = max(float(np.max(np.abs(np.array(ours.dmap) - ref["dmap"]))), abs(ours.avg - ref["avg"]), abs(ours.cmap - ref["cmap"]))
    print(f"official-style loops : wall {r_best:8.3f} s (median {r_median:.3f}), cpu {r_cpu:8.3f} s")
    print(f"rsnet.evaluate       : wall {o_best:8.4f} s (median {o_median:.4f}), cpu {o_cpu:8.4f} s")
    print(f"speed-up             : {r_best / o_best:.0f}x wall (best), {r_cpu / o_cpu:.0f}x cpu")
    print(f"largest difference   : {diff:.2e} (dmap, avg, cmap)")
    print(ours.format_table())
    if args.json:
        args.json.write_text(json.dumps({"input": what, "official_wall_s": r_best, "official_cpu_s": r_cpu,
                                         "ours_wall_s": o_best, "ours_wall_median_s": o_median, "ours_cpu_s": o_cpu,
                                         "max_abs_diff": diff, "result": ours.to_dict()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
