"""``python -m rsnet.checkpoint``: export a run's trained model to share, convert the published code's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import cli, outputs
from ..config import to_dict
from ..datasets import DATASETS
from ..trained import load  # the command sits above the library it exports from
from .official import convert_official
from .state import TrainedModel
from .weights import WEIGHTS_SUFFIX, save_weights


def export(source: Path, out: Path) -> TrainedModel:
    """Export the run in ``source`` (its folder or checkpoint.pt) to ``out`` (.safetensors)."""
    outputs.check_out(out, WEIGHTS_SUFFIX, (source,))
    trained = load(source, "cpu")
    exported = TrainedModel(to_dict(trained.config), trained.model.state_dict(), trained.bank_state,
                            trained.class_names)
    save_weights(exported, out)
    return exported


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="a run's trained model as signed .safetensors to share")
    exporting.add_argument("source", type=Path, help="a run's folder (OUT) or its checkpoint.pt")
    converting = commands.add_parser("convert", help="a checkpoint of the published RSKP code as .safetensors")
    converting.add_argument("official", type=Path, help="the published code's checkpoint (ckpt/<dataset>/<id>/<epoch>.pkl)")
    converting.add_argument("--dataset", required=True, help=f"the dataset it was trained on: {', '.join(DATASETS)}")
    converting.add_argument("--data-root", help="the folder holding DATASET/ (required: the checkpoint records no data)")
    for subcommand in (exporting, converting):
        subcommand.add_argument("--out", required=True, type=Path, help="the file to write (.safetensors)")
        cli.add_debug_flag(subcommand)
    args = parser.parse_args(argv)
    if args.command == "export":
        trained = export(args.source, args.out)
        print(f"{args.out}: the model, memory bank, {len(trained.class_names)} class names and config of "
              f"{args.source}; read it with python -m rsnet.infer --checkpoint {args.out}"
              + ("" if trained.config.get("data_root") is None else " --data-root ROOT (the folder holding "
                 f"{trained.config['dataset']}/: shared weights do not record it)"))
    else:
        outputs.check_out(args.out, WEIGHTS_SUFFIX, (args.official,))
        save_weights(convert_official(args.official, args.dataset, args.data_root), args.out)
        print(f"{args.out}: the model of {args.official} for {args.dataset}; read it with "
              f"python -m rsnet.infer --checkpoint {args.out} --data-root ROOT")
    return 0
