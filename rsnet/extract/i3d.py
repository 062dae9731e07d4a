"""The two-stream Inception I3D (Carreira & Zisserman, CVPR 2017), as a feature extractor.

One stream takes RGB clips (3 channels), the other optical flow (2 channels); each maps a clip
(N, C, T, H, W) to the 1024-d average of its last inception block, Mixed_5c, the layer before the
Kinetics-400 logits. The modules are named as in the pytorch-i3d conversion of DeepMind's
checkpoints (``rgb_imagenet.pt``, ``flow_imagenet.pt``: ``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...), so those files load as they are;
``load_i3d`` refuses a file whose keys or shapes differ, naming them.

Padding is TensorFlow's "same" (the checkpoints come from TensorFlow): each convolution and pool
pads its input so that the output has ceil(size / stride) positions, the extra row after the
input. Pools pad with zeros, as the conversion does; they follow ReLUs, so a zero never wins over
a real value there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsnet.errors import DataError, UserError

FEATURE_DIM = 1024
KINETICS_CLASSES = 400
# TensorFlow's batch-norm epsilon, which the checkpoints were trained with (PyTorch's default is 1e-5).
BN_EPS = 1e-3

# Each inception block: (name, input channels, (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj)):
# GoogLeNet's widths (Szegedy et al. 2015, Table 1), which I3D inflates to 3D.
INCEPTION_BLOCKS = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
# Max pools between the stages: (kernel, stride) over (T, H, W), placed before the named block.
POOL_BEFORE = {
    "Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)),
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}


def pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """``x`` (N, C, T, H, W) zero-padded as TensorFlow's "same": ceil(size / stride) outputs, the odd
    extra row at the end."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def max_pool_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    return F.max_pool3d(pad_same(x, kernel, stride), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d, then batch norm and ReLU (``conv3d``, ``bn``); the logits layer has a bias and neither."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = (kernel,) * 3, (stride,) * 3, head
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: 1x1 (``b0``); 1x1 then 3x3 (``b1a``, ``b1b``); the
    same, narrower (``b2a``, ``b2b``); a 3x3 max pool then 1x1 (``b3b``)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a, self.b1b = Unit3D(in_channels, w1a), Unit3D(w1a, w1b, kernel=3)
        self.b2a, self.b2b = Unit3D(in_channels, w2a), Unit3D(w2a, w2b, kernel=3)
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: Tensor) -> Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1)


class InceptionI3d(nn.Module):
    """One I3D stream: ``features`` maps clips (N, in_channels, T, H, W) to (N, 1024).

    The published weights expect T = 16 frames of 224 x 224 (Mixed_5c is then 2 x 7 x 7, which the
    average pools whole); other sizes work down to 1 frame of 32 x 32, for tests.
    """

    def __init__(self, in_channels: int, num_classes: int = KINETICS_CLASSES):
        super().__init__()
        self.in_channels = in_channels
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=7, stride=2)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=3)
        for name, (channels, widths) in INCEPTION_BLOCKS.items():
            setattr(self, name, InceptionBlock(channels, widths))
        self.logits = Unit3D(FEATURE_DIM, num_classes, head=True)

    def trunk(self) -> list[tuple[str, nn.Module]]:
        """The layers up to Mixed_5c, in order (the logits excluded)."""
        return [(name, module) for name, module in self.named_children() if name != "logits"]

    def mixed_5c(self, clips: Tensor) -> Tensor:
        """(N, 1024, T/8, H/32, W/32): the last inception block's map (sizes rounded up)."""
        x = clips
        for name, layer in self.trunk():
            if name in POOL_BEFORE:
                x = max_pool_same(x, *POOL_BEFORE[name])
            x = layer(x)
        return x

    def features(self, clips: Tensor) -> Tensor:
        """(N, 1024): Mixed_5c averaged over time and space, the 1024-d feature before the logits."""
        return self.mixed_5c(clips).mean(dim=(2, 3, 4))

    def class_logits(self, features: Tensor) -> Tensor:
        """(N, num_classes) Kinetics logits of ``features`` (N, 1024): a check that weights loaded right."""
        return self.logits(features[:, :, None, None, None]).flatten(1)


def load_state(path: Path, what: str) -> dict[str, Tensor]:
    """The tensors of a weight file (a state dict saved by ``torch.save``); tensors only, no code run.
    ``what`` names the file in the error when it is missing."""
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (pickle, zip, RuntimeError) for a bad file
        raise DataError(f"{path}: not a PyTorch weight file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors (a {type(state).__name__})")
    return dict(state)


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state(model: nn.Module, state: Mapping[str, Tensor], path: Path, expected: str) -> None:
    """A DataError naming the missing, extra and mis-shaped keys of ``state`` against ``model``
    (``expected`` says what the file should have been).

    ``num_batches_tracked`` may be absent (files saved before PyTorch 0.4.1 lack it; eval ignores it)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in own]
    misshaped = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
    problems = [f"{what}: {_listed(keys)}" for what, keys in
                (("missing", missing), ("unexpected", extra), ("mis-shaped", misshaped)) if keys]
    if problems:
        raise DataError(f"{path}: not the {expected}: {'; '.join(problems)}")


def load_i3d(path: Path, stream: str) -> InceptionI3d:
    """The ``stream`` ("rgb" or "flow") I3D with the weights of ``path``, in eval mode, on CPU, in float32."""
    with torch.device("meta"):  # no initialisation to overwrite: the file's tensors become the parameters
        model = InceptionI3d(in_channels=3 if stream == "rgb" else 2)
    path = Path(path)
    state = load_state(path, f"--{stream}-weights")
    check_state(model, state, path, f"pytorch-i3d {stream} weights ({model.in_channels} input channels)")
    state = {name: value.float() if value.is_floating_point() else value for name, value in state.items()}
    for name in model.state_dict():
        state.setdefault(name, torch.zeros((), dtype=torch.long))  # num_batches_tracked, absent from old files
    model.load_state_dict(state, assign=True)
    return model.eval()


def random_state(in_channels: int, seed: int = 0) -> dict[str, Tensor]:
    """A state dict of random weights for tests and benchmarks (the published files are not
    downloaded there): He-scaled convolutions and random batch-norm statistics, so that every
    parameter and buffer moves the features and activations keep their scale through the layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = InceptionI3d(in_channels).state_dict()
    state = {name: torch.zeros(value.shape, dtype=value.dtype) for name, value in shapes.items()}
    for name, value in state.items():
        if name.endswith("conv3d.weight"):
            fan_in = value[0].numel()
            value.copy_(torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif name.endswith(("running_var", "bn.weight")):
            value.copy_(0.5 + torch.rand(value.shape, generator=gen))
        elif name.endswith(("running_mean", "bias")):
            value.copy_(0.1 * torch.randn(value.shape, generator=gen))
    return state
