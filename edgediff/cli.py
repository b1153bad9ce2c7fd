"""`edgediff` command line. Each subcommand lives in `edgediff/commands/<name>.py` and exposes
`register(subparsers)`; add a command by adding a module and one line to COMMAND_MODULES."""

from __future__ import annotations

import argparse
import importlib
import sys

from edgediff import __version__
from edgediff.errors import EdgediffError
from edgediff.quiet import silence_library_noise

COMMAND_MODULES = [
    "edgediff.commands.convert",
    "edgediff.commands.verify",
    "edgediff.commands.profile",
    "edgediff.commands.generate",
    "edgediff.commands.golden",
    "edgediff.commands.bundle_app",
    "edgediff.commands.targets",
    "edgediff.commands.distill",
    "edgediff.commands.prune",
    "edgediff.commands.train_default",
    "edgediff.commands.eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgediff", description="Put Stable-Diffusion-class models on phones and edge boards: "
        "load -> slim -> lower -> verify -> profile -> bundle.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"edgediff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name).register(sub)
        except ModuleNotFoundError as exc:
            # The base install (devices, the Jetson runner) gets generate / profile / bundle-golden; commands
            # that need the `convert` extra (torch, diffusers, onnx, ...) are simply not offered there.
            if not exc.name or exc.name.split(".")[0] == "edgediff":
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" not in argv:
        silence_library_noise()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgediffError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if args.debug or not exc.name or exc.name.split(".")[0] == "edgediff":
            raise
        print(f"error: `edgediff {args.command}` needs {exc.name}, which this install lacks: "
              'pip install "edgediff[convert]" (or [all])', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
