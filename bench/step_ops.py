"""ATen calls a training step dispatches: a CPU-countable proxy for a GPU step's kernel launches.

A benchmark, not a test. One step of 10 videos (lengths 1-40 snippets, D = 16: the count does not
depend on the sizes) with the Triton ops, counted with a TorchDispatchMode: every call that reaches
ATen from Python, views included; the insides of the custom ops (their few launches each) are one
call. Warm-up step (main and intra-video branches) and inter-video step (plus the memory bank).
On a CPU the Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1 is set here).

  python -m bench.step_ops
"""
from __future__ import annotations

import collections
import dataclasses
import os

import torch
from torch.utils._python_dispatch import TorchDispatchMode

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before rs_kernels decorates its kernels


from rs_kernels.varlen import Varlen
from rsnet.config import Config
from rsnet.model import RSKP, MemoryBank
from rsnet.model.losses import rskp_loss

VIDEOS, CLASSES, DIM = 10, 20, 16


class CountCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = dataclasses.replace(Config(), feature_dim=DIM, embed_dim=DIM, ops="triton")
    model = RSKP(cfg, CLASSES).to(device)
    bank = MemoryBank(CLASSES, cfg.bank_slots, DIM).to(device)
    optimizer = torch.optim.Adam(model.parameters(), fused=True if device.type == "cuda" else None)
    lengths = [(7 * b) % 40 + 1 for b in range(VIDEOS)]
    labels = torch.zeros(VIDEOS, CLASSES, device=device)
    labels[torch.arange(VIDEOS), torch.arange(VIDEOS) % CLASSES] = 1
    bank.insert(torch.randn(VIDEOS, cfg.n_representatives, DIM, device=device),
                torch.rand(VIDEOS, cfg.n_representatives, CLASSES, device=device), labels)
    x, cu = torch.rand(sum(lengths), DIM, device=device), Varlen.from_lengths(lengths, device)

    def step(inter: bool) -> None:
        def read_and_insert(mu, p_mu):
            return bank.read_in_order(mu, p_mu[..., :CLASSES], labels)

        out = model(x, cu, read_and_insert if inter else None)
        terms = rskp_loss(out, labels, cu, cfg, after_warmup=inter)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()

    print(f"ATen calls per training step ({VIDEOS} videos, ops=triton, {device.type}):")
    for inter in (False, True):
        step(inter)  # compile the kernels first
        with CountCalls() as counter:
            step(inter)
        top = ", ".join(f"{name} {n}" for name, n in counter.calls.most_common(6))
        print(f"  {'inter-video' if inter else 'warm-up':11s} {sum(counter.calls.values()):5d}   most: {top}")


if __name__ == "__main__":
    main()
