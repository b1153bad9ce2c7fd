"""`edgediff` command line. Each subcommand lives in `edgediff/commands/<name>.py` and exposes
`register(subparsers)`; add a command by adding a module and one line to COMMAND_MODULES."""

from __future__ import annotations

import argparse
import importlib
import sys

from edgediff.errors import EdgediffError

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name).register(sub)
        except ImportError as exc:
            # A torch-free install (devices, the Jetson runner) still gets generate/golden; commands that need
            # PyTorch are simply not offered there.
            missing = getattr(exc, "name", None) or str(exc)
            if not any(lib in missing for lib in ("torch", "diffusers", "transformers", "accelerate")):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgediffError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
