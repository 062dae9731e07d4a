"""A trained model as a value, loaded in one place: no trainer, no optimizer, no features.

``load(path, device)`` turns a run's folder or ``checkpoint.pt``, its exported ``.safetensors`` or
the published RSKP code's ``N.pkl`` (``rsnet.checkpoint.load_trained``) into a ``Trained``: the
model in eval mode on the device, its config, its class names and its memory bank. Every command
that uses a trained model (``rsnet.infer``, ``rsnet.diagnose``, ``rsnet.plot``, ``rsnet.ablate``'s
Table 4, ``rsnet.checkpoint export``) goes through it; ``rsnet.train --resume`` reads the same
stored model (``rsnet.checkpoint.run_trained``) and adds what training needs: the optimizer, a
step's gradients, the random state. The dataset a command scores is loaded apart (``load_dataset``), only by the
commands that need its features.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import CHECKPOINT_FORMATS, CheckpointError, TrainedModel, check_classes, load_trained
from .config import Config, apply_overrides, snippets_per_second, validate
from .data import Annotations, DataError, annotation_folder, load_annotations
from .data.activitynet_json import load_activitynet_json
from .data.dataset import VideoDataset, WTALCDataset
from .data.json_dataset import JSONDataset
from .devices import resolve_device
from .errors import UserError
from .evaluate import EvalResult, evaluate
from .model import RSKP, MemoryBank
from .model.predict import Fusion, predict_batches
from .presets import PRESETS, json_layout_files
from .protocols import PROTOCOL_IOUS
from .synthetic import ensure_synthetic


@dataclass(frozen=True)
class Trained:
    """A trained model ready to predict."""

    config: Config  # the run's config, on this machine's data_root and device
    model: RSKP  # eval mode, on ``device``
    bank: MemoryBank | None  # the class-wise memory bank inference reads; None: the run has none (or the video-wise one)
    bank_state: dict[str, Tensor]  # the run's bank as saved, whichever kind (what --resume restores)
    class_names: list[str]  # the dataset's classes, in label order
    device: torch.device
    source: Path  # the file it was read from


def dataset_root(cfg: Config) -> Path:
    """The loader root of the run's data: ``data_root``, else its synthetic preset's (generated once, cached)."""
    if cfg.data_root is not None:
        return Path(cfg.data_root)
    return ensure_synthetic(cfg.cache_dir, cfg.preset, cfg.data_seed)


def json_files(cfg: Config) -> tuple[Path, Path] | None:
    """The run's annotation file and features folder in the JSON layout (``--annotations``, or a
    synthetic preset written in it); None: a W-TALC folder."""
    if cfg.annotations is not None:
        return Path(cfg.annotations), Path(cfg.features)
    if cfg.data_root is None and PRESETS[cfg.preset].spec.layout == "json":
        return json_layout_files(dataset_root(cfg) / cfg.dataset)
    return None


def load_dataset(cfg: Config) -> VideoDataset:
    """The run's dataset, features and all, in whichever layout the config names."""
    files = json_files(cfg)
    if files is None:
        return WTALCDataset(dataset_root(cfg), cfg.dataset, cfg.feature_dim, cfg.max_seqlen, cfg.val_fraction,
                            cfg.seed, cfg.feature_cache, snippets_per_second(cfg))
    return JSONDataset(*files, cfg.dataset, cfg.feature_dim, cfg.max_seqlen, cfg.val_fraction, cfg.seed,
                       cfg.feature_cache, snippets_per_second(cfg), cfg.classes, cfg.train_subsets, cfg.test_subsets,
                       cfg.skip_missing)


def dataset_of(trained: Trained) -> VideoDataset:
    """The dataset a trained model was trained on (or the one under the ``--data-root`` it was loaded
    with), checked to list the classes it classifies, in its order."""
    try:
        dataset = load_dataset(trained.config)
    except DataError as exc:
        raise DataError(f"{trained.source} is a model of {trained.config.dataset}: {exc}") from exc
    if dataset.annotations.class_names != trained.class_names:
        raise CheckpointError(f"{trained.source} was trained on other classes ({', '.join(trained.class_names)}) "
                              f"than {dataset.annotations.folder} lists ({', '.join(dataset.annotations.class_names)})")
    return dataset


def dataset_annotations(cfg: Config) -> Annotations:
    """The run's dataset's ground truth alone (numpy, no features)."""
    files = json_files(cfg)
    if files is not None:
        return load_activitynet_json(files[0], cfg.classes)
    folder = dataset_root(cfg) / cfg.dataset
    if not folder.is_dir():
        raise DataError(f"dataset folder not found: {folder} (expected ROOT/{cfg.dataset}/ in the W-TALC layout)")
    return load_annotations(annotation_folder(folder, cfg.dataset))


def load(path: str | Path, device: str = "auto", data_root: str | None = None, checkpoint_format: str = "auto",
         dataset_needed: bool = True, data: dict[str, str | None] | None = None) -> Trained:
    """The trained model of ``path`` on ``device``. ``data_root`` names the folder holding its dataset
    here (required for exported weights of a W-TALC folder and the published code's checkpoints),
    or ``data`` its JSON layout (``annotations``, ``features``, ``classes``: ``json_data``); where
    either is given, or the file records no class names, the dataset's annotations are read and
    the model's classes checked against them. ``dataset_needed`` False: the caller reads no dataset
    (features alone), so exported weights of a W-TALC folder need no ``data_root``."""
    path = Path(path)
    elsewhere = data_root if data is None else data["annotations"]  # data named here: what the weights need
    stored = load_trained(path, checkpoint_format, elsewhere, dataset_needed)
    cfg = run_config(stored, path, device, data_root, data)
    class_names = stored.class_names
    if elsewhere is not None or class_names is None:
        try:
            annotations = dataset_annotations(cfg)
        except DataError as exc:
            raise DataError(f"{path} is a model of {cfg.dataset}: {exc}") from exc
        check_classes(stored, annotations, path)
        class_names = annotations.class_names
    on = resolve_device(device)
    model = RSKP(cfg, len(class_names))
    load_fitting(model, stored.model, path, "model")
    return Trained(cfg, model.to(on).eval(), class_bank(cfg, len(class_names), stored.bank, on, path), stored.bank,
                   class_names, on, path)


def run_config(stored: TrainedModel, path: Path, device: str, data_root: str | None,
               data: dict[str, str | None] | None = None) -> Config:
    """The stored run's config, with this machine's ``device`` and ``data_root`` or JSON ``data`` (where given)."""
    cfg = dataclasses.replace(apply_overrides(Config(), stored.config, str(path)), device=device)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=data_root, annotations=None, features=None, classes=None,
                                  train_subsets=None, test_subsets=None)
    if data is not None:
        cfg = dataclasses.replace(cfg, data_root=None, **data)
    validate(cfg)
    return cfg


def load_fitting(module: torch.nn.Module, state: dict[str, Tensor], path: Path, what: str) -> None:
    """``state`` into ``module``, or a CheckpointError naming the file and every tensor whose name or
    shape does not fit the config the file records (a file whose metadata and tensors disagree)."""
    expected = module.state_dict()
    problems = [f"{name} {tuple(state[name].shape)} where the config needs {tuple(want.shape)}"
                for name, want in expected.items() if name in state and state[name].shape != want.shape]
    problems += [f"{name} missing" for name in expected if name not in state]
    problems += [f"{name} unexpected" for name in state if name not in expected]
    if problems:
        raise CheckpointError(f"{path}: its {what}'s tensors do not fit the config it records: {'; '.join(problems)}")
    module.load_state_dict(state)


def class_bank(cfg: Config, n_classes: int, state: dict[str, Tensor], device: torch.device,
               path: Path) -> MemoryBank | None:
    """The class-wise memory bank of the run's ``state``; None when the run has none (or the video-wise one)."""
    if not (cfg.memory_bank and cfg.bank == "class"):
        return None
    bank = MemoryBank(n_classes, cfg.bank_slots, cfg.embed_dim)
    load_fitting(bank, state, path, "memory bank")
    return bank.to(device)


def evaluate_videos(model: RSKP, bank: MemoryBank | None, dataset: VideoDataset, cfg: Config, device: torch.device,
                    indices=None, branches: str = "intra", fusion: Fusion | None = None) -> EvalResult:
    """The evaluation of the test split, or of the videos ``indices`` (the held-out training videos),
    scored by ``branches`` and ``fusion`` (``rsnet.model.predict``) under the run's protocol,
    leniency and thresholds: what a training run reports, and what every command scores with."""
    indices = dataset.test_indices if indices is None else indices
    batches = dataset.batches_in_order(indices, cfg.test_batch_size)
    scores, cas = predict_batches(model, batches, device, branches, bank, fusion)
    return evaluate(scores, cas, dataset.annotations, indices, protocol=cfg.protocol, lenient=cfg.lenient,
                    iou_thresholds=PROTOCOL_IOUS[cfg.protocol], fps_factor=snippets_per_second(cfg))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --checkpoint-format, --data-root and --device: the flags of every command that
    reads a trained model."""
    parser.add_argument("--checkpoint", required=True,
                        help="a run's folder (the --out of python -m rsnet.train) or its checkpoint.pt, its weights "
                             "exported by python -m rsnet.checkpoint export, or a checkpoint of the published RSKP "
                             "code (ckpt/<dataset>/<id>/<epoch>.pkl)")
    parser.add_argument("--checkpoint-format", choices=CHECKPOINT_FORMATS, default="auto",
                        help="auto: told apart by suffix, signature and keys; official: the published code's state_dict")
    parser.add_argument("--data-root", default=None,
                        help="W-TALC root holding the checkpoint's dataset (default: the one recorded in checkpoint.pt; "
                             "exported weights need it where trained on a W-TALC folder, and the published code's "
                             "checkpoints always: they record none)")
    parser.add_argument("--annotations", default=None,
                        help="ActivityNet JSON annotations of the checkpoint's dataset, with --features DIR (the JSON "
                             "layout; default: the one recorded in checkpoint.pt)")
    parser.add_argument("--features", type=Path, default=None,
                        help="with --annotations: the folder of VIDEO_ID.npy (or packed store) of its videos")
    parser.add_argument("--classes", default=None, help="with --annotations: the class file the run was trained with")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one) | cpu | cuda | cuda:N")


def json_data(args: argparse.Namespace) -> dict[str, str | None] | None:
    """The JSON layout the flags name (``--annotations``, ``--features``, ``--classes``), for ``load``; None: none."""
    if args.annotations is None:
        if args.classes is not None:
            raise UserError("--classes applies to --annotations FILE.json")
        return None
    if args.features is None:
        raise UserError("--annotations needs --features DIR, the folder of its videos' features")
    if args.data_root is not None:
        raise UserError("--data-root (a W-TALC folder) and --annotations (the JSON layout) name two datasets: give one")
    return {"annotations": args.annotations, "features": str(args.features), "classes": args.classes}
