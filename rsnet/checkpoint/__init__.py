"""Checkpoints that are never torn, never silently damaged, and never execute code on load.

File format. A checkpoint is an ordinary ``torch.save`` file (a zip archive) whose zip comment
(the last field of the archive's end record, which zip readers skip) is
``rskp-sha256=<64 hex digits>``: the SHA-256 of every byte of the file before the comment, the
end record's comment length included. So ``torch.load(path, weights_only=True)`` reads it like
any other, and flipping any byte is caught: before the comment it changes the hash, in the
comment it breaks the hash or its marker. ``load`` checks the hash before unpickling anything,
then unpickles with ``weights_only=True``: the state holds only tensors, numbers, strings, None
and containers of them. A run's state (``rsnet.train``) is a dict with the keys ``RUN_KEYS``,
``format`` = ``RUN_FORMAT`` and ``version`` = ``RUN_VERSION``, then ``RUN_OPTIONAL_KEYS``:
``class_names``, the dataset's classes in label order, which a command reading the run (and
``--resume``) checks against the data it is given. Those keys are optional on read: checkpoints
written before rskp recorded them lack them, load and resume as they did, and only their class
count is checked.

Weights to share. ``python -m rsnet.checkpoint export RUN_DIR_OR_CKPT --out model.safetensors``
writes a run's trained model: a safetensors file (no pickle at all) of the model's tensors
(``model.<name>``) and the memory bank's (``bank.<name>``), whose metadata holds, as strings,
``format`` = ``WEIGHTS_FORMAT``, ``version``, ``config`` (JSON, without the keys naming local
folders, ``LOCAL_CONFIG_KEYS``), ``data`` (whether the model was trained on the synthetic data or
on a W-TALC folder), ``class_names`` (JSON) and ``rskp_sha256``: the SHA-256 of the whole file
with those 64 hex digits written as zeros. Every command that takes ``--checkpoint``
(``rsnet.infer``, ``rsnet.diagnose``, ``rsnet.plot``) reads such a file as it reads
``checkpoint.pt``, through ``load_trained`` (``rsnet.trained.load``), given ``--data-root`` where it was trained on a W-TALC
folder; a flipped byte is an error naming the file.

The published code's checkpoints. ``load_trained`` (so every command that takes ``--checkpoint``)
reads the state_dict the published RSKP code saves (``OFFICIAL_KEYS``): an unsigned file that
unpickles, weights-only, to a dict of tensors alone with one of those keys, or any file with
``--checkpoint-format official``. It is mapped onto this model with the default config at the sizes its weights have,
for the dataset with as many classes; a key or shape that does not fit is an error naming it.
It records no data, so ``--data-root`` (the folder holding its dataset) is required to read it
and to convert it. ``python -m rsnet.checkpoint convert OFFICIAL.pkl --dataset Thumos14reduced --data-root ROOT --out
model.safetensors`` writes the same mapping as signed safetensors.

Files are written to a temporary file in the same folder, fsynced and renamed over the target,
so a crash mid-write leaves the previous checkpoint in place.

The package: ``signed`` (the signed files, a run's state), ``weights`` (safetensors to share),
``official`` (the published code's state_dict), ``state`` (``TrainedModel``, what they hold of a
model), ``trained_model`` (``load_trained``, any of them), ``command`` (the command line).
"""
from .official import OFFICIAL_KEYS, convert_official, official_trained
from .signed import (
                     RUN_CHECKPOINT,
                     RUN_FORMAT,
                     RUN_KEYS,
                     RUN_OPTIONAL_KEYS,
                     RUN_VERSION,
                     CheckpointError,
                     load,
                     load_run,
                     restore_rng_state,
                     rng_state,
                     save_atomic,
)
from .state import TrainedModel, check_classes
from .trained_model import CHECKPOINT_FORMATS, load_trained, run_trained
from .weights import (
                     LOCAL_CONFIG_KEYS,
                     WEIGHTS_FORMAT,
                     WEIGHTS_SUFFIX,
                     WEIGHTS_VERSION,
                     load_weights,
                     save_weights,
                     weights_metadata,
)

__all__ = ["OFFICIAL_KEYS", "convert_official", "official_trained", "RUN_CHECKPOINT", "RUN_FORMAT", "RUN_KEYS",
           "RUN_OPTIONAL_KEYS", "RUN_VERSION", "CheckpointError", "load", "load_run", "restore_rng_state", "rng_state",
           "save_atomic", "TrainedModel", "check_classes", "CHECKPOINT_FORMATS", "load_trained", "run_trained",
           "LOCAL_CONFIG_KEYS", "WEIGHTS_FORMAT", "WEIGHTS_SUFFIX", "WEIGHTS_VERSION", "load_weights", "save_weights",
           "weights_metadata"]
