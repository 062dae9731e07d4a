"""Training speed of RSKP: an epoch, the test pass and the evaluation, official-style against batched.

A benchmark (docs/performance.md, 'How figures are measured'), everything in one process and on one device.
``--dataset thumos14`` (the default), THUMOS14-shaped data: the
200 training videos with the real training lengths (duration x 25/16 of the 'validation' videos of
a W-TALC THUMOS14 annotation folder given with ``--annotations DIR``, else the built-in length
distribution of ``bench/_common.py``) and the 212 test videos likewise; random non-negative
features (D = 2048), 20 classes, random multi-hot training labels (one class, some two), the
real test ground truth for the evaluation (random segments without the folder). The features stay
on the device, as ``rsnet.train.run`` keeps them on a GPU when they fit; the ``triton-host`` mode
measures the path of features too large for that (numpy concatenation and a host-to-device copy
per step).

``--dataset activitynet1.2``, ActivityNet1.2-shaped data: its 4,819 training and 2,383 test videos,
their durations, instances and classes drawn as ``rsnet.synthetic`` draws its ActivityNet1.2-sized
preset (the distributions measured on the real annotations; or the real ground truth of a W-TALC
ActivityNet1.2 annotation folder given with ``--annotations``), 100 classes, random non-negative
features, the model settings of ``rsnet.config.DATASET_DEFAULTS``: a training video is sampled to
at most ``max_seqlen`` (60) snippets each epoch as the trainer samples it
(``WTALCDataset.pack_for_training``), the test videos stay whole, the evaluation is the anet
protocol (IoU 0.5:0.05:0.95) against ``anet_reference`` of bench/oracles/official_eval.py. ``--scale``
draws that share of the videos, at their real lengths; the targets are THUMOS14's and are not
printed.

Training, one epoch in each phase: ``warm-up`` (main and intra-video branches, epochs 0-100) and
``after warm-up`` (plus the inter-video branch: memory-bank read and insert, epochs 101-199):
  official     ``rsnet.official_rskp``: one video at a time (as the trainer samples it), eager,
               the dense T x T solve of the random walk, the losses of 10 videos summed before each
               optimizer step (Adam); after the warm-up the bank is read per class and fed by
               bench/membank.py's official loop;
  reference    ``rsnet.train.Trainer.train_epoch`` on packed batches of 10, ``ops="reference"``
               (the ops loop over the videos);
  padded       the same with ``ops="padded"``: the ops as batched PyTorch over the batch padded to
               its longest video (``rs_kernels.padded``), what a user writes without kernels;
  compiled     padded with ``torch.compile(model, dynamic=True)``; warm-up epochs until one
               compiles no new graph, the compile time (their time beyond as many steady epochs)
               reported apart; a failure is reported in its row;
  triton       the same with ``ops="triton"`` (CUDA only: on CPU Triton runs only in its
               interpreter, far too slow at D = 2048);
  triton-host  (CUDA) triton with the features on the host, batched by ``rsnet.data.dataset.WTALCDataset``.
Test pass (the 212 test videos, scores and CAS to numpy): official-style one video at a time (dense
solve) against ``rsnet.model.predict_batches`` (batches of 32). Evaluation of the batched pass's
predictions: the official-style loops of bench/oracles/official_eval.py against ``rsnet.evaluate``.
``--precision`` adds rows of the batched modes at tf32 or bf16 (the baseline stays fp32). Times are
medians over repeats (CUDA events on the GPU, ``perf_counter`` on CPU) after a warm-up; ratios
are against the official-style rows of the same run. Deterministic algorithms are on, as in
``rsnet.train``. Targets (H100/H200, fp32; the official code measured on an H200) are printed
beside the numbers. Also: the memory-bank fill and one checkpoint save (``rsnet.train.run`` writes
one per epoch). The 200-epoch runs are extrapolated from this run's times (labelled so);
``--full`` runs ``rsnet.train.run`` itself (200 epochs, bank fill, an evaluation every 5 epochs, a
checkpoint per epoch) on these data in the fast mode (triton; reference on CPU) and times it.

  python -m bench.train_speed [--dataset thumos14|activitynet1.2] [--scale F] [--modes official,reference,...]
                              [--phases warmup,inter|none] [--precision fp32,tf32,bf16] [--repeats N]
                              [--no-test] [--full] [--json PATH|-] [--summary-from JSON...]

On CPU the default is a reduced size (``--scale``, printed: 0.4 for THUMOS14, 0.05 for
ActivityNet1.2) and no ``compiled`` mode (its warm-up epochs, until nothing new compiles, add
about a minute per phase on a 2-core machine): meant for a GPU (``bench/gpu_check.sh``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from bench._common import device_name, sync, thumos_lengths, time_runs, versions
from bench.membank import official_step as official_bank_step
from bench.oracles import official_rskp
from bench.oracles.official_eval import anet_reference, official_evaluate
from rsnet import checkpoint, synthetic, train
from rsnet.config import DATASET_DEFAULTS, Config, apply_overrides
from rsnet.data import Annotations, load_annotations
from rsnet.data.dataset import WTALCDataset
from rsnet.datasets import DATASETS
from rsnet.evaluate import PROTOCOL_IOUS, detections, evaluate
from rsnet.host_memory import keep_freed_memory
from rsnet.model import RSKP, predict_batches
from rsnet.synthetic.statistics import ACTIVITYNET_CLASSES

# --dataset: the W-TALC dataset whose shape, model settings (rsnet.config.DATASET_DEFAULTS) and protocol
ROOT = Path(__file__).resolve().parents[1]  # the repository: where an error's traceback is reported
BENCH_DATASETS = {"thumos14": "Thumos14reduced", "activitynet1.2": "ActivityNet1.2"}
THUMOS_CLASSES = DATASETS["Thumos14reduced"].n_classes
FPS_FACTOR = 25 / 16  # snippets per second
MAX_WARMUP_EPOCHS = 6  # compiled: warm-up epochs until one compiles nothing new
# default --scale on CPU: the default modes in about 2.5 minutes on the 2-core machine (THUMOS14)
CPU_SCALE = {"thumos14": 0.4, "activitynet1.2": 0.05}
# the evaluator in loops each protocol is checked against (bench/oracles/official_eval.py)
REFERENCE_EVALUATORS = {"rskp": official_evaluate, "anet": anet_reference}
MODES = ("official", "reference", "padded", "compiled", "triton", "triton-host")
PHASES = {"warmup": "epoch, warm-up", "inter": "epoch, after warm-up"}
BF16_NOTE = "embed_precision=bf16: the embedding GEMM in bf16, the ops and heads in float32"
TEST, EVAL, FILL, CKPT, FULL = "test pass", "evaluation", "bank fill (once)", "checkpoint save", "full run"
ANATOMY = "one step"
# Beside the numbers: on an H100/H200 in fp32 (the official code measured on an H200), THUMOS14 only.
TARGETS = {
    ("epoch", "official"): "official code 4.17 s",
    ("epoch", "padded"): "padded eager 0.42 s",
    ("epoch", "compiled"): "padded compiled 0.18 s after 110 s compile",
    ("epoch", "triton"): "<= 60 ms",
    (TEST, "official"): "official code 0.69 s",
    (TEST, "triton"): "<= 40 ms",
    (FULL, "triton"): "<= 60 s with its 40 evaluations",
}


def target_of(section: str, mode: str, dataset: str) -> str:
    if dataset != "thumos14":
        return ""
    return TARGETS.get(("epoch" if section.startswith("epoch") else section, mode), "")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def multi_hot(labels: list[np.ndarray], n_classes: int) -> np.ndarray:
    """(V, C) float32 video labels: the classes of each video's segments."""
    video_labels = np.zeros((len(labels), n_classes), dtype=np.float32)
    for v, lab in enumerate(labels):
        video_labels[v, lab] = 1
    return video_labels


def _random_annotations(train_lengths: list[int], test_lengths: list[int], rng) -> Annotations:
    """Ground truth for the built-in lengths: 1-2 classes and a few segments per test video."""
    lengths = list(train_lengths) + list(test_lengths)
    segments, labels = [], []
    for t in lengths:
        classes = rng.choice(THUMOS_CLASSES, 1 + int(rng.random() < 0.15), replace=False)
        n = int(rng.integers(1, 12))
        start = rng.uniform(0, max(t - 4, 1), n)
        stop = np.minimum(start + rng.uniform(1, 20, n), t)
        segments.append(np.stack([start, stop], 1) / FPS_FACTOR)
        labels.append(rng.choice(classes, n))
    n_train = len(train_lengths)
    return Annotations(folder=Path("."), class_names=[f"class{c:02d}" for c in range(THUMOS_CLASSES)],
                       video_names=[f"video_{v:07d}" for v in range(len(lengths))],
                       subsets=["validation"] * n_train + ["test"] * len(test_lengths),
                       durations=np.array(lengths, dtype=np.float64) / FPS_FACTOR, segments=segments,
                       segment_labels=labels, video_labels=multi_hot(labels, THUMOS_CLASSES), ambiguous={})


def _layout_annotations(layouts: list[synthetic.VideoLayout], class_names) -> Annotations:
    """The ground truth of ``rsnet.synthetic``'s standalone layouts, as the loader reads it: written
    by the generator's own annotation writer and read back by ``load_annotations``."""
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.write_annotations(Path(tmp), list(class_names), layouts, BENCH_DATASETS["activitynet1.2"])
        return load_annotations(Path(tmp))


def lengths_of(ann: Annotations) -> dict[int, int]:
    """{index: T}: each video's snippets at its duration, as the I3D features have them."""
    return {i: max(1, int(ann.durations[i] * FPS_FACTOR)) for i in range(len(ann))}


def sample_videos(indices: np.ndarray, scale: float, rng) -> np.ndarray:
    """``scale`` of the videos ``indices`` (at least 10), drawn without replacement, in order."""
    count = max(10, round(len(indices) * scale))
    return np.sort(rng.choice(indices, min(count, len(indices)), replace=False))


def shortened(ann: Annotations, scale: float) -> Annotations:
    """The ground truth of the videos shortened to ``scale`` of their length, as their features are:
    the evaluation checks each CAS against its video's duration."""
    return dataclasses.replace(ann, durations=ann.durations * scale, segments=[s * scale for s in ann.segments],
                               ambiguous={name: s * scale for name, s in ann.ambiguous.items()})


def thumos_split(scale: float, seed: int, annotations: Path | None = None):
    """(annotations with random multi-hot training labels, train indices, test indices, {index: T}, source).

    ``annotations``: a W-TALC THUMOS14 annotation folder whose lengths and test ground truth to use.
    ``scale`` draws that share of the videos and shortens them (their ground truth with them)."""
    rng = np.random.default_rng(seed)
    if annotations is not None:
        ann = load_annotations(annotations)
        lengths = lengths_of(ann)
        source = f"real THUMOS14 lengths (duration x 25/16, {annotations})"
    else:  # 200 + 212 from the built-in distribution
        train_l = thumos_lengths(200, seed=0)
        test_l = thumos_lengths(200, seed=1) + thumos_lengths(12, seed=2)
        ann = _random_annotations(train_l, test_l, rng)
        lengths = dict(enumerate(train_l + test_l))
        source = "built-in THUMOS14-like lengths (bench/_common.py; no --annotations folder)"
    train_idx, test_idx = ann.indices("validation"), ann.indices("test")
    if scale != 1.0:
        train_idx, test_idx = sample_videos(train_idx, scale, rng), sample_videos(test_idx, scale, rng)
        lengths = {i: max(2, round(t * scale)) for i, t in lengths.items()}
        ann = shortened(ann, scale)
    labels = ann.video_labels.copy()
    for i in train_idx:  # random multi-hot training labels: one class, some two
        labels[i] = 0
        labels[i, rng.choice(THUMOS_CLASSES, 1 + int(rng.random() < 0.15), replace=False)] = 1
    return dataclasses.replace(ann, video_labels=labels), train_idx, test_idx, lengths, source


def activitynet_split(scale: float, seed: int, annotations: Path | None = None):
    """(annotations, train indices, test indices, {index: T}, source) of ActivityNet1.2's 4,819
    training and 2,383 test videos: drawn as rsnet.synthetic's ActivityNet1.2-sized preset lays
    them out (durations, instances, classes), or the real ground truth of ``annotations``.
    ``scale`` draws that share of the videos at their real lengths: training samples at most
    ``max_seqlen`` snippets of each anyway, and a shorter video would change what it samples."""
    rng = np.random.default_rng(seed)
    if annotations is not None:
        ann = load_annotations(annotations)
        source = f"real ActivityNet1.2 lengths and ground truth (duration x 25/16, {annotations})"
    else:
        spec = synthetic.PRESETS["activitynet1.2-synthetic"].spec
        ann = _layout_annotations(synthetic.draw_layouts(spec, seed), ACTIVITYNET_CLASSES)
        source = ("ActivityNet1.2-like durations, instances and classes (rsnet.synthetic's measured "
                  "distributions; no --annotations folder)")
    info = DATASETS[BENCH_DATASETS["activitynet1.2"]]
    train_idx, test_idx = ann.indices(info.train_subset), ann.indices(info.test_subset)
    if scale != 1.0:
        train_idx, test_idx = sample_videos(train_idx, scale, rng), sample_videos(test_idx, scale, rng)
    return ann, train_idx, test_idx, lengths_of(ann), source


SPLITS = {"thumos14": thumos_split, "activitynet1.2": activitynet_split}


class HostDataset(WTALCDataset):
    """``WTALCDataset`` (its batching and training sampling, unchanged) over in-memory numpy features: no files."""

    def __init__(self, cfg: Config, annotations: Annotations, train_indices, test_indices,
                 features: dict[int, np.ndarray]):
        self.name, self.info, self.max_seqlen = cfg.dataset, DATASETS[cfg.dataset], cfg.max_seqlen
        self.annotations, self.features = annotations, features
        self.train_indices, self.test_indices = np.asarray(train_indices), np.asarray(test_indices)


class ResidentDataset(HostDataset):
    """The same with the features already on the device (as ``rsnet.train.run`` keeps them on a GPU):
    a step packs them with one torch.cat."""

    def __init__(self, cfg: Config, annotations, train_indices, test_indices, features: dict[int, torch.Tensor]):
        super().__init__(cfg, annotations, train_indices, test_indices, features)
        device = next(iter(features.values())).device
        self.labels = torch.from_numpy(annotations.video_labels).to(device)  # for the official-style loop


def bench_config(dataset: str, device) -> Config:
    """The config a run on ``--dataset`` trains with: the dataset's defaults (rsnet.config.DATASET_DEFAULTS)."""
    name = BENCH_DATASETS[dataset]
    return apply_overrides(Config(device=str(device), dataset=name), DATASET_DEFAULTS[name], f"the defaults of {name}")


def size_text(dataset: ResidentDataset, lengths: dict[int, int], max_seqlen: int) -> str:
    """The videos and snippets of an epoch and of the test pass."""
    n_train, n_test = (sum(lengths[int(i)] for i in ix) for ix in (dataset.train_indices, dataset.test_indices))
    longest = max(lengths[int(i)] for i in dataset.train_indices)
    train_n = f"N = {n_train}, longest {longest}"
    if max_seqlen:
        per_epoch = sum(min(lengths[int(i)], max_seqlen) for i in dataset.train_indices)
        train_n = f"N = {per_epoch} an epoch, at most {max_seqlen} snippets a video, of {n_train} whole, longest {longest}"
    return (f"{len(dataset.train_indices)} training videos ({train_n}), {len(dataset.test_indices)} test videos "
            f"(N = {n_test})")


def make_features(lengths: dict[int, int], indices, dim: int, device, seed: int) -> dict[int, torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    return {int(i): torch.randn(lengths[int(i)], dim, generator=gen, device=device).relu_() for i in indices}


# ---------------------------------------------------------------------------------------------
# the official-style paths (rsnet.official_rskp: one video at a time, dense solve)
# ---------------------------------------------------------------------------------------------

def official_epoch(model, optimizer, dataset: ResidentDataset, epoch: int, seed: int, per_step: int,
                   bank=None, max_steps: int | None = None) -> None:
    """One epoch as the published code trains, on the videos as the trainer samples them
    (``pack_for_training``: whole, or ActivityNet's ``max_seqlen`` snippets); bank = (rows, scores,
    count) after the warm-up."""
    model.train()
    order = dataset.train_order(epoch, seed)
    for step, start in enumerate(range(0, len(order), per_step)):
        if max_steps is not None and step >= max_steps:
            break
        idx = order[start:start + per_step]
        batch = dataset.pack_for_training(idx, epoch, seed)
        videos = batch.x.split(batch.varlen.lengths)
        labels = dataset.labels[torch.from_numpy(idx).to(dataset.labels.device)]
        if bank is None:
            loss = official_rskp.step_loss(model, videos, labels)
        else:
            rows, scores, count = bank
            loss, mus, p_mus = 0.0, [], []
            for x, label in zip(videos, labels):
                memory = official_rskp.read_memory(rows, count, label)
                video_loss, mu, p_mu = official_rskp.video_loss(model, x, label, memory, after_warmup=True)
                loss, mus, p_mus = loss + video_loss, mus + [mu], p_mus + [p_mu]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if bank is not None:
            with torch.no_grad():  # per video, per class: cat + sort + index_select (it re-reads the rows too)
                official_bank_step(rows, scores, labels.bool(), torch.stack(mus).detach(),
                                   torch.stack(p_mus)[..., :dataset.n_classes].detach())


@torch.no_grad()
def official_test_pass(model: RSKP, dataset: ResidentDataset):
    model.eval()
    out = [official_rskp.predict_video(model, dataset.features[int(i)]) for i in dataset.test_indices]
    return np.stack([s.cpu().numpy() for s, _ in out]), [c.cpu().numpy() for _, c in out]


# ---------------------------------------------------------------------------------------------
# precision
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def matmul_precision(precision: str):
    """fp32: no TF32 anywhere; tf32: TF32 for the fp32 matmuls torch runs (the kernels keep theirs)."""
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------

def _median(times):
    return statistics.median(times) if times else None


def _error_text(exc: BaseException) -> str:
    """The error's first line and the deepest place in this repository it passed through."""
    text = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0][:200]
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(ROOT))]
    if ours:
        text += f" (at {Path(ours[-1].filename).relative_to(ROOT)}:{ours[-1].lineno}, {ours[-1].name})"
    return text


class Bench:
    def __init__(self, args, device: torch.device):
        self.args, self.device, self.rows = args, device, []
        self.on_cuda = device.type == "cuda"

    def row(self, section, mode, precision="fp32", times=None, **extra) -> dict:
        r = {"section": section, "mode": mode, "precision": precision, "ms": _median(times),
             "times_ms": times, "target": target_of(section, mode, self.args.dataset), **extra}
        r.setdefault("note", "")
        self.rows.append(r)
        line = f"... {section} | {mode} {precision}: " + (f"{r['ms']:.1f} ms" if r["ms"] is not None else "-")
        print(line + (f" ({r['note']})" if r["note"] else "") + (f" ERROR {r['error']}" if r.get("error") else ""),
              file=sys.stderr, flush=True)
        self.checkpoint_json()
        return r

    def checkpoint_json(self, meta=None):
        if meta is not None:
            self.meta = meta
        if self.args.json and self.args.json != "-":  # after every row: a run cut short keeps what it measured
            Path(self.args.json).write_text(json.dumps({"meta": getattr(self, "meta", {}), "rows": self.rows}, indent=1))

    def peak_reset(self):
        if self.on_cuda:
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        return None

    def peak_mb(self, before):
        if before is None:
            return None
        sync(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - before) / 2**20


def _graphs() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def warmup_epochs(epoch, device, compiled: bool) -> list[float]:
    """One warm-up epoch; compiled, more until an epoch compiles no new graph (the second epoch
    still does: the first optimizer step changes what the graphs see)."""
    times = []
    while True:
        graphs = _graphs()
        times += time_runs(epoch, device)
        if not compiled or _graphs() == graphs or len(times) >= MAX_WARMUP_EPOCHS:
            return times


def mode_config(base: Config, mode: str, precision: str = "fp32") -> Config:
    """The run's config in a mode; bf16 is the model's bf16 embedding (the ops stay float32)."""
    ops = {"reference": "reference", "padded": "padded", "compiled": "padded", "official": "reference"}.get(mode, "triton")
    return dataclasses.replace(base, ops=ops, embed_precision="bf16" if precision == "bf16" else "fp32")


def new_trainer(cfg: Config, dataset, device, seed: int) -> train.Trainer:
    torch.manual_seed(seed)  # the same initial parameters in every mode
    return train.Trainer(cfg, dataset, device)


def bench_training(b: Bench, mode: str, precision: str, cfg: Config, dataset, device, phases, reps: int):
    """Rows of one batched mode, per phase: warm-up epoch(s), then ``reps`` timed epochs."""
    trainer = new_trainer(mode_config(cfg, mode, precision), dataset, device, b.args.seed)
    note = "; ".join(filter(None, [BF16_NOTE if precision == "bf16" else "",
                                   padding_note(trainer, 0) if trainer.cfg.ops == "padded" else ""]))
    if mode == "compiled":
        trainer.model = torch.compile(trainer.model, dynamic=True)
    with matmul_precision(precision):
        for phase in phases:
            epoch0 = 0 if phase == "warmup" else cfg.warmup_epochs + 1
            try:
                if phase == "inter":
                    start = time.perf_counter()
                    trainer.fill_bank()
                    sync(device)
                    fill_ms = (time.perf_counter() - start) * 1e3
                    if mode != "compiled" and precision == "fp32":
                        b.row(FILL, mode, precision, [fill_ms], note="eval-mode pass over the training videos")
                epochs = iter(range(epoch0, epoch0 + MAX_WARMUP_EPOCHS + reps))
                warm = warmup_epochs(lambda: trainer.train_epoch(next(epochs)), device, compiled=mode == "compiled")
                before, graphs = b.peak_reset(), _graphs()
                times = time_runs(lambda: trainer.train_epoch(next(epochs)), device, reps)
                extra = {"peak_mb": b.peak_mb(before), "warmup_epochs_ms": warm}
                row_note = note
                if mode == "compiled":  # the compiling: the warm-up epochs beyond as many steady ones
                    extra["compile_s"] = max(sum(warm) - len(warm) * _median(times), 0.0) / 1e3
                    late = _graphs() - graphs  # graphs the timed epochs still compiled: their time includes it
                    row_note = "; ".join(filter(None, [note, f"{len(warm)} warm-up epochs, until one compiled no new graph",
                                                       f"{late} graphs compiled in the timed epochs" if late else ""]))
                b.row(PHASES[phase], mode, precision, times, note=row_note, **extra)
                # the fast mode's step anatomy (reference on CPU, where Triton does not run); ms: the
                # timed epochs' steps. Not the reference on CUDA: profiling its ~8k calls a step is slow.
                if precision == "fp32" and mode == ("triton" if device.type == "cuda" else "reference"):
                    per_step = [t / steps_per_epoch(trainer) for t in times]
                    b.row(PHASES[phase].replace("epoch", ANATOMY), mode, precision, per_step,
                          note=step_anatomy(trainer, next(epochs), device))
            except Exception as exc:  # noqa: BLE001 - a failed mode (compile) is a row, not a crash
                traceback.print_exc(file=sys.stderr)
                b.row(PHASES[phase], mode, precision, note=note, error=_error_text(exc))
                if mode == "compiled":
                    break
    return trainer


def padding_note(trainer: train.Trainer, epoch: int) -> str:
    """How many times its real snippets a step holds once padded to its longest video (B T_max / N),
    over the steps of one epoch: the waste the padded modes pay."""
    factors = []
    for batch in trainer.dataset.train_batches(epoch, trainer.cfg.seed, trainer.cfg.videos_per_step):
        lengths = batch.varlen.lengths
        factors.append(len(lengths) * max(lengths) / sum(lengths))
    return (f"padded steps hold {statistics.mean(factors):.1f}x their real snippets "
            f"({min(factors):.1f}-{max(factors):.1f} over the epoch's {len(factors)} steps)")


def steps_per_epoch(trainer: train.Trainer) -> int:
    return -(-len(trainer.dataset.train_indices) // trainer.cfg.videos_per_step)


def step_anatomy(trainer: train.Trainer, epoch: int, device) -> str:
    """One more epoch under the profiler, per step: wall time, what the host launched (ATen ops;
    CUDA kernels), the GPU's busy time, and (CUDA) the host syncs, counted by the sync debug mode.
    Wall time above GPU busy time is the host's: launches, syncs, Python."""
    steps = steps_per_epoch(trainer)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        times = time_runs(lambda: trainer.train_epoch(epoch), device, 1)
    events = prof.events()
    aten = sum(1 for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::"))
    parts = [f"profiled: {times[0] / steps:.2f} ms per step wall", f"{aten / steps:.0f} ATen calls (nested included)"]
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.train_epoch(epoch + 1)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        parts += [f"{len(kernels) / steps:.0f} kernels", f"GPU busy {busy / steps:.2f} ms", f"{syncs / steps:.1f} host syncs"]
    return "; ".join(parts) + " per step"


def bench_official_training(b: Bench, cfg: Config, dataset, device, phases, reps: int):
    trainer = new_trainer(mode_config(cfg, "official"), dataset, device, b.args.seed)
    model, opt = trainer.model, trainer.optimizer
    for phase in phases:
        bank = None
        epoch0 = 0 if phase == "warmup" else cfg.warmup_epochs + 1
        if phase == "inter":
            trainer.fill_bank()  # a full bank to read from (the filling itself is not timed here)
            bank = (trainer.bank.bank.clone(), trainer.bank.scores.clone(), trainer.bank.count.clone())
        run = lambda e, steps=None: official_epoch(model, opt, dataset, e, b.args.seed,  # noqa: E731
                                                   cfg.videos_per_step, bank, steps)
        run(epoch0, 1)  # warm-up: one step
        before = b.peak_reset()
        epochs = iter(range(epoch0 + 1, epoch0 + 1 + reps))
        times = time_runs(lambda: run(next(epochs)), device, reps)
        note = "bank: per-class read, bench/membank.py's insert loop" if bank is not None else ""
        b.row(PHASES[phase], "official", "fp32", times, peak_mb=b.peak_mb(before), note=note)


def bench_test_pass(b: Bench, cfg: Config, dataset, device, modes, precisions, reps: int):
    """Rows of the 212-video test pass; returns the predictions of the fastest batched mode."""
    torch.manual_seed(b.args.seed)
    model = RSKP(mode_config(cfg, "reference"), dataset.n_classes).to(device).eval()
    official = None
    if "official" in modes:
        official_rskp.predict_video(model, dataset.features[int(dataset.test_indices[0])])  # warm-up
        official = official_test_pass(model, dataset)
        times = time_runs(lambda: official_test_pass(model, dataset), device, max(1, reps // 2))
        b.row(TEST, "official", "fp32", times)
    best = None
    for mode in ("reference", "padded", "triton"):
        if mode not in modes:
            continue
        for precision in precisions:
            model.cfg = mode_config(cfg, mode, precision)
            note = [BF16_NOTE] if precision == "bf16" else []
            try:
                with matmul_precision(precision):
                    pred = predict_batches(model, dataset.test_batches(cfg.test_batch_size), device)  # warm-up
                    times = time_runs(lambda: predict_batches(model, dataset.test_batches(cfg.test_batch_size), device), device,
                                      reps)
                if official is not None:
                    ds = float(np.abs(pred[0] - official[0]).max())
                    dc = max(float(np.abs(a - o).max()) for a, o in zip(pred[1], official[1]))
                    note.append(f"max |diff| vs official: scores {ds:.1e}, CAS {dc:.1e}")
                b.row(TEST, mode, precision, times, note="; ".join(note))
                if precision == "fp32":
                    best = pred
            except Exception as exc:  # noqa: BLE001
                b.row(TEST, mode, precision, note="; ".join(note), error=_error_text(exc))
    if "compiled" in modes:
        b.row(TEST, "compiled", "fp32", note="not measured (another compile, for eval mode)")
    return best if best is not None else official


def bench_evaluation(b: Bench, pred, dataset, protocol: str, reps: int, official: bool):
    """rsnet.evaluate under the dataset's protocol (and IoUs) against that protocol's loops."""
    scores, cas = pred
    ann, idx, ious = dataset.annotations, dataset.test_indices, PROTOCOL_IOUS[protocol]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = detections(scores, cas, ann, idx, protocol=protocol)
        load = (f"protocol {protocol}, {len(idx)} videos, {int((scores[:, :dataset.n_classes] >= 0.1).sum())} "
                f"(video, class) pairs over the 0.1 score threshold, {sum(len(d) for d in det.values())} "
                "detections after NMS")
        run = lambda: evaluate(scores, cas, ann, idx, protocol=protocol, iou_thresholds=ious)  # noqa: E731
        ours = run()
        times = time_runs(run, "cpu", reps)
        if official:
            start = time.perf_counter()  # once: seconds at full size
            ref = REFERENCE_EVALUATORS[protocol](scores, cas, ann, idx, iou_thresholds=ious)
            t_ref = [(time.perf_counter() - start) * 1e3]
            diff = max(float(np.max(np.abs(np.array(ours.dmap) - ref["dmap"]))), abs(ours.cmap - ref["cmap"]))
            b.row(EVAL, "official", "fp32", t_ref, note=f"{load}; CPU (numpy); an untrained model's predictions: "
                  "bench/eval_speed.py times real ones")
            b.row(EVAL, "rsnet.evaluate", "fp32", times,
                  note=f"avg mAP {ours.avg:.2f}, cmAP {ours.cmap:.2f}; largest |diff| vs official {diff:.1e}")
        else:
            b.row(EVAL, "rsnet.evaluate", "fp32", times, note=f"{load}; avg mAP {ours.avg:.2f}")


def bench_checkpoint(b: Bench, trainer: train.Trainer, mode: str):
    with tempfile.TemporaryDirectory() as tmp:
        state = trainer.state_dict(1, None, [])
        times = time_runs(lambda: checkpoint.save_atomic(state, Path(tmp) / "checkpoint.pt"), "cpu", 2)
        size = (Path(tmp) / "checkpoint.pt").stat().st_size / 2**20
    b.row(CKPT, mode, "fp32", times, note=f"{size:.0f} MB, fsync'd; rsnet.train.run writes one every --checkpoint-every epochs")


def bench_full_run(b: Bench, cfg: Config, dataset, device, mode: str):
    """rsnet.train.run itself on these data (its dataset loader pointed at them, in this process)."""
    run_cfg = dataclasses.replace(mode_config(cfg, mode), device=str(device))
    loader = train.load_dataset
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = dataclasses.replace(run_cfg, out=tmp)
        train.load_dataset = lambda _cfg: dataset
        log = io.StringIO()
        try:
            sync(device)
            start = time.perf_counter()
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train.run(run_cfg)
            sync(device)
            wall = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - reported in its row
            print(log.getvalue()[-4000:], file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            b.row(FULL, mode, "fp32", note="rsnet.train.run failed", error=_error_text(exc))
            return
        finally:
            train.load_dataset = loader
    n_eval = math.ceil(cfg.epochs / cfg.eval_every)
    b.row(FULL, mode, "fp32", [wall * 1e3], note=f"measured: rsnet.train.run, {cfg.epochs} epochs, {n_eval} evaluations, "
          "bank fill, a checkpoint per epoch")


def extrapolated_full_runs(b: Bench, cfg: Config):
    """200 epochs from this run's times: (W+1) warm-up epochs, the rest after it, 40 x (test pass + evaluation)."""
    by = {(r["section"], r["mode"], r["precision"]): r["ms"] for r in b.rows if r.get("ms") is not None}
    n_warm = min(cfg.warmup_epochs + 1, cfg.epochs)
    n_inter, n_eval = cfg.epochs - n_warm, math.ceil(cfg.epochs / cfg.eval_every)
    for mode, evaluator in (("official", "official"), ("reference", "rsnet.evaluate"), ("padded", "rsnet.evaluate"),
                            ("triton", "rsnet.evaluate")):
        parts = [by.get((PHASES["warmup"], mode, "fp32")), by.get((PHASES["inter"], mode, "fp32")),
                 by.get((TEST, mode, "fp32")), by.get((EVAL, evaluator, "fp32"))]
        if any(p is None for p in parts):
            continue
        total = n_warm * parts[0] + n_inter * parts[1] + n_eval * (parts[2] + parts[3])
        total += by.get((FILL, mode, "fp32"), 0.0) or 0.0
        b.row(FULL, mode, "fp32", [total], extrapolated=True,
              note=f"extrapolated: {n_warm} x warm-up + {n_inter} x after-warm-up epochs + {n_eval} x "
                   "(test pass + evaluation) of this run; no checkpoints")


# ---------------------------------------------------------------------------------------------
# the floor: the embedding's GEMMs alone
# ---------------------------------------------------------------------------------------------

FLOOR = "GEMM floor"


def embedding_gemms(rows: list[int], cfg: Config, device, backward: bool) -> float:
    """Milliseconds of the embedding's products alone over batches of ``rows`` snippets: X_in W^T + b,
    and in training the weight's gradient dY^T X_in (the features need no gradient), as the linear
    layer runs them, on random inputs of the same shapes."""
    linear = torch.nn.Linear(cfg.feature_dim, cfg.embed_dim, device=device)
    inputs = [torch.randn(n, cfg.feature_dim, device=device).relu_() for n in rows]

    def products():
        for x in inputs:
            y = linear(x)
            if backward:
                grad_out = torch.ones_like(y)
                torch.mm(grad_out.T, x)
                grad_out.sum(0)
    with torch.no_grad():
        products()  # warm-up
        return _median(time_runs(products, device, 3))


def bench_floors(b: Bench, cfg: Config, dataset, device, phases, test: bool) -> None:
    """A floor row per training phase and for the test pass: the time no implementation can beat on
    this device, the ratio column then reads official-style over the floor."""
    if phases:
        order = dataset.train_order(0, b.args.seed)
        step = cfg.videos_per_step
        rows = [int(dataset.pack_for_training(order[i:i + step], 0, b.args.seed).x.shape[0])
                for i in range(0, len(order), step)]
        ms = embedding_gemms(rows, cfg, device, backward=True)
        for phase in phases:
            b.row(PHASES[phase], FLOOR, "fp32", [ms], note="the embedding's forward and weight-gradient GEMMs alone; x: official-style over the floor")
    if test:
        rows = [int(batch.x.shape[0]) for batch in dataset.test_batches(cfg.test_batch_size)]
        b.row(TEST, FLOOR, "fp32", [embedding_gemms(rows, cfg, device, backward=False)],
              note="the embedding's GEMM alone; x: official-style over the floor")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def _fmt_ms(ms):
    if ms is None:
        return "-"
    return f"{ms / 1e3:.2f} s" if ms >= 1e4 else f"{ms:.1f}"


def table(meta, rows) -> str:
    lines = [f"device: {meta['device']} | torch {meta['torch']} (CUDA {meta['cuda']}) | triton {meta['triton']} | "
             f"python {meta['python']}",
             f"data: {meta['data']}",
             f"size: {meta['size']}",
             "", "| section | mode | precision | ms | x vs official | x floor | compile s | peak MB | target | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["section"]: r["ms"] for r in rows if r["mode"] == "official" and r["ms"] is not None}
    floor = {r["section"]: r["ms"] for r in rows if r["mode"] == FLOOR and r["ms"]}
    for r in rows:
        b, f = base.get(r["section"]), floor.get(r["section"])
        ratio = f"{b / r['ms']:.1f}" if b is not None and r["ms"] else "-"
        over_floor = f"{r['ms'] / f:.2f}" if f is not None and r["ms"] is not None else "-"
        note = r["note"] + (f" ERROR: {r['error']}" if r.get("error") else "")
        compile_s = f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "-"
        peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") is not None else "-"
        lines.append(f"| {r['section']} | {r['mode']} | {r['precision']} | {_fmt_ms(r['ms'])} | {ratio} | {over_floor} | "
                     f"{compile_s} | {peak} | {r['target']} | {note} |")
    lines.append("ms: median over the repeats (s where marked); x vs official: the official-style time of the same "
                 "section in this run over this row's; x floor: this row's time over the section's GEMM floor; "
                 "targets: on an H100/H200 in fp32 at full size.")
    lines.extend(meta["notes"])
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    """The short table of one or more runs' JSON: time, speed-up over official-style, target."""
    if not results:
        return "train_speed: no results"
    meta = results[0]["meta"]
    lines = [f"{meta['device']}: training speed on {meta['dataset']} data, {meta['size'].split(';')[0]} "
             "(ms; x: speed-up over official-style)",
             "| section | mode | precision | ms | x | target |", "|---|---|---|---|---|---|"]
    # official-style times by (data, size, section), over all the files: a --full file has none of its own
    base = {}
    for res in results:
        for r in res["rows"]:
            if r["mode"] == "official" and r["ms"] is not None:
                base.setdefault((res["meta"]["dataset"], res["meta"]["scale"], r["section"]), r["ms"])
    for res in results:
        for r in res["rows"]:
            if r["section"] == CKPT or (r["section"] == FILL and r["mode"] != "triton"):
                continue
            b = base.get((res["meta"]["dataset"], res["meta"]["scale"], r["section"]))
            ratio = f"{b / r['ms']:.1f}" if b is not None and r["ms"] and r["mode"] != "official" else "-"
            what = r["mode"] + (" (extrapolated)" if r.get("extrapolated") else "")
            ms = _fmt_ms(r["ms"]) if not r.get("error") else "error"
            lines.append(f"| {r['section']} | {what} | {r['precision']} | {ms} | {ratio} | {r['target']} |")
    lines += [f"{r['section']} ({r['mode']}): {r['note']}" for res in results for r in res["rows"]
              if r["section"].startswith(ANATOMY) and r.get("note")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", choices=tuple(BENCH_DATASETS), default="thumos14",
                        help="the data's shape, the model settings and the evaluation protocol")
    parser.add_argument("--scale", type=float, default=None,
                        help="shrink the video counts (THUMOS14: and the lengths); default 1 on CUDA, on CPU "
                             + ", ".join(f"{v} for {k}" for k, v in CPU_SCALE.items()))
    parser.add_argument("--modes", default=None, help=f"comma list of {', '.join(MODES)} (default: all the device runs)")
    parser.add_argument("--phases", default="warmup,inter", help="warmup,inter: the training epochs timed")
    parser.add_argument("--precision", default="fp32", help="comma list of fp32, tf32, bf16 (batched modes)")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs / passes (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--no-test", action="store_true", help="skip the test pass and the evaluation")
    parser.add_argument("--full", action="store_true", help="also run the whole 200-epoch schedule (rsnet.train.run)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier medians on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotations", type=Path, default=None,
                        help="a W-TALC annotation folder of the dataset: its real video lengths and test ground "
                             "truth (default: THUMOS14, the built-in length distribution and random segments; "
                             "ActivityNet1.2, rsnet.synthetic's)")
    parser.add_argument("--json", help="write the results as JSON to this path ('-': stdout)")
    parser.add_argument("--summary-from", nargs="+", metavar="JSON",
                        help="print the short table of files written by --json (missing ones skipped), and exit")
    args = parser.parse_args(argv)
    if args.summary_from:
        print(summary([json.loads(Path(p).read_text()) for p in args.summary_from if Path(p).is_file()]))
        return 0

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    kept = keep_freed_memory()  # as every rsnet command: both implementations run under it
    if not on_cuda:
        torch.set_num_threads(args.threads)
    scale = args.scale if args.scale is not None else (1.0 if on_cuda else CPU_SCALE[args.dataset])
    reps = args.repeats or (5 if on_cuda else 1)
    notes = []
    requested = [m for m in (args.modes.split(",") if args.modes else MODES) if m]
    unknown = set(requested) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")
    modes = list(requested)
    if not on_cuda:
        for m in ("triton", "triton-host"):
            if m in modes:
                modes.remove(m)
                notes.append(f"{m}: skipped on CPU (Triton runs there only in its interpreter, far too slow at D = 2048); "
                             "run on CUDA")
        if "compiled" in modes and args.modes is None:
            modes.remove("compiled")
            notes.append("compiled: skipped by default on CPU (its warm-up epochs add about a minute per phase); "
                         "ask for it with --modes ...,compiled")
    precisions = [p for p in args.precision.split(",") if p]
    if set(precisions) - {"fp32", "tf32", "bf16"}:
        parser.error("--precision takes fp32, tf32 and bf16")
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")  # the rows the ratios and the other sections need
    if not on_cuda and "tf32" in precisions:
        notes.append("tf32: no TF32 on CPU; the tf32 rows there repeat fp32")
    phases = [p for p in args.phases.split(",") if p and p != "none"]
    if set(phases) - set(PHASES):
        parser.error(f"--phases takes {', '.join(PHASES)} or none")

    train.make_deterministic(args.seed, device)  # as rsnet.train.run
    cfg = bench_config(args.dataset, device)
    ann, train_idx, test_idx, lengths, source = SPLITS[args.dataset](scale, args.seed, args.annotations)
    if len(ann.class_names) != DATASETS[cfg.dataset].n_classes:
        parser.error(f"--annotations {args.annotations} lists {len(ann.class_names)} classes; {cfg.dataset} has "
                     f"{DATASETS[cfg.dataset].n_classes} (--dataset {args.dataset})")
    features = make_features(lengths, list(train_idx) + list(test_idx), cfg.feature_dim, device, args.seed)
    dataset = ResidentDataset(cfg, ann, train_idx, test_idx, features)
    size = (f"scale {scale:g}: {size_text(dataset, lengths, cfg.max_seqlen)}; D = {cfg.feature_dim}, "
            f"{dataset.n_classes} classes, {cfg.videos_per_step} videos per step, test batches of "
            f"{cfg.test_batch_size}; {reps} timed repeat(s) after a warm-up")
    if scale != 1.0 and args.dataset == "thumos14":
        notes.append(f"reduced size (--scale {scale:g}: video counts and lengths scaled): the dense T x T solve "
                     "grows as T^3, so the official-style ratios understate the full-size ones")
    elif scale != 1.0:
        notes.append(f"reduced size (--scale {scale:g}: video counts scaled, at their real lengths)")
    if not on_cuda:
        notes.append("host memory: freed blocks kept for reuse (rsnet.host_memory), as every rsnet command does"
                     if kept else "host memory: the C library's defaults (no glibc mallopt here)")
    targets = {f"{k[0]}/{k[1]}": v for k, v in TARGETS.items()} if args.dataset == "thumos14" else {}
    meta = {"device": device_name(device), **versions(), "dataset": args.dataset, "data": source, "size": size,
            "scale": scale, "modes": modes, "precisions": precisions, "notes": notes, "targets": targets}
    b = Bench(args, device)
    b.checkpoint_json(meta)
    print(f"train_speed on {meta['device']}; {size}", file=sys.stderr, flush=True)

    fast = "triton" if "triton" in modes else ("reference" if "reference" in modes else None)
    fast_trainer = None
    if "official" in modes:
        bench_official_training(b, cfg, dataset, device, phases, 1 if not on_cuda else max(1, reps // 5))
    for mode in ("reference", "padded", "compiled", "triton"):
        if mode in modes:
            for precision in precisions if mode != "compiled" else ["fp32"]:
                trainer = bench_training(b, mode, precision, cfg, dataset, device, phases, reps)
                if mode == fast and precision == "fp32":
                    fast_trainer = trainer
                else:
                    del trainer
            if on_cuda:
                torch.cuda.empty_cache()
    if "triton-host" in modes:
        host = HostDataset(cfg, ann, train_idx, test_idx, {int(i): features[int(i)].cpu().numpy() for i in train_idx})
        trainer = new_trainer(mode_config(cfg, "triton"), host, device, args.seed)
        trainer.train_epoch(0)
        times = time_runs(lambda: trainer.train_epoch(1), device, reps)
        b.row(PHASES["warmup"], "triton-host", "fp32", times,
              note="features on the host: numpy concat + host-to-device copy per step (rsnet.data.dataset.WTALCDataset)")
        del trainer, host
    if fast_trainer is not None and phases:  # after training: with the optimizer's state, as in a run
        bench_checkpoint(b, fast_trainer, fast)
        del fast_trainer
    if not args.no_test:
        pred = bench_test_pass(b, cfg, dataset, device, modes, precisions, reps)
        bench_evaluation(b, pred, dataset, cfg.protocol, 5 if on_cuda else 3, official="official" in modes)
    bench_floors(b, cfg, dataset, device, phases, not args.no_test)
    extrapolated_full_runs(b, cfg)
    if args.full:
        mode = "triton" if on_cuda else "reference"
        if not on_cuda:
            notes.append("--full on CPU runs ops='reference' (no Triton there)")
        bench_full_run(b, cfg, dataset, device, mode)
    b.checkpoint_json(meta)
    print(table(meta, b.rows))
    if args.json == "-":
        print(json.dumps({"meta": meta, "rows": b.rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
