"""Where each stage's time goes: a warm-up epoch, an epoch after warm-up and the test pass,
official-style, ``ops=reference`` and ``ops=padded``, on the data and model of ``bench.train_speed``,
under torch.profiler (docs/performance.md, 'Where the time goes').

Each ATen op's self time goes to the part of the step that ran it. The parts are the functions
this benchmark wraps in ``record_function`` ranges while it runs (the model's code is not
touched), the innermost range deciding; a backward op goes where the forward op that recorded
its autograd node ran (the node's sequence number):
  embedding GEMM   the embedding's linear layer (forward, and the weight and bias gradients);
  EM, walk         EM attention and the random walk (official-style: its dense T x T solve);
  heads, losses    the prediction heads, the losses and the rest of the model's forward
                   (ReLU, dropout, the branches' fusion);
  bank             the memory bank's reads, inserts and fill;
  optimizer        Adam's step and the zeroing of the gradients;
  data movement    packing videos into batches and moving them;
  other ops        ops outside all of these (the test pass's copies to numpy, gradient accumulation);
  Python           the profiled wall time no op accounts for: the interpreter between ops.
Both walls are printed: without the profiler (the run before, which warms up) and with it (the
fastest of ``--repeats`` profiled runs); the parts add up to the second, which the profiler's own
bookkeeping inflates.

  python -m bench.stage_profile [--dataset thumos14|activitynet1.2] [--scale F]
                                [--modes official,reference,padded] [--stages warmup,inter,test] [--repeats N]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench import train_speed
from bench.oracles import official_rskp
from rsnet import train
from rsnet.data.dataset import PackedBatch, VideoDataset
from rsnet.host_memory import keep_freed_memory
from rsnet.model import RSKP, predict, predict_batches
from rsnet.model.banks import MemoryBank
from rsnet.model.head import PredictionModule

PARTS = ("embedding GEMM", "EM", "walk", "heads, losses", "bank", "optimizer", "data movement", "other ops", "Python")
PREFIX = "part: "  # the ranges' names: PREFIX + part
STAGES = {"warmup": "warm-up epoch", "inter": "epoch after warm-up", "test": "test pass"}
MODES = {"official": "official-style", "reference": "rskp, ops=reference", "padded": "rskp, ops=padded"}

# (owner, attribute name, part): the functions wrapped while a stage is profiled.
WRAPPED = (
    (RSKP, "representatives", "EM"), (RSKP, "propagate", "walk"),
    (official_rskp, "em", "EM"), (official_rskp, "random_walk", "walk"),
    (RSKP, "forward", "heads, losses"), (PredictionModule, "forward", "heads, losses"),
    (train, "rskp_loss", "heads, losses"), (predict, "predict_packed", "heads, losses"),
    (official_rskp, "video_loss", "heads, losses"), (official_rskp, "predict_video", "heads, losses"),
    (MemoryBank, "step_read", "bank"), (MemoryBank, "fill", "bank"), (MemoryBank, "reset", "bank"),
    (official_rskp, "read_memory", "bank"), (train_speed, "official_bank_step", "bank"),
    (torch.optim.Adam, "step", "optimizer"), (torch.optim.Optimizer, "zero_grad", "optimizer"),
    (VideoDataset, "pack", "data movement"), (PackedBatch, "to", "data movement"),
)


def _in_range(name: str, fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with record_function(PREFIX + name):
            return fn(*args, **kwargs)
    return wrapped


@contextlib.contextmanager
def parts_marked(model: torch.nn.Module):
    """The functions of WRAPPED, and the model's embedding layer, run inside their part's range."""
    originals = [(owner, attr, vars(owner)[attr]) for owner, attr, _ in WRAPPED]
    try:
        for (owner, attr, part), (_, _, fn) in zip(WRAPPED, originals):
            setattr(owner, attr, _in_range(part, fn))
        model.embedding.forward = _in_range("embedding GEMM", model.embedding.forward)
        yield
    finally:
        del model.embedding.forward
        for owner, attr, fn in originals:
            setattr(owner, attr, fn)


def _part_of_range(event) -> str | None:
    """The part of the innermost range around ``event`` (itself included), or None."""
    while event is not None:
        if event.name.startswith(PREFIX):
            return event.name[len(PREFIX):]
        event = event.cpu_parent
    return None


def _backward_node(event):
    while event is not None:
        if event.name.startswith("autograd::engine::evaluate_function"):
            return event
        event = event.cpu_parent
    return None


def split_by_part(events, wall_us: float) -> dict[str, float]:
    """Seconds per part of PARTS: every op's self time where it ran (module docstring), the rest Python."""
    forward_part = {}  # autograd sequence number -> the part of the forward op that recorded it
    for event in events:
        if event.sequence_nr >= 0 and not event.name.startswith("autograd::"):
            part = _part_of_range(event)
            if part is not None:
                forward_part.setdefault(event.sequence_nr, part)
    seconds = defaultdict(float)
    for event in events:
        if event.name.startswith(PREFIX):
            continue  # a range's own self time is the interpreter's: counted in Python below
        part = _part_of_range(event)
        if part is None:
            node = _backward_node(event)
            part = forward_part.get(node.sequence_nr) if node is not None else None
        seconds[part or "other ops"] += event.self_cpu_time_total / 1e6
    seconds["Python"] = wall_us / 1e6 - sum(seconds.values())
    return {part: seconds.get(part, 0.0) for part in PARTS}


def profiled(run, model, repeats: int = 1) -> tuple[float, float, dict[str, float]]:
    """(wall s without the profiler, wall s with it, seconds per part): ``run`` once as is, then
    profiled ``repeats`` times, the fastest kept (a page-faulting or preempted run inflates a part)."""
    start = time.perf_counter()
    run()
    plain = time.perf_counter() - start
    best = None
    for _ in range(repeats):
        with parts_marked(model), profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
        if best is None or wall < best[0]:
            best = wall, split_by_part(prof.events(), wall * 1e6)
    return plain, *best


def stage_run(mode: str, stage: str, cfg, dataset, device, seed: int):
    """(model, a function running ``stage`` in ``mode``) on a fresh model; after the warm-up the
    memory bank is filled first (as the trainer fills it), outside what the function runs."""
    trainer = train_speed.new_trainer(train_speed.mode_config(cfg, mode), dataset, device, seed)
    model, epoch = trainer.model, 0 if stage == "warmup" else cfg.warmup_epochs + 1
    if stage == "inter":
        trainer.fill_bank()
    if stage == "test":
        if mode == "official":
            return model, lambda: train_speed.official_test_pass(model, dataset)
        return model, lambda: predict_batches(model, dataset.test_batches(cfg.test_batch_size), device)
    if mode == "official":
        bank = (trainer.bank.bank.clone(), trainer.bank.scores.clone(), trainer.bank.count.clone()) if stage == "inter" else None
        return model, lambda: train_speed.official_epoch(model, trainer.optimizer, dataset, epoch, seed,
                                                         cfg.videos_per_step, bank)
    return model, lambda: trainer.train_epoch(epoch)


def bench_dataset(name: str, scale: float, seed: int, device):
    """(config, dataset, lengths): ``bench.train_speed``'s data of ``--dataset name --scale scale``."""
    cfg = train_speed.bench_config(name, device)
    ann, train_idx, test_idx, lengths, _ = train_speed.SPLITS[name](scale, seed, None)
    features = train_speed.make_features(lengths, np.concatenate([train_idx, test_idx]), cfg.feature_dim, device, seed)
    return cfg, train_speed.ResidentDataset(cfg, ann, train_idx, test_idx, features), lengths


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 0.1 else f"{seconds:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=tuple(train_speed.BENCH_DATASETS), default="thumos14")
    parser.add_argument("--scale", type=float, default=None, help="default: bench.train_speed's CPU scale")
    parser.add_argument("--modes", default="official,reference,padded", help=f"of {', '.join(MODES)}")
    parser.add_argument("--stages", default="warmup,inter,test", help=f"of {', '.join(STAGES)}")
    parser.add_argument("--repeats", type=int, default=2, help="profiled runs of each row, the fastest kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    modes, stages = args.modes.split(","), args.stages.split(",")
    for name, given, known in (("--modes", modes, MODES), ("--stages", stages, STAGES)):
        if not set(given) <= set(known):
            parser.error(f"{name}: expected names of {', '.join(known)}, got {','.join(given)}")
    keep_freed_memory()  # as every rsnet command and bench.train_speed
    torch.set_num_threads(1)
    device = torch.device("cpu")
    train.make_deterministic(args.seed, device)
    scale = args.scale if args.scale is not None else train_speed.CPU_SCALE[args.dataset]
    cfg, dataset, lengths = bench_dataset(args.dataset, scale, args.seed, device)
    print(f"{args.dataset} at scale {scale:g}: {train_speed.size_text(dataset, lengths, cfg.max_seqlen)}; "
          f"one thread; {train_speed.device_name(device)}; seconds")
    print("\n| stage | implementation | wall | profiled | " + " | ".join(PARTS) + " |")
    print("|---|---|---|---|" + "---|" * len(PARTS))
    for stage in stages:
        for mode in modes:
            model, run = stage_run(mode, stage, cfg, dataset, device, args.seed)
            plain, wall, parts = profiled(run, model, args.repeats)
            print(f"| {STAGES[stage]} | {MODES[mode]} | {_fmt(plain)} | {_fmt(wall)} | "
                  + " | ".join(_fmt(parts[p]) for p in PARTS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
