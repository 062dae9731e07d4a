"""rsnet.trained: where every command gets its trained model, and on which device."""
import importlib

import pytest
import torch

from rsnet import devices
from rsnet.errors import UserError

COMMANDS = {
    "infer": ["--checkpoint", "CKPT", "--out", "p.npz"],
    "diagnose": ["--checkpoint", "CKPT"],
    "plot": ["cas", "--checkpoint", "CKPT", "--video", "v", "--out", "c.png"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_that_runs_a_model_defaults_to_the_gpu_when_there_is_one(command, monkeypatch, tmp_path):
    """They used to default to --device cpu, on a GPU machine too; training's default is auto."""
    module = importlib.import_module(f"rsnet.{command}")
    asked = []

    def load(path, device, *args, **kwargs):
        asked.append(device)
        raise UserError("stop here")

    monkeypatch.setattr(module, "load", load)
    monkeypatch.chdir(tmp_path)
    assert module.main(COMMANDS[command]) == 2
    assert asked == ["auto"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
