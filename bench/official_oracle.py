"""Whole training runs of the official RSKP code and of rskp on the same data, over many seeds.

One training step of rskp equals the official step to 1e-10 in float64 (tests/rsnet/test_parity.py) and
the loop around it is tested against an official-style loop (tests/rsnet/test_training_loop.py). This
script checks what no unit test can: that whole runs of the two codes agree *in distribution*
(seeds change the initialization, the video order and dropout, and the two codes draw them from
different generators, so single runs never match). For every evaluated epoch it prints the mean ±
std of average mAP over the seeds for both codes, the difference of the means with its standard
error, and a two-sided F-test of the variances.

The official code is not part of rskp. Get it once and name its folder::

    git clone https://github.com/LeonHLJ/RSKP /tmp/RSKP
    python -m bench.official_oracle --official /tmp/RSKP --dataset default --seeds 8 --jobs 2

It is copied into ``--work`` and patched there only as far as current libraries and small data
require (the patches are listed in ``OFFICIAL_PATCHES``, each must match the upstream text
exactly once); nothing of it is written into this repository. Each run is one process with one
thread; ``--jobs`` of them run side by side. A finished run is read back, not rerun, so an
interrupted oracle continues where it stopped.

Datasets (rskp's synthetic generator, written once under ``--work``; the same files for both codes):

- ``default``: the built-in default preset (80 + 80 videos) with its settings: 30 epochs, warm-up
  15, lr 2e-4, evaluation every 10 epochs.
- ``small56``: 56 + 56 videos of the same kind (56 is not a multiple of the 10 videos of a step,
  so steps span epochs), 60 epochs, warm-up 30, lr 5e-4, evaluation every 5 epochs.

Both codes score with the same lenient rule (a class without proposals counts as AP 0 instead
of zeroing the IoU threshold), which small test sets need; every other setting is the official
default.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from scipy import stats

from rsnet.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[1]

DATASET_NAME = "Thumos14reduced"


@dataclasses.dataclass(frozen=True)
class OracleSet:
    spec: SyntheticSpec
    epochs: int
    warmup: int
    eval_every: int
    lr: float


SETS = {
    "default": OracleSet(SyntheticSpec(), epochs=30, warmup=15, eval_every=10, lr=2e-4),
    "small56": OracleSet(SyntheticSpec(n_train=56, n_test=56), epochs=60, warmup=30, eval_every=5, lr=5e-4),
}

# (file, upstream text, replacement): what current libraries and small data need, nothing else.
OFFICIAL_PATCHES = [
    # torch.solve was removed (torch 1.13); linalg.solve(A, B) solves A X = B the same way.
    ("model/main_branch.py", "mat_inv_x, _ = torch.solve(eye_x, eye_x - (w ** 2) * affinity_mat)",
     "mat_inv_x = torch.linalg.solve(eye_x - (w ** 2) * affinity_mat, eye_x)"),
    # numpy >= 1.16.3 refuses pickled object arrays (features, labels, segments) unless asked: set
    # once for every np.load of the code, where it starts (the files are our own synthetic ones).
    ("main.py", "import options\n", "import options\nimport functools\nimport numpy as np\n"
     "np.load = functools.partial(np.load, allow_pickle=True)\n"),
    # numpy >= 1.24 refuses ragged arrays without dtype=object.
    ("evaluation/eval.py", "frm_preds = np.array(frm_preds)", "frm_preds = np.array(frm_preds, dtype=object)"),
    # The lenient rule: a class without proposals scores AP 0 (officially the whole IoU scores 0).
    ("evaluation/detectionMAP.py", "        if len(segment_predict) == 0:\n            return 0\n",
     "        if len(segment_predict) == 0:\n            ap.append(0.)\n            continue\n"),
    # Flags without a type arrive as strings from the command line.
    ("options.py", "parser.add_argument('--warmup-epoch', default=100,", "parser.add_argument('--warmup-epoch', type=int, default=100,"),
    # One process per run, one thread each: no loader workers.
    ("processor.py", "num_workers=2 * len(self.args.gpu_ids),", "num_workers=0,"),
]
# tensorboard_logger is unmaintained; the runs read the results log instead.
LOGGER_STAND_IN = "class Logger:\n    def __init__(self, *args, **kwargs):\n        pass\n\n    def log_value(self, *args, **kwargs):\n        pass\n"


def patch_official(source: Path, target: Path) -> Path:
    """A patched copy of the official code in ``target`` (made once; the patches are checked to apply)."""
    if (target / "PATCHED").is_file():
        return target
    if not (source / "processor.py").is_file():
        raise SystemExit(f"error: {source} is not a clone of https://github.com/LeonHLJ/RSKP (no processor.py)")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git"))
    for name, old, new in OFFICIAL_PATCHES:
        path = target / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"error: patch does not apply to {name} (upstream changed?): {old[:60]!r}")
        path.write_text(text.replace(old, new))
    (target / "tensorboard_logger.py").write_text(LOGGER_STAND_IN)
    (target / "PATCHED").write_text("\n".join(name for name, _, _ in OFFICIAL_PATCHES) + "\n")
    return target


def dataset_root(work: Path, name: str) -> Path:
    root = work / "data" / name
    if not (root / DATASET_NAME / "synthetic.json").is_file():
        generate(root, SETS[name].spec, seed=0)
    return root


def official_command(code: Path, root: Path, s: OracleSet, seed: int) -> list[str]:
    return [sys.executable, str(code / "main.py"), "--dataset-root", f"{root}/", "--dataset-name", DATASET_NAME,
            "--max-epoch", str(s.epochs), "--warmup-epoch", str(s.warmup), "--save-interval", str(s.eval_every),
            "--lr", str(s.lr), "--seed", str(seed), "--model-id", str(seed)]


def rskp_command(root: Path, s: OracleSet, seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "rsnet.train", "--data-root", str(root), "--dataset", DATASET_NAME,
            "--epochs", str(s.epochs), "--warmup-epochs", str(s.warmup), "--eval-every", str(s.eval_every),
            "--lr", str(s.lr), "--lenient", "--seed", str(seed), "--out", str(out), "--device", "cpu",
            "--checkpoint-every", str(s.epochs)]


def read_official(run_dir: Path, s: OracleSet, seed: int) -> dict[int, float] | None:
    """{epoch: avg mAP} from the official results log, when the run has finished."""
    log = run_dir / "ckpt" / DATASET_NAME / str(seed) / f"{DATASET_NAME}-results.log"
    if not log.is_file():
        return None
    avg = {}
    for line in log.read_text().splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            avg[int(fields[0])] = float(fields[-2])  # epoch, mAP per IoU..., avg, cmAP
    return avg if s.epochs in avg else None


def read_rskp(run_dir: Path, s: OracleSet) -> dict[int, float] | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    avg = {r["epoch"]: r["avg"] for r in records if "avg" in r}
    return avg if s.epochs in avg else None


def run_one(code: str, official: Path | None, root: Path, s: OracleSet, seed: int, run_dir: Path) -> dict[int, float]:
    done = read_official(run_dir, s, seed) if code == "official" else read_rskp(run_dir, s)
    if done is not None:
        return done
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(official or REPO)}
    if code == "official":
        command, cwd = official_command(official, root, s, seed), run_dir
    else:
        command, cwd = rskp_command(root, s, seed, run_dir), REPO
    with open(run_dir / "log.txt", "w") as log:
        subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    for weights in run_dir.glob("ckpt/**/*.pkl"):  # 16 MB a save; the results log is what is read
        weights.unlink()
    done = read_official(run_dir, s, seed) if code == "official" else read_rskp(run_dir, s)
    if done is None:
        raise RuntimeError(f"{code} seed {seed}: finished without results (see {run_dir / 'log.txt'})")
    return done


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def compare(official: list[float], ours: list[float]) -> tuple[str, ...]:
    """(difference of means ± its standard error, |d| / SE, F statistic, two-sided p of the F-test,
    p of the Brown-Forsythe test, p of the Mann-Whitney U test). The F-test assumes normal scores:
    one run that fails to learn breaks it, so the spreads are also compared by Brown-Forsythe
    (Levene's test about the medians) and the locations by ranks, both robust to such a run."""
    d = statistics.mean(ours) - statistics.mean(official)
    se = math.sqrt(statistics.variance(ours) / len(ours) + statistics.variance(official) / len(official))
    f = statistics.variance(ours) / statistics.variance(official)
    p = 2 * min(stats.f.cdf(f, len(ours) - 1, len(official) - 1), stats.f.sf(f, len(ours) - 1, len(official) - 1))
    p_spread = stats.levene(official, ours, center="median").pvalue
    p_ranks = stats.mannwhitneyu(official, ours, alternative="two-sided").pvalue
    return f"{d:+.2f} ± {se:.2f}", f"{abs(d) / se:.2f}", f"{f:.2f}", f"{p:.2f}", f"{p_spread:.2f}", f"{p_ranks:.2f}"


def report(name: str, runs: dict[str, list[dict[int, float]]]) -> str:
    s = SETS[name]
    head = [f"Oracle on `{name}` ({s.spec.n_train} + {s.spec.n_test} videos, {s.epochs} epochs, warm-up {s.warmup}, "
            f"lr {s.lr}, lenient mAP), {len(runs['official'])} seeds each; avg mAP (IoU 0.1:0.7).", "",
            "| epoch | official | rskp | rskp - official ± SE | abs(d) / SE | F (var ratio) | p (F-test) "
            "| p (Brown-Forsythe) | p (Mann-Whitney) |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    epochs = sorted(runs["official"][0])
    columns = [(str(e), lambda r, e=e: r[e]) for e in epochs]
    columns.append(("best", lambda r: max(r.values())))
    for label, pick in columns:
        off = [pick(r) for r in runs["official"]]
        ours = [pick(r) for r in runs["rskp"]]
        rows.append(f"| {label} | {_mean_std(off)} | {_mean_std(ours)} | " + " | ".join(compare(off, ours)) + " |")
    return "\n".join(head + rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, help="a clone of https://github.com/LeonHLJ/RSKP")
    parser.add_argument("--dataset", choices=sorted(SETS), default="default")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 for each code")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="runs side by side, one thread each")
    parser.add_argument("--codes", nargs="+", choices=["official", "rskp"], default=["official", "rskp"],
                        help="which codes to run now (the report needs both)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rskp-oracle"), help="scratch folder for data and runs")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the report needs a spread)")
    if "official" in args.codes and args.official is None:
        parser.error("--official DIR is needed to run the official code (git clone https://github.com/LeonHLJ/RSKP DIR)")
    s = SETS[args.dataset]
    root = dataset_root(args.work, args.dataset)
    code = patch_official(args.official, args.work / "official") if "official" in args.codes else None
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for name in args.codes:
            for seed in range(args.seeds):
                run_dir = args.work / "runs" / args.dataset / f"{name}-seed{seed}"
                jobs[name, seed] = pool.submit(run_one, name, code, root, s, seed, run_dir)
        runs = {name: [jobs[name, seed].result() for seed in range(args.seeds)] for name in args.codes}
    if set(runs) == {"official", "rskp"}:
        text = report(args.dataset, runs)
        (args.work / f"oracle-{args.dataset}.md").write_text(text + "\n")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
