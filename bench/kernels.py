"""Speed of the EM-attention, random-walk and head-pooling ops: Triton against the PyTorch baselines.

A benchmark, not a test. Per op (EM attention, K = 8, 2 iterations; random walk toward the K = 8
representatives of each video, the intra-video branch; ``pool``, the prediction head's per-video
class-wise pooling W^T X with C + 1 = 21 columns), forward and forward+backward, on
THUMOS14-shaped packed batches:
  * ``step``:  10 videos, lengths drawn from the built-in THUMOS14-like distribution of
               ``bench/_common.py`` (the official training step);
  * ``train``: the whole 200-video training set packed (N ~ 65k snippets), D = 2048.
Implementations:
  official  one video at a time, eager; the random walk by the dense T x T solve of Eq. 10
            (``reference.random_walk(method="dense")`` per video): how the published code trains
            (for ``pool`` the per-video matmul, which is also the reference);
  reference the package's reference on the packed batch (Woodbury form, a loop over the videos);
  padded    batched PyTorch: the batch padded to its longest video, masked, one batched product
            per step and one batched M x M solve (``rs_kernels.padded``): what a user writes
            without kernels;
  compiled  ``torch.compile`` (dynamic shapes) of the padded math (not for ``pool``); the compile
            time (first calls minus a steady call) is reported separately;
  triton    the package's Triton op.
Times are medians: ``triton.testing.do_bench`` on CUDA (CUDA events, warm-up), perf_counter on
CPU. Achieved GB/s counts the bytes the Triton design must move (EM: x read once per iteration
forward and once per iteration backward, dx written; walk: x read twice and x* written forward,
gO twice, x once and dx written backward; pool: x read forward, x read and dx written backward),
the same count for every implementation, beside the
copy bandwidth of ``x.clone()`` measured in the same run. Peak memory is the CUDA allocator's
peak above what was allocated before the call.

On CPU it runs at reduced size (D = 256, shorter videos) and skips Triton unless
TRITON_INTERPRET=1 (then at even smaller size): meant for a GPU (``bench/gpu_check.sh``).

  python -m bench.kernels [--json PATH|-] [--batches train,step] [--ops em,rw] [--impls ...]
                          [--compile-batches step] [--d 2048]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import triton

from bench._common import peak_mb, sync, thumos_lengths, time_ms
from rs_kernels import em_attention, padded, random_walk, reference, segment_matmul
from rs_kernels.varlen import Varlen, split, unpad

K, ITERS, TAU, W = 8, 2, 5.0, 0.5
CLASSES = 21  # the head's C + 1 columns (THUMOS14's 20 actions and the background)
IMPLS = ("official", "reference", "padded", "triton", "compiled")


# ---------------------------------------------------------------------------------------------
# the implementations
# ---------------------------------------------------------------------------------------------

def _em_official(x, cu, mu0):
    return torch.stack([reference.em_attention_video(xb, mu0, ITERS, TAU) for xb in split(x, cu)])


def _rw_official(x, cu, y, ycu):
    pairs = zip(split(x, cu), split(y, ycu))
    return torch.cat([reference.random_walk_dense_video(xb, yb, W, TAU) for xb, yb in pairs])


def _compiled_fns():
    """``torch.compile`` of the padded math (the batch padded to its longest video, one graph per
    call, dynamic in T_max and M_max); the padding and unpadding stay eager, as in ``padded``."""
    em_core = torch.compile(padded.em_attention_padded, dynamic=True)
    rw_core = torch.compile(padded.random_walk_padded, dynamic=True)

    def em(x, cu, mu0):
        return em_core(*padded.padded_with_mask(x, cu), mu0, ITERS, TAU)

    def rw(x, cu, y, ycu):
        out = rw_core(*padded.padded_with_mask(x, cu), *padded.padded_with_mask(y, ycu), W, TAU)
        return unpad(out, cu, x.shape[0])

    return em, rw


def make_ops(impls):
    compiled = _compiled_fns() if "compiled" in impls else (None, None)
    em = {"official": _em_official, "compiled": compiled[0]}
    rw = {"official": _rw_official, "compiled": compiled[1]}
    pool = {"official": lambda w, x, cu: reference.segment_matmul(w, x, cu), "compiled": None}
    for impl in ("reference", "padded", "triton"):
        em[impl] = lambda x, cu, mu0, impl=impl: em_attention(x, cu, mu0, ITERS, TAU, impl=impl)
        rw[impl] = lambda x, cu, y, ycu, impl=impl: random_walk(x, cu, y, ycu, W, TAU, impl=impl)
        pool[impl] = lambda w, x, cu, impl=impl: segment_matmul(w, x, cu, impl=impl)
    return {"em": em, "rw": rw, "pool": pool}


def bytes_moved(op: str, n: int, d: int, elem: int) -> tuple[int, int]:
    """(forward, forward+backward) bytes the Triton design must move (see the module docstring)."""
    nd = n * d * elem
    if op == "em":
        return ITERS * nd, (2 * ITERS + 1) * nd
    if op == "pool":
        return nd, 3 * nd
    return 3 * nd, 7 * nd


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------

def copy_gbps(x, device) -> float:
    ms = time_ms(lambda: x.clone(), device)
    return 2 * x.numel() * x.element_size() / (ms * 1e-3) / 1e9


def make_batch(lengths, d, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    x = torch.randn(n, d, generator=gen).relu_().to(device)
    cu = Varlen.from_lengths(lengths, device)
    mu0 = (torch.randn(K, d, generator=gen) / math.sqrt(d)).to(device)
    batch = len(lengths)
    y = torch.randn(batch * K, d, generator=gen).relu_().to(device)  # the K representatives of each video
    ycu = Varlen.uniform(batch, K, device)
    weights = torch.rand(n, CLASSES, generator=gen).to(device)  # the head's class-wise attention shares
    return x, cu, mu0, y, ycu, weights


def bench_case(op, impl, fn, batch, device, d) -> dict:
    x, cu, mu0, y, ycu, weights = batch
    n = x.shape[0]
    xg = x.detach().clone().requires_grad_()
    if op == "pool":
        pg = weights.detach().clone().requires_grad_()
        fwd = lambda: fn(weights, x, cu)  # noqa: E731
        out_grad = torch.randn(cu.batch_size, CLASSES, d, device=device)
        both = lambda: fn(pg, xg, cu).backward(out_grad)  # noqa: E731
    elif op == "em":
        pg = mu0.detach().clone().requires_grad_()
        fwd = lambda: fn(x, cu, mu0)  # noqa: E731
        out_grad = torch.randn(cu.batch_size, K, d, device=device)
        both = lambda: fn(xg, cu, pg).backward(out_grad)  # noqa: E731
    else:
        pg = y.detach().clone().requires_grad_()
        fwd = lambda: fn(x, cu, y, ycu)  # noqa: E731
        out_grad = torch.randn(n, d, device=device)
        both = lambda: fn(xg, cu, pg, ycu).backward(out_grad)  # noqa: E731
    row = {"op": op, "impl": impl, "n": n, "videos": cu.batch_size, "d": d}
    compile_s = None
    if impl == "compiled":  # first calls compile (forward, then backward graphs)
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            fwd()
        both()
        sync(device)
        first = time.perf_counter() - start
    with torch.no_grad():
        row["fwd_ms"] = time_ms(fwd, device)
    row["fwd_bwd_ms"] = time_ms(both, device, grad_to_none=[xg, pg])
    if impl == "compiled":
        compile_s = max(first - (row["fwd_ms"] + row["fwd_bwd_ms"]) * 1e-3, 0.0)
    row["compile_s"] = compile_s
    fb, fbb = bytes_moved(op, n, d, x.element_size())
    row["fwd_gbps"] = fb / (row["fwd_ms"] * 1e-3) / 1e9
    row["fwd_bwd_gbps"] = fbb / (row["fwd_bwd_ms"] * 1e-3) / 1e9
    row["peak_mb"] = peak_mb(both, device)
    xg.grad = pg.grad = None
    return row


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(meta, rows) -> str:
    lines = [
        f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | python {meta['python']}",
        f"copy bandwidth (x.clone() of the {meta.get('copy_batch')} batch): {meta['copy_gbps']:.0f} GB/s; "
        f"BLOCK_T {meta.get('block_t')}, {meta.get('num_warps')} warps",
        "",
        "| op | batch | N | D | impl | fwd ms | fwd+bwd ms | fwd x | fwd+bwd x | fwd GB/s | fwd+bwd GB/s | "
        "% copy (fwd+bwd) | peak MB | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['batch']} | {r['n']} | {r['d']} | {r['impl']} | {r['fwd_ms']:.3f} | "
            f"{r['fwd_bwd_ms']:.3f} | {_fmt(r.get('fwd_speedup'), '.1f')} | {_fmt(r.get('fwd_bwd_speedup'), '.1f')} | "
            f"{r['fwd_gbps']:.0f} | {r['fwd_bwd_gbps']:.0f} | {100 * r['fwd_bwd_gbps'] / meta['copy_gbps']:.0f} | "
            f"{_fmt(r['peak_mb'], '.0f')} | {_fmt(r['compile_s'], '.1f')} |")
    lines.append("x: speed-up over the official-style path measured in the same run")
    return "\n".join(lines)


def summary(meta, rows) -> str:
    """The short table: Triton's times and its forward / forward+backward speed-ups over the
    official-style path, the padded batched PyTorch and its ``torch.compile``."""
    baselines = ("official", "padded", "compiled")
    lines = [f"{meta['device']}: triton ops (ms; speed-up fwd / fwd+bwd over each baseline)",
             "| op | batch | fwd ms | fwd+bwd ms | " + " | ".join(f"vs {b}" for b in baselines) + " | fwd+bwd % of copy BW |",
             "|---|---|---|---|" + "---|" * len(baselines) + "---|"]
    by_key = {(r["op"], r["batch"], r["impl"]): r for r in rows}
    for (op, batch, impl), r in by_key.items():
        if impl != "triton":
            continue
        vs = lambda base: "-" if base is None else (  # noqa: E731
            f"{base['fwd_ms'] / r['fwd_ms']:.1f}x / {base['fwd_bwd_ms'] / r['fwd_bwd_ms']:.1f}x")
        ratios = " | ".join(vs(by_key.get((op, batch, b))) for b in baselines)
        pct = 100 * r["fwd_bwd_gbps"] / meta["copy_gbps"]
        lines.append(f"| {op} | {batch} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {ratios} | {pct:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results as JSON to this path ('-': stdout)")
    parser.add_argument("--batches", default="train,step", help="which batches, in this order")
    parser.add_argument("--ops", default="em,rw,pool")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--compile-batches", default="step,train", help="batches on which 'compiled' runs")
    parser.add_argument("--d", type=int, default=None, help="feature size (default 2048 on CUDA, 256 on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--summary-from", help="print the short table of a JSON written by --json, and exit")
    args = parser.parse_args(argv)
    if args.summary_from:
        saved = json.loads(Path(args.summary_from).read_text())
        print(summary(saved["meta"], saved["rows"]))
        return

    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    if on_cpu:
        torch.set_num_threads(1)  # stable medians on a shared machine (a descheduled worker thread stalls every op)
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    d = args.d or (2048 if not on_cpu else (64 if interp else 256))
    impls = [i for i in args.impls.split(",") if i]
    if on_cpu and not interp and "triton" in impls:
        print("CPU without TRITON_INTERPRET=1: skipping the triton implementation", file=sys.stderr)
        impls.remove("triton")
    scale = 1.0 if not on_cpu else (1 / 16 if interp else 1 / 4)
    batches = {
        "step": thumos_lengths(10, seed=1),
        "train": thumos_lengths(200, seed=0),
    }
    if on_cpu:  # reduced: shorter videos, 20 instead of 200 for the set
        batches["train"] = batches["train"][:20]
        batches = {k: [max(1, round(t * scale)) for t in v] for k, v in batches.items()}
    batches = {k: batches[k] for k in args.batches.split(",") if k}  # in the order asked

    name = torch.cuda.get_device_name(device) if not on_cpu else f"CPU ({platform.processor() or platform.machine()})"
    from rs_kernels.kernels import launch
    meta = {"device": name, "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
            "k": K, "iters": ITERS, "tau": TAU, "w": W, "dtype": "float32", "block_t": launch.BLOCK_T, "num_warps": launch.NUM_WARPS,
            "interpreter": on_cpu and interp, "copy_gbps": float("nan")}
    ops = make_ops(impls)
    rows = []
    for bname, lengths in batches.items():
        data = make_batch(lengths, d, device)
        if bname == "train" or math.isnan(meta["copy_gbps"]):
            meta["copy_gbps"] = copy_gbps(data[0], device)
            meta["copy_batch"] = bname
        for op in args.ops.split(","):
            base = None
            for impl in impls:
                if ops[op][impl] is None or (impl == "compiled" and bname not in args.compile_batches.split(",")):
                    continue
                print(f"... {op} {bname} {impl}", file=sys.stderr, flush=True)
                row = bench_case(op, impl, ops[op][impl], data, device, d)
                row["batch"] = bname
                if impl == "official":
                    base = row
                if base is not None:
                    row["fwd_speedup"] = base["fwd_ms"] / row["fwd_ms"]
                    row["fwd_bwd_speedup"] = base["fwd_bwd_ms"] / row["fwd_bwd_ms"]
                rows.append(row)
                if args.json and args.json != "-":  # after every row: a run cut short keeps what it measured
                    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        del data
        if not on_cpu:
            torch.cuda.empty_cache()
    print(table(meta, rows))
    print()
    print(summary(meta, rows))
    if args.json:
        payload = json.dumps({"meta": meta, "rows": rows}, indent=1)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload)


if __name__ == "__main__":
    main()
