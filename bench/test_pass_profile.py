"""Where the test pass's time goes: torch.profiler's self CPU time per ATen op, official-style
(one video at a time, dense solve) against ``rsnet.model.predict_batches``, on the data and model
of ``bench.train_speed`` (docs/performance.md, 'Where the time goes').

  python -m bench.test_pass_profile [--dataset thumos14|activitynet1.2] [--scale F] [--rows N]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bench import train_speed
from rsnet import train
from rsnet.host_memory import keep_freed_memory
from rsnet.model import RSKP, predict_batches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=tuple(train_speed.BENCH_DATASETS), default="activitynet1.2")
    parser.add_argument("--scale", type=float, default=None, help="default: bench.train_speed's CPU scale")
    parser.add_argument("--rows", type=int, default=18, help="ops listed per implementation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as every rsnet command and bench.train_speed
    torch.set_num_threads(1)
    device = torch.device("cpu")
    train.make_deterministic(args.seed, device)
    cfg = train_speed.bench_config(args.dataset, device)
    scale = args.scale if args.scale is not None else train_speed.CPU_SCALE[args.dataset]
    ann, train_idx, test_idx, lengths, _ = train_speed.SPLITS[args.dataset](scale, args.seed, None)
    features = train_speed.make_features(lengths, list(test_idx), cfg.feature_dim, device, args.seed)
    dataset = train_speed.ResidentDataset(cfg, ann, train_idx, test_idx, features)
    torch.manual_seed(args.seed)
    model = RSKP(train_speed.mode_config(cfg, "reference"), dataset.n_classes).eval()
    passes = {"official-style": lambda: train_speed.official_test_pass(model, dataset),
              "rskp (ops=reference)": lambda: predict_batches(model, dataset.test_batches(cfg.test_batch_size), device)}
    print(f"{args.dataset} at scale {scale:g}: {len(test_idx)} test videos, "
          f"N = {sum(lengths[int(i)] for i in test_idx)}; one thread")
    for name, run in passes.items():
        run()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print(f"\n{name}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
