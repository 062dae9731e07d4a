"""A training step reads back from the device only what it cannot know on the host.

On a GPU every read of a tensor's values from Python (.tolist(), .item(), int(), bool()) or a
data-dependent op is a host sync that drains the launch queue. A batch's offsets carry their host
values (rs_kernels.varlen.host_offsets), so the layers, ops and losses of a step read none of
them back; what is left is the memory bank's (its read, which sizes its output and hands the
offsets over on the host in one sync, and the insert's input check) and the trainer's finite-loss
check. On the CPU the reads are counted where our code makes them (the bank's offsets are read
there from a CPU tensor: free on a GPU); on a GPU the step runs under torch.cuda.set_sync_debug_mode.
"""
import dataclasses
import sys
import warnings
from pathlib import Path

import pytest
import torch

from rs_kernels import varlen
from rs_kernels.kernels import launch
from rsnet.config import Config
from rsnet.data import PackedBatch
from rsnet.losses import rskp_loss
from rsnet.memory import MemoryBank
from rsnet.model import RSKP

PACKAGES = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("rs_kernels", "rsnet"))
READS = ("item", "tolist", "__bool__", "__int__", "__index__", "__float__")
LENGTHS, N_CLASSES = (23, 1, 40, 9), 5


@pytest.fixture
def count_reads(monkeypatch):
    """Counts, by caller, the tensor reads made from rs_kernels/ and rsnet/ (not Triton's interpreter)."""
    reads: list[str] = []
    for name in READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGES):
                reads.append(f"{_name} in {caller}:{sys._getframe(1).f_lineno}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def _setup(ops: str, device: str):
    torch.manual_seed(0)
    cfg = dataclasses.replace(Config(), feature_dim=24, embed_dim=32, ops=ops, device=device)
    model = RSKP(cfg, N_CLASSES).to(device)
    bank = MemoryBank(N_CLASSES, cfg.bank_slots, cfg.embed_dim).to(device)
    labels = torch.zeros(len(LENGTHS), N_CLASSES)
    labels[torch.arange(len(LENGTHS)), torch.tensor([0, 3, 1, 3])] = 1
    labels[2, 4] = 1
    bank.insert(torch.randn(len(LENGTHS), cfg.n_representatives, cfg.embed_dim, device=device),
                torch.rand(len(LENGTHS), cfg.n_representatives, N_CLASSES, device=device), labels.to(device))
    batch = PackedBatch(torch.rand(sum(LENGTHS), cfg.feature_dim), varlen.cu_seqlens_from_lengths(LENGTHS),
                        labels, torch.arange(len(LENGTHS)))
    return cfg, model, bank, batch.to(device)


def _step(cfg, model, bank, batch, inter: bool):
    memory = bank.read(batch.labels) if inter else None
    out = model(batch.x, batch.cu_seqlens, memory)
    terms = rskp_loss(out, batch.labels, batch.cu_seqlens, cfg, after_warmup=inter)
    terms.total.backward()
    if inter:
        bank.insert(out.mu, out.p_mu[..., :N_CLASSES], batch.labels)
    return terms


@pytest.mark.parametrize("ops", ["reference", "padded", "triton"])
def test_a_warmup_step_reads_nothing_back(count_reads, ops):
    _step(*_setup(ops, "cpu"), inter=False)
    assert count_reads == []


@pytest.mark.parametrize("ops", ["reference", "padded", "triton"])
def test_an_inter_video_step_reads_only_the_bank_offsets(count_reads, ops):
    _step(*_setup(ops, "cpu"), inter=True)
    assert len(count_reads) == 1 and "rs_kernels/varlen.py" in count_reads[0], count_reads


def test_host_offsets_follow_in_place_changes():
    cu = varlen.cu_seqlens_from_lengths([2, 3])
    assert varlen.host_offsets(cu) == (0, 2, 5)
    cu[2] = 4
    assert varlen.host_offsets(cu) == (0, 2, 4)
    with pytest.raises(ValueError, match="must run from 0 to 5"):
        varlen.check_cu_seqlens(cu, 5)


def test_offsets_keep_their_host_values_when_moved():
    """Moved to the meta device, whose tensors have no values to read: only kept offsets can answer."""
    cu = varlen.cu_seqlens_from_lengths([4, 0, 1])
    assert varlen.host_seqlens(varlen.offsets_to(cu, "meta")) == [4, 0, 1]
    assert varlen.host_seqlens(varlen.uniform_cu_seqlens(3, 8, "meta")) == [8] * 3
    assert varlen.host_seqlens(varlen.tile_offsets(varlen.offsets_to(cu, "meta"), 2)) == [4, 0, 1] * 2
    batch = PackedBatch(torch.zeros(5, 2), cu, torch.zeros(3, 1), torch.arange(3)).to("meta")
    assert varlen.host_seqlens(batch.cu_seqlens) == [4, 0, 1]
    with pytest.raises(NotImplementedError):  # what an offsets tensor without kept values does there
        varlen.host_offsets(torch.tensor([0, 4], device="meta"))


@pytest.mark.gpu
@pytest.mark.parametrize("inter, allowed", [(False, 0), (True, 2)])
def test_gpu_step_syncs(inter, allowed):
    """Warm-up step: no sync at all. Inter-video step: the bank's read (its size and offsets) and insert check."""
    setup = _setup("triton", "cuda")
    _step(*setup, inter=inter)  # compile the kernels first
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _step(*setup, inter=inter)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= allowed, syncs


def test_block_table_is_built_once_per_offsets_and_rows():
    """The ops of a step share cu_seqlens: their kernels' block table is built once, and again only
    for other rows or after an in-place change."""
    cu = varlen.cu_seqlens_from_lengths([40, 1, 33])
    table = launch.block_table(cu, 74)
    assert launch.block_table(cu, 74) is table
    assert launch.block_table(cu, 80) is not table
    cu[2] = 2
    rebuilt = launch.block_table(cu, 74)
    assert rebuilt is not table and not torch.equal(rebuilt[1], table[1])
