"""``walloc-cdl`` command line: one subcommand per job, each defined next to the code it drives.

A subcommand module exposes ``configure_parser(parser)`` and ``run(args) -> int``; it is imported only
when its subcommand is used, so ``walloc-cdl info`` stays fast.  A user error (bad input, a missing file
or split, settings that do not fit) prints one line and exits 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("walloc_cdl.cli.info", "describe a codec (shipped name, .pth or .safetensors) or list shipped codecs"),
    "encode": ("walloc_cdl.cli.encode", "pre-encode images/audio (folders, idx, HF datasets, tars) into latent "
                                         "WebDataset shards"),
    "train-codec": ("walloc_cdl.cli.train_codec", "train a WaLLoC codec on images or audio from a closed-form PCA start"),
    "preview": ("walloc_cdl.cli.preview", "picture an input, its reconstruction (PSNR, bpp) and its latent channels; "
                                      "images, audio or stored latents"),
    "export": ("walloc_cdl.cli.export", "write a latent dataset as parquet tiles + labels (load_dataset, hub)"),
    "compare": ("walloc_cdl.cli.compare", "train one model on WaLLoC latents vs equal-dimension downsampling vs full "
                                      "resolution; print and save the table and plot"),
    "train": ("walloc_cdl.cli.train", "train a classifier on an encoded dataset (streamed); --resume continues a run"),
    "evaluate": ("walloc_cdl.cli.evaluate", "score a trained run on a split of an encoded dataset (one JSON line)"),
    "predict": ("walloc_cdl.cli.predict", "classify image or sound files with a trained run"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input or the settings are wrong, not the program: one line, exit 2."""
    from ..codec.checkpoints import CheckpointError
    from ..codec.hub import HubError
    from ..data.loader import NoShardsError
    from ..data.remote import RemoteError
    from ..data.sources import SourceError

    return (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointError,
            SourceError, NoShardsError, RuntimeError, HubError, RemoteError)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it says something: not for options whose default is None
    (resolved later, e.g. from a preset), not for on/off flags (off unless given), nor where the help
    already states the default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.default is None or flag or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walloc-cdl",
        description="Compressed-domain learning with WaLLoC: encode corpora into latent shards, train "
                    "codecs, and compare models trained on latents against equal-dimension downsampling.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    # Parse the command name first, then let its module add its own options.
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"walloc-cdl {name}", description=COMMANDS[name][1],
                                  formatter_class=HelpFormatter)
    module.configure_parser(sub)
    sub.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except user_errors() as e:
        if debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"walloc-cdl {name}: error: {msg} (--debug shows where)", file=sys.stderr)
        return 2

