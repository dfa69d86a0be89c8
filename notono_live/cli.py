"""The `notono-live` command: one subcommand per job.

Each subcommand lives in the module that does the work; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Heavy imports (torch) stay inside those callables, and only
the module of the subcommand given is imported, so that `notono-live send` never loads torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# subcommand -> module that registers it
SUBCOMMANDS = {
    "data": "notono_live.data.cli",
    "train": "notono_live.training.cli",
    "eval": "notono_live.evaluation.cli",
    "serve": "notono_live.daemon.cli",
    "send": "notono_live.osc.send",
    "bench": "notono_live.bench",
    "midi": "notono_live.midi.cli",
    "doctor": "notono_live.doctor",
    "install-device": "notono_live.install_device",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` the one subcommand it names (its module alone is imported:
    `notono-live send` must not load torch, which `data` pulls in)."""
    parser = argparse.ArgumentParser(
        prog="notono-live",
        description="Generate and inpaint instrument sounds with NOTONO, from Ableton Live or the shell.")
    parser.add_argument("--version", action="version", version=f"notono-live {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand `argv` names before any option, if it is one of SUBCOMMANDS."""
    for arg in argv:
        if arg.startswith("-"):
            return None   # --help, --version: the whole parser answers
        return arg if arg in SUBCOMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_subcommand(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
