"""``python -m rsnet.train``: RSKP training with the official schedule, evaluation and exact resume.

With no ``--data-root`` it trains on the built-in synthetic dataset (generated once, cached).
Writes ``OUT/config.json``, ``OUT/metrics.jsonl`` (one JSON object per epoch: its losses, and
its evaluation every ``--eval-every`` epochs; ``rsnet.metrics``), ``OUT/checkpoint.pt`` (atomic
and checksummed, every ``--checkpoint-every`` epochs; it also holds the records so far) and
``OUT/results.md`` (last and best evaluated epoch). With ``--val-fraction F`` a share F of the
training videos is held out and scored at every evaluation, and
``OUT/checkpoint_held_out_best.pt`` keeps the run at its best epoch on them, an epoch picked
without looking at the test split (results.md reports its test score). A folder that holds any of
these is a run: a new run refuses to start there unless ``--resume`` continues it or
``--overwrite`` replaces those files (and only those). ``--tensorboard`` also logs the records'
numbers as TensorBoard scalars to ``OUT/tensorboard/`` (each start hides what an earlier start
there logged, and logs the records so far). A loss that stops being finite stops the run at the
end of its epoch with one line, before that epoch is saved.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import checkpoint, cli, folder_lock, metrics, outputs
from .config import Config, add_config_arguments, build_config, changed_keys, format_config, to_dict, validate
from .data.dataset import PackedBatch, VideoDataset
from .devices import resolve_device
from .errors import DivergedError, UserError
from .evaluate import EvalResult
from .model import RSKP, LossTerms, MemoryRead, make_bank, rskp_loss
from .trained import evaluate_videos, load_dataset

RUN_FILES = ("checkpoint.pt", metrics.FILE_NAME, "results.md", "config.json")  # what every run writes in OUT
HELD_OUT_BEST = "checkpoint_held_out_best.pt"  # with --val-fraction: the run at its best epoch on the held-out videos
OWN_FILES = (*RUN_FILES, HELD_OUT_BEST)  # a folder holding any of these holds a run; --overwrite replaces them


def make_deterministic(seed: int, device: torch.device) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def step_chunks(first_video: int, n_videos: int, per_step: int) -> list[tuple[int, int, bool]]:
    """How an epoch's ``n_videos`` are cut, ``first_video`` videos into the run: ``(start, end,
    completes_step)`` pieces that never span an optimizer step. As the official loop counts videos
    across epochs and steps every ``per_step`` of them, the first piece completes the step the
    previous epoch left open and the last may leave one open for the next epoch."""
    pieces, start = [], 0
    while start < n_videos:
        end = min(start + per_step - (first_video + start) % per_step, n_videos)
        pieces.append((start, end, (first_video + end) % per_step == 0))
        start = end
    return pieces


class Trainer:
    """Model, memory bank and optimizer of one run, and the steps of the official schedule."""

    def __init__(self, cfg: Config, dataset: VideoDataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.model = RSKP(cfg, dataset.n_classes).to(device)
        labels = dataset.annotations.video_labels[dataset.train_indices]
        self.bank = make_bank(cfg, dataset.n_classes, dataset.train_indices, labels).to(device)
        # On CUDA the fused Adam updates every parameter in one kernel (the default, foreach, takes a
        # dozen launches a step); on CPU the default is kept.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                          weight_decay=cfg.weight_decay, fused=True if device.type == "cuda" else None)

    def read_bank(self, batch: PackedBatch, epoch: int) -> MemoryRead:
        """The inter-video branch's memory for a piece of a step, as the model calls it once EM has
        given the representatives: the bank's ``step_read`` (it reads Y_e and inserts the piece's
        representatives, in the official order)."""
        return lambda mu, p_mu: self.bank.step_read(mu, p_mu, batch.labels, batch.index, epoch)

    def inter_active(self, epoch: int) -> bool:
        return self.cfg.memory_bank and epoch > self.cfg.warmup_epochs

    def steps_done(self, epochs: int) -> int:
        """Optimizer steps taken in the first ``epochs`` epochs: one per ``videos_per_step`` videos,
        counted across epochs; the videos of a step not completed wait for the next epoch."""
        return epochs * len(self.dataset.train_indices) // self.cfg.videos_per_step

    def train_epoch(self, epoch: int, progress=None) -> dict[str, float]:
        """One epoch of the official loop: its shuffled videos in pieces that never span an optimizer
        step (``step_chunks``), each piece's gradients added to the step's; the end of the warm-up
        fills the bank. Returns the epoch's loss terms per video."""
        self.model.train()
        n_videos = len(self.dataset.train_indices)
        order = self.dataset.train_order(epoch, self.cfg.seed)
        sums = torch.zeros(len(LossTerms._fields), device=self.device)  # summed on device: no per-step sync
        for start, end, completes_step in step_chunks(epoch * n_videos, n_videos, self.cfg.videos_per_step):
            batch = self.dataset.pack_for_training(order[start:end], epoch, self.cfg.seed)
            sums += self._accumulate(batch.to(self.device), epoch)
            if completes_step:
                self._keep_parameters_finite()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if progress is not None:
                    progress.update(1)
        losses = dict(zip(LossTerms._fields, (sums / n_videos).tolist()))  # the epoch's one read back
        if not all(math.isfinite(v) for v in losses.values()):
            raise DivergedError(f"the loss stopped being finite in epoch {epoch + 1} "
                                f"({', '.join(f'{k} {v:.4g}' for k, v in losses.items())}); the run stops before "
                                f"saving it: its checkpoint keeps the epochs before (a lower --lr may help)")
        if self.cfg.memory_bank and self.cfg.intra and epoch == self.cfg.warmup_epochs:
            self.fill_bank()
        return losses

    def _keep_parameters_finite(self) -> None:
        """A non-finite loss stops the run at its epoch's end, where train_epoch reads the loss sums
        (a check each step would be a host sync each). Until then its gradients must not turn the
        parameters NaN, which the memory bank refuses mid-epoch: they are zeroed. Finite ones pass
        unchanged, bit for bit."""
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

    def _accumulate(self, batch: PackedBatch, epoch: int) -> Tensor:
        """Forward and backward of a piece of a step, in its own epoch's regime (inter-video branch,
        lambda_s): its gradients add to those the step's earlier pieces left. Returns its loss terms."""
        out = self.model(batch.x, batch.varlen, self.read_bank(batch, epoch) if self.inter_active(epoch) else None)
        terms = rskp_loss(out, batch.labels, batch.varlen, self.cfg, after_warmup=epoch > self.cfg.warmup_epochs)
        terms.total.backward()
        return torch.stack(terms).detach()

    @torch.no_grad()
    def fill_bank(self) -> None:
        """End of warm-up: every training video's representatives, scored by p_mu, in eval mode."""
        self.model.eval()
        self.bank.reset()
        for batch in self.dataset.batches_in_order(self.dataset.train_indices, self.cfg.test_batch_size):
            batch = batch.to(self.device)
            mu, p_mu = self.model.bank_candidates(batch.x, batch.varlen)
            self.bank.fill(mu, p_mu, batch.labels, batch.index)
        self.model.train()

    def evaluate(self, indices=None) -> EvalResult:
        """The evaluation of the test split, or of the videos ``indices`` (the held-out training
        videos), as every command scores (``rsnet.trained.evaluate_videos``)."""
        return evaluate_videos(self.model, self.bank, self.dataset, self.cfg, self.device, indices)

    def state_dict(self, epoch: int, best: dict | None, metrics: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": checkpoint.RUN_FORMAT,
            "version": checkpoint.RUN_VERSION,
            "epoch": epoch,
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "bank": self.bank.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": checkpoint.rng_state(),
            "grads": {name: p.grad for name, p in self.model.named_parameters()},  # a step left open
            "best": best,
            "metrics": metrics,
            "class_names": self.dataset.annotations.class_names,  # a reordered class list is refused on read
        }

    def load_state_dict(self, state: dict[str, Any], path: str | Path) -> None:
        """Continue the run whose state ``checkpoint.load_run`` read from ``path``: its trained model
        (``checkpoint.run_trained``, what ``rsnet.trained.load`` reads too), on the classes it was
        trained on, then what training adds: the optimizer, a step's gradients, the RNG."""
        trained = checkpoint.run_trained(state)
        checkpoint.check_classes(trained, self.dataset.annotations, path)
        self.model.load_state_dict(trained.model)
        self.bank.load_state_dict(trained.bank)
        self.optimizer.load_state_dict(state["optimizer"])
        for name, p in self.model.named_parameters():
            grad = state["grads"][name]
            p.grad = None if grad is None else grad.to(p.device)
        checkpoint.restore_rng_state(state["rng"])


def _check_resume_config(saved: dict[str, Any], cfg: Config, path: Path) -> None:
    changed = changed_keys(saved, cfg)
    if changed:
        raise UserError(f"--resume with a different config than {path} ({', '.join(changed)}): "
                        f"the run would not continue exactly")


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> list[Path]:
    """The run files a new run will replace; refuses to start over a run it was not told to replace."""
    if resume and overwrite:
        raise UserError("--resume continues the run in OUT and --overwrite replaces it: give one of them")
    found = [out / name for name in OWN_FILES if (out / name).exists()]
    if found and not (resume or overwrite):
        raise UserError(f"{out} holds a run ({', '.join(p.name for p in found)}): add --resume to continue it "
                        f"or --overwrite to replace it, or choose another --out")
    return found if overwrite else []


def results_table(last: dict[str, Any], best: dict[str, Any], held_out: dict[str, Any] | None = None) -> str:
    """Test scores of the last epoch, of the epoch best on the test split and, with held-out
    training videos, of the epoch best on them (picked without the test split)."""
    ious = last["iou"]
    head = "| run | epoch | " + " | ".join(f"mAP@{t:g}" for t in ious) + " | avg | cmAP |"
    rule = "|" + "---|" * (len(ious) + 4)
    rows = [head, rule]
    picked = [("last", last), ("best (picked on the test split, as in the paper)", best)]
    if held_out is not None:
        picked.append((f"best on the held-out training videos (their avg {held_out['held_out']['avg']:.2f})", held_out))
    for name, r in picked:
        rows.append(f"| {name} | {r['epoch']} | " + " | ".join(f"{d:.2f}" for d in r["dmap"]) + f" | {r['avg']:.2f} | {r['cmap']:.2f} |")
    return "\n".join(rows)


def evaluate_epoch(trainer: Trainer, records: list[dict[str, Any]], done: int, out: Path) -> None:
    """The evaluation of the last record's epoch ``done``, in the loop and at a ``--resume`` that ends
    on an epoch never evaluated: the test split and, with held-out videos, those, whose best epoch
    so far ``OUT/checkpoint_held_out_best.pt`` keeps."""
    record = records[-1]
    record.update(trainer.evaluate().to_dict())
    if trainer.cfg.val_fraction > 0:
        record["held_out"] = trainer.evaluate(trainer.dataset.held_out_indices).to_dict()
        if metrics.held_out_best(records) is record:
            checkpoint.save_atomic(trainer.state_dict(done, metrics.best(records), records), out / HELD_OUT_BEST)


def run(cfg: Config, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate; returns the last and best evaluated records. The run owns its folder
    (``rsnet.folder_lock``) from before it reads anything to its end: a second run started into
    it is refused at once."""
    validate(cfg)
    summary_writer = metrics.summary_writer_class() if cfg.tensorboard else None  # missing: an error before any work
    out = Path(cfg.out)
    outputs.check_out_folder(out)
    with folder_lock.owned(out, "a training run"):
        return _run(cfg, out, resume, overwrite, summary_writer)


def _run(cfg: Config, out: Path, resume: bool, overwrite: bool, summary_writer) -> dict[str, Any]:
    replaced = _prepare_out(out, resume, overwrite)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / metrics.FILE_NAME
    state = checkpoint.load_run(ckpt_path) if resume else None
    if state is not None:
        _check_resume_config(state["config"], cfg, ckpt_path)
        if state["epoch"] > cfg.epochs:
            raise UserError(f"{ckpt_path} is at epoch {state['epoch']}, past --epochs {cfg.epochs}")
    device = resolve_device(cfg.device)
    make_deterministic(cfg.seed, device)
    dataset = load_dataset(cfg)
    dataset.report_skipped()
    where = "on the device" if dataset.keep_features_on(device) else "on the host"
    trainer = Trainer(cfg, dataset, device)
    start_epoch, records = 0, []
    if state is not None:
        trainer.load_state_dict(state, ckpt_path)
        start_epoch, records = state["epoch"], list(state["metrics"])
        if start_epoch == cfg.epochs and not metrics.is_evaluated(records[-1]):  # --epochs ends where no evaluation was
            evaluate_epoch(trainer, records, start_epoch, out)
            checkpoint.save_atomic(trainer.state_dict(start_epoch, metrics.best(records), records), ckpt_path)
    for path in replaced:
        print(f"rskp: --overwrite: removing {path}", file=sys.stderr)
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    metrics.write(metrics_path, records)
    # Every start hides the folder's earlier events (purge_step) and logs the records so far: the
    # log shows metrics.jsonl, not a second copy of the epochs a resume redoes.
    board = summary_writer(str(out / "tensorboard"), purge_step=1) if summary_writer else None
    if board:
        metrics.add_scalars(board, records)
    outputs.write(out / "config.json", outputs.json_bytes(to_dict(cfg), indent=2))
    print(f"rskp: {len(dataset.train_indices)} train / {len(dataset.test_indices)} test videos on {device} "
          f"(features {where}); config:\n"
          f"{format_config(cfg)}", file=sys.stderr)

    with tqdm(total=trainer.steps_done(cfg.epochs) - trainer.steps_done(start_epoch), desc="train", unit="step",
              dynamic_ncols=True) as progress:  # closed on an error too
        for epoch in range(start_epoch, cfg.epochs):
            losses = trainer.train_epoch(epoch, progress)
            done = epoch + 1
            record = metrics.epoch_record(done, losses)
            records.append(record)
            if done % cfg.eval_every == 0 or done == cfg.epochs:
                evaluate_epoch(trainer, records, done, out)
                progress.set_postfix(loss=f"{losses['total']:.3f}", avg_map=f"{record['avg']:.1f}")
            metrics.write(metrics_path, records)
            if board:
                metrics.add_scalars(board, [record])
            if done % cfg.checkpoint_every == 0 or done == cfg.epochs:
                checkpoint.save_atomic(trainer.state_dict(done, metrics.best(records), records), ckpt_path)
    if board:
        board.close()
    last, best, held_out = records[-1], metrics.best(records), metrics.held_out_best(records)
    table = results_table(last, best, held_out)
    outputs.write(out / "results.md", (table + "\n").encode())
    print(table)
    return {"last": last, "best": best, "held_out_best": held_out}


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file of config keys (command-line flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt exactly")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the run in OUT (its files {', '.join(OWN_FILES)}; nothing else)")
    cli.add_debug_flag(parser)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    run(build_config(args), resume=args.resume, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
