"""The checkpoint file: a torch.save archive anyone can torch.load(weights_only=True), signed with
a SHA-256 of every byte before its signature, so that no flipped byte goes unnoticed; no command
that reads one runs code from it."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import rel_error
from safetensors import safe_open

from rs_kernels.varlen import cu_seqlens_from_lengths
from rsnet import checkpoint, diagnose, infer, train, trained
from rsnet.checkpoint import CheckpointError
from rsnet.checkpoint.command import main as checkpoint_main
from rsnet.config import Config
from rsnet.data.dataset import WTALCDataset
from rsnet.evaluate.command import main as evaluate_main
from rsnet.model import RSKP
from rsnet.model.predict import predict_packed
from rsnet.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[1]
TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)


def _state():
    return {"format": "test", "w": torch.arange(7, dtype=torch.float32), "betas": (0.9, 0.99), "best": None,
            "metrics": [{"epoch": 1, "dmap": [1.5, 2.5]}], "name": "x"}


def test_round_trip_and_plain_torch_load(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    for state in (checkpoint.load(path), torch.load(path, weights_only=True)):
        assert torch.equal(state["w"], _state()["w"])
        assert {k: v for k, v in state.items() if k != "w"} == {k: v for k, v in _state().items() if k != "w"}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_every_flipped_byte_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    good = path.read_bytes()
    for offset in range(len(good)):
        damaged = bytearray(good)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match=str(path)):
            checkpoint.load(path)


def test_unsigned_files_are_refused_before_unpickling(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="carries no rskp checksum"):
        checkpoint.load(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="carries no rskp checksum"):
        checkpoint.load(path)


def test_a_signed_file_that_is_not_a_run_is_named(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(_state(), path)
    with pytest.raises(CheckpointError, match="not a training run's checkpoint"):
        checkpoint.load_run(path)
    checkpoint.save_atomic({"format": checkpoint.RUN_FORMAT, "version": checkpoint.RUN_VERSION, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="lacks config, model"):
        checkpoint.load_run(path)


class _CreatesFile:
    """Unpickles as ``open(path, "w")``: a file appears if the loader runs code from the checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def _booby_trapped_run(path: Path, canary: Path, signed: bool) -> None:
    """A run checkpoint whose model entry creates ``canary`` when unpickled; ``signed`` with the
    package's own checksum, so that only weights-only unpickling stands in the way."""
    state = {"format": checkpoint.RUN_FORMAT, "version": checkpoint.RUN_VERSION, "epoch": 1, "config": {},
             "model": _CreatesFile(canary), "bank": {}, "optimizer": {}, "rng": {}, "best": None, "metrics": []}
    path.parent.mkdir(parents=True, exist_ok=True)
    if signed:
        checkpoint.save_atomic(state, path)
    else:
        torch.save(state, path)
    torch.load(path, weights_only=False)  # the trap is live: a loader that unpickles freely runs it
    assert canary.exists()
    canary.unlink()


def _entry_points(tiny_root, out):
    """Each command that reads a checkpoint, as (main, argv), reading ``out/checkpoint.pt``."""
    ckpt = str(out / "checkpoint.pt")
    resume = ["--data-root", str(tiny_root), "--out", str(out), "--epochs", "2", "--warmup-epochs", "0",
              "--embed-dim", "48", "--lenient", "--device", "cpu", "--resume"]
    return {"train": (train.main, resume),
            "infer": (infer.main, ["--checkpoint", ckpt, "--out", str(out / "p.npz")]),
            "diagnose": (diagnose.main, ["--checkpoint", ckpt])}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_no_command_runs_code_from_a_checkpoint(tiny_root, tmp_path, capsys, signed):
    canary, path = tmp_path / "created-by-the-checkpoint", tmp_path / "run" / "checkpoint.pt"
    _booby_trapped_run(path, canary, signed)
    why = "holds objects other than tensors/numbers/strings/containers (it names io.open): refused" if signed \
        else "carries no rskp checksum"
    for name, (main, argv) in _entry_points(tiny_root, path.parent).items():
        capsys.readouterr()
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path} {why}") and len(err.splitlines()) == 1, (name, err)
        assert not canary.exists(), name


@pytest.mark.parametrize("module", ["train", "infer", "diagnose"])
def test_no_command_runs_code_from_a_signed_checkpoint_as_a_process(tiny_root, tmp_path, module):
    canary, path = tmp_path / "created-by-the-checkpoint", tmp_path / "run" / "checkpoint.pt"
    _booby_trapped_run(path, canary, signed=True)
    _, argv = _entry_points(tiny_root, path.parent)[module]
    proc = subprocess.run([sys.executable, "-m", f"rsnet.{module}", *argv], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and not canary.exists()
    assert proc.stderr.startswith(f"error: {path} holds objects other than tensors/numbers/strings/containers")
    assert len(proc.stderr.splitlines()) == 1


def _tiny_run(tiny_root, out):
    cfg = Config(data_root=str(tiny_root), out=str(out), epochs=1, warmup_epochs=0, eval_every=1, embed_dim=48,
                 videos_per_step=3, test_batch_size=4, lenient=True, device="cpu")
    train.run(cfg)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def exported(tiny_root, tmp_path_factory):
    """A tiny run (its memory bank filled) and its weights exported by the command."""
    out = tmp_path_factory.mktemp("run")
    ckpt = _tiny_run(tiny_root, out)
    weights = out / "model.safetensors"
    assert checkpoint_main(["export", str(out), "--out", str(weights)]) == 0
    return ckpt, weights


def _predictions(ckpt, out, *flags):
    assert infer.main(["--checkpoint", str(ckpt), "--out", str(out), *flags]) == 0
    with np.load(out, allow_pickle=True) as saved:
        return saved["vid_preds"], list(saved["frm_preds"])


def test_exported_weights_predict_bit_for_bit_as_the_checkpoint(exported, tiny_root, tmp_path):
    ckpt, weights = exported
    run, shared = checkpoint.load_run(ckpt), checkpoint.load_trained(weights, data_root=str(tiny_root))
    assert int(run["bank"]["count"].sum()) > 0
    assert shared.class_names == WTALCDataset(tiny_root).annotations.class_names
    for part in ("model", "bank"):
        assert shared._asdict()[part].keys() == run[part].keys()
        for name, value in run[part].items():
            assert value.dtype == shared._asdict()[part][name].dtype and torch.equal(value, shared._asdict()[part][name])
    local = checkpoint.LOCAL_CONFIG_KEYS
    assert shared.config == json.loads(json.dumps({k: v for k, v in run["config"].items() if k not in local} | {"device": "cpu"}))
    scores, cas = _predictions(ckpt, tmp_path / "run.npz")
    shared_scores, shared_cas = _predictions(weights, tmp_path / "shared.npz", "--data-root", str(tiny_root))
    assert scores.tobytes() == shared_scores.tobytes()
    assert len(cas) == len(shared_cas) and all(a.tobytes() == b.tobytes() for a, b in zip(cas, shared_cas))


def test_diagnose_reads_exported_weights_as_the_checkpoint(exported, tiny_root, capsys):
    printed = []
    for path in exported:
        capsys.readouterr()
        assert diagnose.main(["--checkpoint", str(path), "--data-root", str(tiny_root)]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and "average mAP, all branches" in printed[0]  # the bank is filled


def test_a_flipped_byte_in_exported_weights_is_an_error_naming_the_file(exported, tmp_path, capsys):
    good = exported[1].read_bytes()
    path = tmp_path / "model.safetensors"
    header_end = 8 + int.from_bytes(good[:8], "little")
    for offset in [*range(header_end + 64), *range(header_end + 64, len(good), 997), len(good) - 1]:
        damaged = bytearray(good)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match=str(path)):
            checkpoint.load_trained(path)
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(path), "--out", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path} is damaged: its content does not match its SHA-256 checksum\n"
    assert not (tmp_path / "p.npz").exists()


def test_safetensors_not_exported_by_rskp_are_refused(exported, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"model.embedding.weight": torch.ones(2, 3)}, str(path), metadata={"format": checkpoint.WEIGHTS_FORMAT})
    with pytest.raises(CheckpointError, match=f"{path} carries no rskp checksum"):
        checkpoint.load_trained(path)
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match=f"{path} is not a safetensors file"):
        checkpoint.load_trained(path)


def test_weights_of_other_classes_than_the_dataset_are_refused(exported, tiny_root, tmp_path):
    shared = checkpoint.load_trained(exported[1], data_root=str(tiny_root))
    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(shared._replace(class_names=shared.class_names[::-1]), path)
    with pytest.raises(CheckpointError, match=f"{path} was trained on other classes"):
        trained.load(path, "cpu", str(tiny_root))


def test_shared_weights_name_no_local_folder_and_ask_for_the_data_root(exported, tiny_root, tmp_path, capsys,
                                                                       monkeypatch):
    """A run's checkpoint.pt keeps its folders; its exported weights keep none of them (the data
    root, the run folder, the caches), and a command reading them asks for --data-root in one line.
    Weights of the synthetic data need none; weights of version 1 (which kept the folders) still load."""
    ckpt, weights = exported
    assert str(tiny_root).encode() in ckpt.read_bytes() and str(tiny_root).encode() not in weights.read_bytes()
    assert str(ckpt.parent).encode() not in weights.read_bytes()
    assert infer.main(["--checkpoint", str(weights), "--out", str(tmp_path / "p.npz")]) == 2
    assert capsys.readouterr().err == (f"error: {weights} was trained on a W-TALC folder, which shared weights do not "
                                       f"record: pass --data-root ROOT, the folder holding Thumos14reduced/\n")
    run = checkpoint.load_trained(ckpt)
    synthetic = tmp_path / "synthetic.safetensors"
    checkpoint.save_weights(run._replace(config={**run.config, "data_root": None}), synthetic)
    assert checkpoint.load_trained(synthetic).config["preset"] == run.config["preset"]
    monkeypatch.setattr(checkpoint.weights, "weights_metadata", lambda trained: {  # what version 1 wrote
        "format": checkpoint.WEIGHTS_FORMAT, "version": "1", "config": json.dumps(trained.config),
        "class_names": json.dumps(trained.class_names)})
    old = tmp_path / "v1.safetensors"
    checkpoint.save_weights(run._replace(class_names=WTALCDataset(tiny_root).annotations.class_names), old)
    monkeypatch.undo()
    assert _predictions(old, tmp_path / "v1.npz")[0].tobytes() == _predictions(ckpt, tmp_path / "run.npz")[0].tobytes()


def test_export_refuses_bad_input_in_one_line(exported, tmp_path, capsys):
    ckpt, _ = exported
    for argv, message in [(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.safetensors")],
                           f"error: checkpoint not found: {tmp_path / 'nowhere'}"),
                          (["export", str(ckpt), "--out", str(tmp_path / "m.pt")],
                           f"error: --out {tmp_path / 'm.pt'} must end in .safetensors")]:
        capsys.readouterr()
        assert checkpoint_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    proc = subprocess.run([sys.executable, "-m", "rsnet.checkpoint", "export", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "m.safetensors")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr == f"error: checkpoint not found: {tmp_path / 'nowhere'}\n"
    proc = subprocess.run([sys.executable, "-m", "rsnet.checkpoint"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "export" in proc.stderr


OFFICIAL_OF_OURS = {ours: official for official, ours in checkpoint.OFFICIAL_KEYS.items()}


def _official_layout(model):
    """The state_dict the published RSKP code would save for ``model``'s weights."""
    return {OFFICIAL_OF_OURS[name]: value.clone() for name, value in model.state_dict().items()}


def test_a_converted_official_checkpoint_predicts_as_the_model_it_holds(tiny_root, tmp_path):
    torch.manual_seed(4)
    cfg = Config(feature_dim=96, embed_dim=40, n_representatives=5, ops="reference")
    original = RSKP(cfg, 20).double().eval()
    path = tmp_path / "official" / "200.pkl"
    path.parent.mkdir()
    torch.save(_official_layout(original), path)
    out = tmp_path / "model.safetensors"
    assert checkpoint_main(["convert", str(path), "--dataset", "Thumos14reduced", "--data-root", str(tiny_root),
                            "--out", str(out)]) == 0
    converted = checkpoint.load_trained(out, data_root=str(tiny_root))
    assert converted.config["feature_dim"] == 96 and converted.config["n_representatives"] == 5
    assert converted.class_names is None and int(converted.bank["count"].sum()) == 0
    torch.manual_seed(5)  # other initial weights: only the conversion can make the models agree
    restored = RSKP(Config(**{**converted.config, "ops": "reference"}), 20).double().eval()
    restored.load_state_dict(converted.model)
    lengths = [1, 17, 6]
    x, cu = torch.rand(sum(lengths), 96, dtype=torch.float64), cu_seqlens_from_lengths(lengths)
    for want, got in zip(predict_packed(original, x, cu), predict_packed(restored, x, cu), strict=True):
        assert torch.equal(want, got)


def test_an_official_checkpoint_that_does_not_fit_names_the_key(tmp_path, capsys):
    layout = _official_layout(RSKP(Config(feature_dim=96, embed_dim=40), 20))
    path = tmp_path / "200.pkl"
    cases = [({**layout, "module.mu": layout["mu"]}, "unknown keys ['module.mu'], missing keys none"),
             ({k: v for k, v in layout.items() if k != "fg_center"}, "unknown keys none, missing keys ['fg_center']"),
             ({**layout, "ac_center": layout["ac_center"][:-1]}, "ac_center has shape (20, 40); Thumos14reduced"),
             ({**layout, "mu": layout["mu"][:, :-1]}, "mu has shape (8, 39)")]
    for state, message in cases:
        torch.save(state, path)
        capsys.readouterr()
        assert checkpoint_main(["convert", str(path), "--dataset", "Thumos14reduced",
                                "--out", str(tmp_path / "m.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.safetensors").exists()


def test_infer_reads_a_converted_official_checkpoint(exported, tiny_root, tmp_path):
    ckpt, _ = exported
    run = checkpoint.load_run(ckpt)
    path, out = tmp_path / "200.pkl", tmp_path / "model.safetensors"
    torch.save({OFFICIAL_OF_OURS[name]: value for name, value in run["model"].items()}, path)
    assert checkpoint_main(["convert", str(path), "--dataset", "Thumos14reduced", "--data-root", str(tiny_root),
                            "--out", str(out)]) == 0
    scores, cas = _predictions(ckpt, tmp_path / "run.npz")
    converted_scores, converted_cas = _predictions(out, tmp_path / "converted.npz", "--data-root", str(tiny_root))
    # the converted config is the default one (test batches of 32 videos, not 4): equal up to rounding
    assert np.allclose(scores, converted_scores, rtol=1e-5, atol=1e-7)
    assert all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(cas, converted_cas, strict=True))


# --- the published code's state_dict wherever a checkpoint is read ------------------------------


def _official_pkl(path, n_classes=20, seed=6):
    """A model with float32-exact weights, saved as the published code saves its state_dict (float64
    tensors, as its model would hold them after .double()); the model, in float64."""
    torch.manual_seed(seed)
    original = RSKP(Config(feature_dim=2048, embed_dim=48, dropout=0.0), n_classes).double().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_official_layout(original), path)
    return original


def test_an_official_pkl_predicts_as_the_official_code(tiny_root, tmp_path):
    """The .pkl read where a checkpoint is (rsnet.trained.load, as every command reads it): float64
    predictions of the model it builds equal the published code's way of predicting (official_rskp)."""
    from bench.oracles import official_rskp

    path = tmp_path / "ckpt" / "200.pkl"
    original = _official_pkl(path)
    run = trained.load(path, "cpu", str(tiny_root))
    assert run.config.data_root == str(tiny_root) and run.config.embed_dim == 48
    model, dataset = run.model.double().eval(), trained.dataset_of(run)
    compared = 0
    for batch in dataset.test_batches(4):
        scores, cas = predict_packed(model, batch.x.double(), batch.varlen)
        bounds = batch.varlen.cu_seqlens.tolist()
        for b, v in enumerate(batch.index.tolist()):
            want_scores, want_cas = official_rskp.predict_video(original, torch.from_numpy(dataset.features[v]).double())
            assert torch.isfinite(scores[b]).all() and torch.isfinite(cas[bounds[b]:bounds[b + 1]]).all()
            assert rel_error(scores[b], want_scores) <= 1e-10
            assert rel_error(cas[bounds[b]:bounds[b + 1]], want_cas) <= 1e-10
            compared += 1
    assert compared == len(dataset.test_indices)


def test_an_official_pkl_scores_through_the_commands_as_the_official_code(exported, tiny_root, tmp_path, capsys):
    """rsnet.infer reads the .pkl (a trained model's weights, under the published
    code's names); rsnet.evaluate gives its predictions and detections the mAP of the published
    code's way of predicting, in float32 as the commands run."""
    from bench.oracles import official_rskp
    from rsnet import evaluate

    run = checkpoint.load_run(exported[0])
    original = RSKP(Config(feature_dim=2048, embed_dim=48), 20).eval()
    original.load_state_dict(run["model"])
    path = tmp_path / "200.pkl"
    torch.save(_official_layout(original), path)
    dataset = WTALCDataset(tiny_root)
    want = [official_rskp.predict_video(original, torch.from_numpy(dataset.features[v])) for v in dataset.test_indices]
    infer.save_predictions(tmp_path / "want.npz", torch.stack([s for s, _ in want]).numpy(), [c.numpy() for _, c in want])
    source = ["--checkpoint", str(path), "--data-root", str(tiny_root)]
    assert infer.main([*source, "--out", str(tmp_path / "p.npz")]) == 0
    assert infer.main([*source, "--out", str(tmp_path / "d.json")]) == 0
    results = {}
    for given, name in [("--predictions", "want.npz"), ("--predictions", "p.npz"), ("--detections", "d.json")]:
        assert evaluate_main([given, str(tmp_path / name), "--annotations", str(dataset.annotations.folder),
                              "--lenient", "--out", str(tmp_path / f"{name}.out.json")]) == 0
        results[name] = json.loads((tmp_path / f"{name}.out.json").read_text())
    assert results["p.npz"]["dmap"] == results["want.npz"]["dmap"] == results["d.json"]["dmap"]
    ranked = []  # what those mAPs score: the same ranked detections, some of them (not vacuous)
    for name in ("want.npz", "p.npz"):
        with np.load(tmp_path / name, allow_pickle=True) as saved:
            ranked.append(evaluate.detections(saved["vid_preds"], list(saved["frm_preds"]), dataset.annotations,
                                              dataset.test_indices))
    assert ranked[0].keys() == ranked[1].keys() and sum(len(d) for d in ranked[0].values()) > 0
    for name, want in ranked[0].items():
        assert want.shape == ranked[1][name].shape and np.allclose(want, ranked[1][name], rtol=1e-5, atol=1e-6), name
    capsys.readouterr()
    assert diagnose.main(source) == 0 and "average mAP" in capsys.readouterr().out


def test_checkpoint_format_official_takes_any_file_as_the_state_dict(exported, tiny_root, tmp_path, capsys):
    ckpt, _ = exported
    out = ["--data-root", str(tiny_root), "--out", str(tmp_path / "p.npz")]
    assert infer.main(["--checkpoint", str(ckpt), *out]) == 0  # auto: a run's checkpoint
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(ckpt), "--checkpoint-format", "official", *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ckpt} is not the published RSKP model's state_dict: unknown keys ['bank', ")
    assert len(err.splitlines()) == 1


def test_an_official_pkl_that_does_not_fit_is_one_line_naming_the_key(tiny_root, tmp_path, capsys):
    layout = _official_layout(RSKP(Config(feature_dim=2048, embed_dim=48), 20))
    path = tmp_path / "200.pkl"
    prefixed = {f"module.{k}": v for k, v in layout.items()}  # auto: no key of the published code's
    for state, fmt, message in [({**layout, "module.mu": layout["mu"]}, "auto", "unknown keys ['module.mu'], missing keys none"),
                                (prefixed, "official", "missing keys ['ac_center', "),
                                (prefixed, "auto", "carries no rskp checksum"),
                                ({**layout, "fg_center": layout["fg_center"][:, :-1]}, "auto", "fg_center has shape (1, 47)")]:
        torch.save(state, path)
        for main, out in [(infer.main, "p.npz"), (diagnose.main, None)]:
            capsys.readouterr()
            argv = ["--checkpoint", str(path), "--data-root", str(tiny_root), "--checkpoint-format", fmt]
            argv += ["--out", str(tmp_path / out)] if out else []
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {path}") and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["200.pkl"]


def test_a_pkl_that_would_run_code_is_refused_in_either_format(tiny_root, tmp_path, capsys):
    canary, path = tmp_path / "created-by-the-checkpoint", tmp_path / "200.pkl"
    torch.save({"mu": _CreatesFile(canary)}, path)
    for fmt, why in [("auto", "carries no rskp checksum"), ("official", "holds objects other than tensors")]:
        capsys.readouterr()
        assert infer.main(["--checkpoint", str(path), "--checkpoint-format", fmt, "--data-root", str(tiny_root),
                               "--out", str(tmp_path / "p.npz")]) == 2
        assert capsys.readouterr().err.startswith(f"error: {path} {why}")
        assert not canary.exists()


def test_the_published_codes_checkpoints_need_the_data_root(tiny_root, tmp_path, capsys):
    """They record no data: without --data-root, every command reading one, and convert, ask for it
    in one line (they used to run on the synthetic data, under the dataset's names); so do weights
    converted before convert required it, which say they were trained on the synthetic data."""
    path = tmp_path / "200.pkl"
    _official_pkl(path)
    asks = f"error: {path} is a checkpoint of the published RSKP code, which records no data: " \
           f"pass --data-root ROOT, the folder holding Thumos14reduced/\n"
    out = tmp_path / "model.safetensors"
    for command in (lambda: diagnose.main(["--checkpoint", str(path)]),
                    lambda: infer.main(["--checkpoint", str(path), "--out", str(tmp_path / "p.npz")]),
                    lambda: checkpoint_main(["convert", str(path), "--dataset", "Thumos14reduced", "--out", str(out)])):
        capsys.readouterr()
        assert command() == 2 and capsys.readouterr().err == asks
    assert not out.exists() and not (tmp_path / "p.npz").exists()
    with pytest.raises(CheckpointError, match="records no data"):
        trained.load(path, "cpu")
    converted = checkpoint.load_trained(path, data_root=str(tiny_root))
    checkpoint.save_weights(converted._replace(config={**converted.config, "data_root": None}), out)  # as it was
    with safe_open(out, "pt") as weights:
        assert weights.metadata()["data"] == "synthetic"
    capsys.readouterr()
    assert diagnose.main(["--checkpoint", str(out)]) == 2
    assert capsys.readouterr().err == (f"error: {out} holds a model of the published RSKP code, which records no "
                                       f"data: pass --data-root ROOT, the folder holding Thumos14reduced/\n")
    assert trained.load(out, "cpu", str(tiny_root)).config.data_root == str(tiny_root)


def test_a_checkpoint_of_another_dataset_or_class_count_is_one_line(exported, tiny_root, tmp_path, capsys):
    from rsnet import infer

    activitynet = tmp_path / "anet.pkl"
    _official_pkl(activitynet, n_classes=100)
    shared = checkpoint.load_trained(exported[1], data_root=str(tiny_root))
    fewer = tmp_path / "fewer.safetensors"
    centres = shared.model["head.class_centres"]
    checkpoint.save_weights(shared._replace(model={**shared.model, "head.class_centres": centres[:11]}, class_names=None), fewer)
    for path, message in [(activitynet, f"is a model of ActivityNet1.2: dataset folder not found: {tiny_root / 'ActivityNet1.2'}"),
                          (fewer, "holds a model of 10 classes; ")]:
        capsys.readouterr()
        assert infer.main(["--checkpoint", str(path), "--data-root", str(tiny_root), "--out", str(tmp_path / "d.json")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path} {message}") and len(err.splitlines()) == 1, err
    assert "lists 20: a checkpoint of another dataset" in err
    assert not (tmp_path / "d.json").exists()
