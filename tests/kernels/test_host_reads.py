"""A training step reads back from the device only what it cannot know on the host.

On a GPU every read of a tensor's values from Python (.tolist(), .item(), int(), bool()) or a
data-dependent op is a host sync that drains the launch queue. A batch's offsets travel as a
rs_kernels.varlen.Varlen, which holds their host values and the kernels' block table, so the
layers, ops and losses of a step read none of them back; what is left is the memory bank's (its
read, which sizes its output, and the insert's input check); the trainer reads an epoch's losses
once, at its end. On the CPU the reads are counted where our code makes them (the bank's offsets are read
there from a CPU tensor: free on a GPU); on a GPU the step runs under torch.cuda.set_sync_debug_mode.
"""
import copy
import dataclasses
import sys
import warnings
from pathlib import Path

import pytest
import torch

import rs_kernels
from rs_kernels import varlen
from rs_kernels.varlen import Varlen
from rsnet.config import Config
from rsnet.data.dataset import PackedBatch, WTALCDataset
from rsnet.model import RSKP, MemoryBank
from rsnet.model.losses import rskp_loss
from rsnet.synthetic import SyntheticSpec, generate
from rsnet.train import Trainer

PACKAGES = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("rs_kernels", "rsnet"))
READS = ("item", "tolist", "__bool__", "__int__", "__index__", "__float__")
LENGTHS, N_CLASSES = (23, 1, 40, 9), 5
MS = (2, 0, 3, 1)  # representatives per video, one video without any


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
    batch = PackedBatch(torch.rand(sum(LENGTHS), cfg.feature_dim), Varlen.from_lengths(LENGTHS), labels,
                        torch.arange(len(LENGTHS)))
    return cfg, model, bank, batch.to(device)


def _step(cfg, model, bank, batch, inter: bool):
    memory = (lambda mu, p_mu: bank.read(batch.labels)) if inter else None
    out = model(batch.x, batch.varlen, memory)
    terms = rskp_loss(out, batch.labels, batch.varlen, cfg, after_warmup=inter)
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
    """The bank's read hands its offsets over as a tensor (a CPU one here): they are read once."""
    _step(*_setup(ops, "cpu"), inter=True)
    assert len(count_reads) == 1 and "rs_kernels/varlen.py" in count_reads[0], count_reads


def _warmup_trainer(root: Path, device: str) -> Trainer:
    """A trainer of 7 tiny videos in steps of 3, in its warm-up for 2 epochs, its features on ``device``."""
    generate(root, SyntheticSpec(n_train=7, n_test=2, length_scale=0.1), seed=0)
    cfg = Config(data_root=str(root), embed_dim=32, videos_per_step=3, warmup_epochs=2, device=device)
    dataset = WTALCDataset(root)
    dataset.keep_features_on(device)  # as rsnet.train.run does on a GPU
    return Trainer(cfg, dataset, torch.device(device))


def test_a_warmup_epoch_reads_back_once_its_losses(count_reads, tmp_path):
    """Its steps, packing and optimizer included, read nothing back; its end reads the loss sums,
    which also tell a diverged run (test_train)."""
    trainer = _warmup_trainer(tmp_path / "tiny", "cpu")
    count_reads.clear()  # what building the model read
    trainer.train_epoch(0)
    assert len(count_reads) == 1 and "rsnet/train.py" in count_reads[0], count_reads


@pytest.mark.gpu
def test_gpu_warmup_epoch_syncs_once(tmp_path):
    """The epoch's only sync is the read of its loss sums: its steps run ahead of the host."""
    trainer = _warmup_trainer(tmp_path / "tiny", "cuda")
    trainer.train_epoch(0)  # compile the kernels first
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, syncs


def test_varlen_checks_its_offsets():
    with pytest.raises(ValueError, match="never decrease"):
        Varlen.from_lengths([3, -1])
    with pytest.raises(ValueError, match="matching the host offsets"):
        Varlen(torch.tensor([0, 2, 5]), (0, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Varlen.from_lengths([2]).offsets = (0, 3)
    with pytest.raises(ValueError, match="must run from 0 to 6"):
        rs_kernels.segment_matmul(torch.ones(6, 2), torch.ones(6, 3), Varlen.from_lengths([2, 3]))


def test_offsets_keep_their_host_values_when_moved():
    """Moved to the meta device, whose tensors have no values to read: only held offsets can answer."""
    seqs = Varlen.from_lengths([4, 0, 1])
    assert seqs.to("meta").lengths == [4, 0, 1]
    assert Varlen.uniform(3, 8, "meta").lengths == [8] * 3
    assert seqs.to("meta").tile(2).lengths == [4, 0, 1] * 2
    assert seqs.to("meta").tile(2).cu_seqlens.device.type == "meta"
    batch = PackedBatch(torch.zeros(5, 2), seqs, torch.zeros(3, 1), torch.arange(3)).to("meta")
    assert batch.varlen.lengths == [4, 0, 1] and batch.cu_seqlens.device.type == "meta"
    with pytest.raises(NotImplementedError):  # what an offsets tensor alone does there
        varlen.as_varlen(torch.tensor([0, 4], device="meta"))


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


@pytest.fixture
def count_builds(monkeypatch):
    """Counts the block tables built (by block size)."""
    builds: list[int] = []
    real = varlen._build_block_table
    monkeypatch.setattr(varlen, "_build_block_table", lambda seqs, block_t: builds.append(block_t) or real(seqs, block_t))
    return builds


def _triton_ops_forward_backward(cu_seqlens, y_cu_seqlens) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(n, 16, generator=gen).relu().requires_grad_() for n in (sum(LENGTHS), sum(MS)))
    mu0, w = torch.randn(3, 16, generator=gen), torch.rand(sum(LENGTHS), 5, generator=gen)
    (rs_kernels.em_attention(x, cu_seqlens, mu0, impl="triton").sum()
     + rs_kernels.random_walk(x, cu_seqlens, y, y_cu_seqlens, impl="triton").sum()
     + rs_kernels.segment_matmul(w, x, cu_seqlens, impl="triton").sum()).backward()


def test_block_table_is_built_once_per_batch_and_block_size(count_builds):
    seqs = Varlen.from_lengths([40, 1, 33])
    table = seqs.block_table(32)
    assert seqs.block_table(32) is table and copy.copy(seqs).block_table(32) is table
    assert seqs.to("cpu") is seqs
    assert seqs.block_table(16) is not table and count_builds == [32, 16]
    assert table.first.tolist() == [0, 2, 3, 5] and table.video.tolist() == [0, 0, 1, 2, 2]


def test_int32_and_copied_offsets_read_nothing_and_build_one_table(count_reads, count_builds):
    """The ops of a batch, forward and backward, with int32 offsets and copies of the metadata (as
    a data loader or a user's code may hand over): no host read, one block table for all of them."""
    seqs, yseqs = Varlen.from_lengths(LENGTHS, dtype=torch.int32), Varlen.from_lengths(MS, dtype=torch.int32)
    _triton_ops_forward_backward(seqs, yseqs)
    for same in (copy.copy(seqs), copy.deepcopy(seqs)):
        _triton_ops_forward_backward(same, yseqs)
    assert count_reads == [] and len(count_builds) == 1


def test_plain_offsets_tensors_are_read_at_each_call(count_reads, count_builds):
    """The control of the test above, and what hidden host offsets on a tensor came to for int32
    offsets or a clone: each op call reads the offsets back and builds its own block table."""
    cu, ycu = (Varlen.from_lengths(n, dtype=torch.int32).cu_seqlens.clone() for n in (LENGTHS, MS))
    _triton_ops_forward_backward(cu, ycu)
    assert len(count_reads) == 4 and all("rs_kernels/varlen.py" in r for r in count_reads), count_reads
    assert len(count_builds) == 3
