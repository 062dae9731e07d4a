"""Every setting of a run in one dataclass: the official RSKP defaults (THUMOS14).

Precedence, lowest first: the dataclass defaults, the dataset's defaults (``DATASET_DEFAULTS``,
for the dataset the run trains on, e.g. ``--dataset ActivityNet1.2``), the synthetic preset's
overrides (when no ``--data-root`` is given, nor one in the file: its ``data_root: null`` gives
none), a ``--config`` YAML or JSON file, then command-line
flags. The dataset itself is whichever of these names it last (a flag, the file, the preset).
Unknown keys are an error everywhere, so a typo never silently trains the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rs_kernels import IMPLS

from .datasets import CUSTOM, DATASETS, WTALC_DATASETS
from .errors import UserError
from .presets import PRESETS
from .protocols import PROTOCOL_IOUS


@dataclass
class Config:
    # data
    dataset: str = "Thumos14reduced"
    data_root: str | None = None  # None: the built-in synthetic dataset of `preset`
    preset: str = "default"  # synthetic preset used when data_root is None (rsnet.presets)
    cache_dir: str = ".rskp_cache"  # where synthetic datasets are generated and reused
    feature_cache: str | None = None  # a folder of packed feature stores (rsnet.data convert); None: beside the data
    # the JSON layout, instead of data_root: ActivityNet JSON annotations and a folder of VIDEO_ID.npy
    # (or a packed store); docs/datasets.md
    annotations: str | None = None
    features: str | None = None
    classes: str | None = None  # a file fixing the class order, one a line; None: the sorted set of the labels
    train_subsets: str | None = None  # comma-separated subsets of the annotations that train; None: the dataset's
    test_subsets: str | None = None  # ... that test; None: the dataset's (ActivityNet: training, validation)
    skip_missing: bool = False  # leave out the annotations' videos that have no features, instead of refusing
    # the features' snippet rate: a snippet is frames_per_snippet frames at fps (I3D as W-TALC: 16 at 25);
    # a video's length must be its duration x fps / frames_per_snippet, and the evaluation maps snippets to seconds so
    fps: float = 25.0
    frames_per_snippet: float = 16.0
    data_seed: int = 0  # seed of the synthetic dataset (the training seed is `seed`)
    # run
    out: str = "runs/rskp"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    ops: str = "auto"  # rs_kernels implementation: auto (CUDA -> triton) | triton | reference | padded
    epochs: int = 200
    warmup_epochs: int = 100  # the inter-video branch runs from 0-based epoch warmup_epochs + 1 on
    eval_every: int = 5
    videos_per_step: int = 10  # one optimizer step per this many videos (counted across epochs), their losses summed
    max_seqlen: int = 0  # > 0: a longer training video is sampled to this many snippets, one per equal bin; 0: whole
    # > 0: this share of the training videos (stratified by class, drawn from `seed`) is held out of
    # training and scored at every evaluation; the run keeps its checkpoint best on them. (Not
    # ActivityNet's 'validation' subset: that is its test split.)
    val_fraction: float = 0.0
    test_batch_size: int = 32
    checkpoint_every: int = 1  # epochs between checkpoints (and the last epoch); a resume redoes the rest
    tensorboard: bool = False  # also log every loss term and mAP per epoch to OUT/tensorboard (needs tensorboard)
    # optimizer (Adam, the official settings)
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 5e-4
    # model
    feature_dim: int = 2048
    embed_dim: int = 2048
    embed_precision: str = "fp32"  # fp32 | bf16: the embedding GEMM (~90% of the MACs) under bf16 autocast
    dropout: float = 0.6
    scale: float = 20.0  # s: cosine-similarity logit scale
    tau: float = 5.0  # assignment temperature of EM attention and the random walk
    em_iters: int = 2
    n_representatives: int = 8  # K online representatives per video
    walk_weight: float = 0.5  # w of the bipartite random walk
    bank_slots: int = 5  # memory-bank snippets per class
    # losses
    back_weight: float = 0.2
    att_weight: float = 0.1
    inter_weight: float = 0.5  # weight of the inter-video branch's classification losses
    spl_weight: float = 1.0  # lambda_s during warm-up
    spl_weight_after_warmup: float = 0.5
    spl_temperature: float = 0.2
    pseudo_inter_mix: float = 0.2  # q = (1 - mix) m.S + mix r.S after warm-up
    # ablation switches (supplementary Table 1); all on is the full model
    intra: bool = True  # representative snippets + intra-video random walk
    pseudo_label: bool = True  # L_spl
    memory_bank: bool = True  # inter-video branch
    att_loss: bool = True  # attention normalization loss
    # variants of supplementary Tables 2 and 3, the defaults the paper's method (docs/design.md,
    # 'Variants of Tables 2 and 3')
    representatives: str = "em"  # em | foreground | background | topk: what the online representatives summarize
    bank: str = "class"  # class (top-score slots per class) | video (one momentum-updated entry per training video)
    bank_momentum: float = 0.9  # m of the video-wise bank: entry <- m entry + (1 - m) representatives, once an epoch
    propagation_loss: str = "pseudo_label"  # pseudo_label (L_spl) | feature_l1 | feature_l2: how the walk supervises
    fusion: str = "late"  # late (an intra and an inter branch) | early (one walk toward online + bank representatives)
    # evaluation
    protocol: str = "rskp"  # rskp (the official RSKP evaluator, IoU 0.1:0.1:0.7) | anet (ActivityNet's, 0.5:0.05:0.95)
    lenient: bool = False  # a class without proposals scores 0 instead of zeroing the IoU
    # inference fusion: the video's CAS is fuse_main x the main branch + fuse_intra x the intra-video branch
    fuse_main: float = 0.6
    fuse_intra: float = 0.4


# the RSKP authors' settings for ActivityNet (LeonHLJ/RSKP issue #3), which they give for both versions
ACTIVITYNET_AUTHORS = {"dropout": 0.7, "lr": 2e-5, "weight_decay": 1e-3, "scale": 10.0, "n_representatives": 8,
                       "em_iters": 2, "fuse_main": 0.8, "fuse_intra": 0.2, "back_weight": 0.1, "att_weight": 0.1,
                       "spl_weight": 1.0}

# What a dataset changes from the dataclass (THUMOS14) defaults; docs/usage.md ("What --dataset
# ActivityNet1.2 sets") and docs/datasets.md (ActivityNet1.3) give the sources.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "Thumos14reduced": {},
    CUSTOM: {},  # one's own data: the official (THUMOS14) settings
    "ActivityNet1.2": {
        # the RSKP authors' settings for ActivityNet1.2 (LeonHLJ/RSKP issue #3)
        "dropout": 0.7, "lr": 2e-5, "weight_decay": 1e-3, "scale": 10.0, "n_representatives": 8, "em_iters": 2,
        "fuse_main": 0.8, "fuse_intra": 0.2, "back_weight": 0.1, "att_weight": 0.1, "spl_weight": 1.0,
        # the ActivityNet-capable codebases (CO2-Net, DELU) train on 60 sampled snippets per video
        # and test on whole videos, scored at ActivityNet's IoUs
        "max_seqlen": 60, "protocol": "anet",
    },
    "ActivityNet1.3": {
        **ACTIVITYNET_AUTHORS,
        # the train and test strategy of ACM-Net (ispc-lab/ACM-Net, config/model_config.py and main_act.py),
        # to which the RSKP authors point ActivityNet users (LeonHLJ/RSKP issue #12): 75 snippets drawn
        # per training video, one per equal bin; snippets of 16 frames at 25 fps; ActivityNet's IoUs
        "max_seqlen": 75, "protocol": "anet", "fps": 25.0, "frames_per_snippet": 16.0,
    },
}

# The names each variant switch takes, the paper's method first (its default).
VARIANTS: dict[str, tuple[str, ...]] = {
    "representatives": ("em", "foreground", "background", "topk"),
    "bank": ("class", "video"),
    "propagation_loss": ("pseudo_label", "feature_l1", "feature_l2"),
    "fusion": ("late", "early"),
}

FIELD_TYPES = {f.name: f.type for f in fields(Config)}
SCALAR_TYPES = {"int": int, "float": float, "str": str}


class ConfigError(UserError):
    """A config value of the wrong type or out of its range, or an unknown key."""


def flag(name: str) -> str:
    """The command-line flag of a config key, as the user types it: ``warmup_epochs`` -> ``--warmup-epochs``."""
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, source: str) -> Any:
    """A value from a file or the command line, converted to the field's type."""
    kind = FIELD_TYPES[name]
    if value is None:
        return None
    try:
        if kind.startswith("tuple"):
            return tuple(float(v) for v in value)
        if kind == "bool":  # only a boolean or its word: `intra: 5` or `intra: [0]` is no answer
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if kind in ("int", "float") and isinstance(value, bool):  # YAML's `epochs: true` is not 1
            raise ValueError
        return SCALAR_TYPES.get(kind, str)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} ({flag(name)}) in {source} expects {kind}, got {value!r}") from None


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    unknown = sorted(set(overrides) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown config key(s) in {source}: {', '.join(unknown)}")
    return dataclasses.replace(cfg, **{k: _coerce(k, v, source) for k, v in overrides.items()})


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        parse, parse_error = yaml.safe_load, yaml.YAMLError
    else:
        parse, parse_error = json.loads, json.JSONDecodeError
    try:
        data = parse(text) or {}
    except parse_error as exc:
        raise ConfigError(f"config file {path} cannot be parsed: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


FLAG_HELP = {
    "ops": "the ops' implementation: auto (the default) is triton on CUDA and reference on a CPU, the fastest "
           "exact path measured there at every stage, training and the test pass (docs/performance.md); "
           "padded; triton",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field (--lr, --eval-every, --no-intra ...); unset flags stay None. Numbers are
    typed here, so that argparse names the flag of a value that is not one."""
    for f in fields(Config):
        if f.type == "bool":
            parser.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif f.type.startswith("tuple"):
            parser.add_argument(flag(f.name), dest=f.name, nargs=2, type=float, default=None, metavar=("B1", "B2"))
        else:
            parser.add_argument(flag(f.name), dest=f.name, type=SCALAR_TYPES.get(f.type, str), default=None,
                                metavar=f.name.upper(), help=FLAG_HELP.get(f.name))


def build_config(args: argparse.Namespace) -> Config:
    cli = {name: getattr(args, name) for name in FIELD_TYPES if getattr(args, name, None) is not None}
    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    preset = None
    json_layout = cli.get("annotations", file_values.get("annotations")) is not None
    if cli.get("data_root") is None and file_values.get("data_root") is None and not json_layout:  # a file's null: none
        preset = cli.get("preset", file_values.get("preset", Config.preset))
        if preset not in PRESETS:
            raise ConfigError(f"unknown --preset {preset!r}; expected one of {sorted(PRESETS)}")
    preset_values = PRESETS[preset].overrides if preset is not None else {}
    # a dataset of one's own unless one is named: its annotations say what it holds
    default_dataset = CUSTOM if json_layout else Config.dataset
    dataset = cli.get("dataset", file_values.get("dataset", preset_values.get("dataset", default_dataset)))
    # an unknown dataset has no defaults here; validate() names it with the other values out of range
    cfg = apply_overrides(Config(dataset=dataset), DATASET_DEFAULTS.get(dataset, {}), f"the defaults of {dataset}")
    cfg = apply_overrides(cfg, preset_values, f"preset {preset!r}")
    cfg = apply_overrides(cfg, file_values, str(getattr(args, "config", "")))
    cfg = apply_overrides(cfg, cli, "the command line")
    validate(cfg)
    return cfg


def _ranges(cfg: Config) -> list[tuple[str, bool, str]]:
    """(key, holds, what it must be) for every value with a range, numbers and names."""
    at_least_one = ["epochs", "eval_every", "videos_per_step", "test_batch_size", "checkpoint_every", "feature_dim",
                    "embed_dim", "em_iters", "n_representatives", "bank_slots"]
    non_negative = ["max_seqlen", "data_seed", "seed", "warmup_epochs", "weight_decay", "back_weight", "att_weight",
                    "inter_weight", "spl_weight", "spl_weight_after_warmup", "fuse_main", "fuse_intra"]
    positive = ["lr", "scale", "tau", "spl_temperature", "fps", "frames_per_snippet"]
    checks = [(k, getattr(cfg, k) >= 1, ">= 1") for k in at_least_one]
    checks += [(k, getattr(cfg, k) >= 0, ">= 0") for k in non_negative]
    checks += [(k, getattr(cfg, k) > 0, "> 0") for k in positive]
    checks += [
        ("betas", len(cfg.betas) == 2 and all(0 <= b < 1 for b in cfg.betas), "two numbers in [0, 1)"),
        ("walk_weight", 0 <= cfg.walk_weight < 1, "in [0, 1)"),
        ("dropout", 0 <= cfg.dropout < 1, "in [0, 1)"),
        ("val_fraction", 0 <= cfg.val_fraction < 1, "in [0, 1)"),
        ("pseudo_inter_mix", 0 <= cfg.pseudo_inter_mix <= 1, "in [0, 1]"),
        ("dataset", cfg.dataset in DATASETS, f"one of {', '.join(DATASETS)}"),
        ("protocol", cfg.protocol in PROTOCOL_IOUS, f"one of {', '.join(PROTOCOL_IOUS)}"),
        ("preset", cfg.preset in PRESETS, f"one of {', '.join(PRESETS)}"),
        ("ops", cfg.ops in IMPLS, f"one of {', '.join(IMPLS)}"),
        ("embed_precision", cfg.embed_precision in ("fp32", "bf16"), "fp32 or bf16"),
        ("device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device) is not None, "auto, cpu, cuda or cuda:N"),
        ("bank_momentum", 0 <= cfg.bank_momentum <= 1, "in [0, 1]"),
    ]
    checks += [(key, getattr(cfg, key) in names, f"one of {', '.join(names)}") for key, names in VARIANTS.items()]
    return checks


def _variant_conflicts(cfg: Config) -> list[tuple[bool, str]]:
    """(conflicts, why) for every combination of the Tables 2 and 3 switches that means nothing."""
    walks = "they change the intra-video branch, which --no-intra turns off"
    return [
        (cfg.representatives != "em" and not cfg.intra,
         f"--representatives {cfg.representatives} needs --intra: {walks}"),
        (cfg.propagation_loss != "pseudo_label" and not cfg.intra,
         f"--propagation-loss {cfg.propagation_loss} needs --intra: {walks}"),
        (cfg.propagation_loss != "pseudo_label" and not cfg.pseudo_label,
         f"--propagation-loss {cfg.propagation_loss} replaces L_spl, which --no-pseudo-label turns off; "
         "add --pseudo-label"),
        (cfg.representatives == "topk" and cfg.n_representatives % 2 == 1,
         f"--representatives topk takes the K/2 highest and K/2 lowest snippets: --n-representatives must be even, "
         f"got {cfg.n_representatives}"),
        (cfg.bank == "video" and not cfg.memory_bank, "--bank video is a memory bank: add --memory-bank"),
        (cfg.fusion == "early" and not cfg.memory_bank,
         "--fusion early joins the online and the memory-bank representatives: add --memory-bank"),
    ]


JSON_LAYOUT_KEYS = ("classes", "train_subsets", "test_subsets")


def _check_layout(cfg: Config) -> None:
    """One layout: a W-TALC root, or ActivityNet JSON annotations with their features (or neither: synthetic)."""
    if (cfg.annotations is None) != (cfg.features is None):
        given, missing = ("annotations", "features") if cfg.features is None else ("features", "annotations")
        raise ConfigError(f"{flag(given)} needs {flag(missing)}: the JSON layout is --annotations FILE.json "
                          f"--features DIR")
    if cfg.annotations is not None and cfg.data_root is not None:
        raise ConfigError("--data-root (a W-TALC folder) and --annotations/--features (the JSON layout) name two "
                          "datasets: give one")
    if cfg.data_root is not None and cfg.dataset not in WTALC_DATASETS:
        raise ConfigError(f"{cfg.dataset} comes as --annotations FILE.json --features DIR, not as a W-TALC "
                          f"--data-root (those are {', '.join(WTALC_DATASETS)})")
    if cfg.data_root is not None:
        for key in JSON_LAYOUT_KEYS:
            if getattr(cfg, key) is not None:
                raise ConfigError(f"{flag(key)} applies to --annotations FILE.json, not to a W-TALC --data-root")


def snippets_per_second(cfg: Config) -> float:
    """The features' snippet rate: what a video's duration is multiplied by to give its length."""
    return cfg.fps / cfg.frames_per_snippet


def validate(cfg: Config) -> None:
    """Every value in its range (NaN and infinities are never), before any data loads."""
    for key, holds, expected in _ranges(cfg):
        value = getattr(cfg, key)
        numbers = value if isinstance(value, tuple) else (value,)
        finite = all(math.isfinite(v) for v in numbers if isinstance(v, float))
        if not (holds and finite):
            raise ConfigError(f"{flag(key)} must be {expected}, got {value!r}")
    _check_layout(cfg)
    synthetic_dataset = PRESETS[cfg.preset].spec.dataset
    if cfg.data_root is None and cfg.annotations is None and cfg.dataset != synthetic_dataset:
        raise ConfigError(f"--preset {cfg.preset} generates {synthetic_dataset}, not {flag('dataset')} {cfg.dataset}: "
                          f"give {flag('data_root')} for real {cfg.dataset} data, or a preset of that dataset")
    if cfg.memory_bank and not cfg.intra:
        raise ConfigError("--memory-bank needs --intra (its candidates are the representatives); add --no-memory-bank")
    for conflicts, why in _variant_conflicts(cfg):
        if conflicts:
            raise ConfigError(why)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def format_config(cfg: Config) -> str:
    return "\n".join(f"  {k:<24} {v}" for k, v in to_dict(cfg).items())


# Keys that change nothing a run computes, so a run may continue or be reused under new values.
# feature_cache: a store holds the W-TALC file's values bit for bit, so where they are read from changes nothing
KEYS_FREE_ACROSS_RUNS = {"epochs", "out", "device", "eval_every", "checkpoint_every", "tensorboard", "feature_cache"}


def changed_keys(saved: dict[str, Any], cfg: Config) -> list[str]:
    """The keys, free ones aside, whose value in ``cfg`` differs from a run's saved config (its
    checkpoint's or config.json). A key the saved config lacks came after the run began: its
    default is what the run did."""
    current, defaults = to_dict(cfg), to_dict(Config())
    return [k for k in current if k not in KEYS_FREE_ACROSS_RUNS and saved.get(k, defaults[k]) != current[k]
            and not (isinstance(current[k], tuple) and tuple(saved.get(k, ())) == current[k])]
