"""Memory-bank step benchmark: the csrc/ extension against the official per-class Python loop.

One training step of 10 videos at THUMOS14 settings (C = 20 classes, S = 5 slots, K = 8
representatives, D = 2048): every video reads the bank rows of its classes, then the step's
candidates are inserted. The baseline is the published code's way: for each video, for each of
its classes, ``torch.cat`` the class's queue with the video's K candidates, ``torch.sort`` the
scores, ``index_select`` the top S (and a per-class ``torch.cat`` for the read). Ours is one
``membank_gather`` and one ``membank_insert_topk_`` for the whole step.

The same step in the official per-video order (video b reads the bank after the inserts of
videos 0..b-1): one ``membank_gather_insert_`` against the loop it stands for, a
``membank_gather`` and a ``membank_insert_topk_`` per video.

Medians over repeats, after warm-up; CUDA events on the GPU. Both run in this process, on the
device named beside each figure. Run: ``python -m bench.membank [--repeats N] [--device cpu|cuda|all]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench._common import device_name
from rs_kernels import membank

C, S, K, D, B = 20, 5, 8, 2048, 10


def official_step(bank, scores, labels, mu, p_mu):
    """The official loop: per video, per class, cat + sort + index_select (and the read)."""
    reads = []
    for b in range(labels.shape[0]):
        classes = labels[b].nonzero().flatten().tolist()
        reads.append(torch.cat([bank[c] for c in classes]))
    for b in range(labels.shape[0]):
        for c in labels[b].nonzero().flatten().tolist():
            pool = torch.cat([bank[c], mu[b]])
            pool_scores = torch.cat([scores[c], p_mu[b, :, c]])
            ranked, order = torch.sort(pool_scores, descending=True)
            bank[c] = pool.index_select(0, order[:S])
            scores[c] = ranked[:S]
    return reads


def our_step(bank, scores, count, labels, mu, p_mu):
    y, y_cu = membank.membank_gather(bank, count, labels)
    membank.membank_insert_topk_(bank, scores, count, mu, p_mu, labels)
    return y, y_cu


def per_video_loop(bank, scores, count, labels, mu, p_mu):
    """membank_gather_insert_'s baseline: for each video in order, a gather, then an insert."""
    reads = []
    for b in range(labels.shape[0]):
        reads.append(membank.membank_gather(bank, count, labels[b:b + 1]))
        membank.membank_insert_topk_(bank, scores, count, mu[b:b + 1], p_mu[b:b + 1], labels[b:b + 1])
    return reads


def ordered_step(bank, scores, count, labels, mu, p_mu):
    return membank.membank_gather_insert_(bank, scores, count, mu, p_mu, labels)


def make_inputs(device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bank = torch.randn(C, S, D, generator=gen)
    scores = torch.rand(C, S, generator=gen).sort(dim=1, descending=True).values
    count = torch.full((C,), S, dtype=torch.int64)  # a full bank, as after the warm-up fill
    labels = torch.zeros(B, C, dtype=torch.bool)
    for b in range(B):  # THUMOS14 videos have one class, some two
        labels[b, torch.randperm(C, generator=gen)[: 1 + int(torch.rand((), generator=gen) < 0.3)]] = True
    mu = torch.randn(B, K, D, generator=gen)
    p_mu = torch.softmax(torch.randn(B, K, C, generator=gen), dim=-1)
    return [t.to(device) for t in (bank, scores, count, labels, mu, p_mu)]


def time_it(fn, device, repeats, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)  # us
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def bench(device, repeats):
    bank, scores, count, labels, mu, p_mu = make_inputs(device)
    ours_state = (bank.clone(), scores.clone(), count.clone())
    official_state = (bank.clone(), scores.clone())
    t_official = time_it(lambda: official_step(*official_state, labels, mu, p_mu), device, repeats)
    t_ours = time_it(lambda: our_step(*ours_state, labels, mu, p_mu), device, repeats)
    print(f"{device.type:4s}  official loop {t_official:9.1f} us   rs_kernels {t_ours:8.1f} us   "
          f"speed-up {t_official / t_ours:6.1f}x   [{device_name(device)}]")
    loop_state = (bank.clone(), scores.clone(), count.clone())
    ordered_state = (bank.clone(), scores.clone(), count.clone())
    t_loop = time_it(lambda: per_video_loop(*loop_state, labels, mu, p_mu), device, repeats)
    t_ordered = time_it(lambda: ordered_step(*ordered_state, labels, mu, p_mu), device, repeats)
    print(f"{device.type:4s}  in video order: gather + insert per video {t_loop:9.1f} us   "
          f"membank_gather_insert_ {t_ordered:8.1f} us   speed-up {t_loop / t_ordered:6.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = parser.parse_args()
    print(f"memory-bank step: B={B} videos, C={C}, S={S}, K={K}, D={D}; gather + insert, batched and in video order; "
          f"median of {args.repeats}; torch {torch.__version__}")
    devices = [] if args.device == "cuda" else [torch.device("cpu")]
    if args.device != "cpu":
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        else:
            print("cuda  not available: skipped")
    for device in devices:
        bench(device, args.repeats)


if __name__ == "__main__":
    main()
