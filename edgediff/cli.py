"""`edgediff` command line, and the one exit path every command (and the Jetson runner) leaves through.

Each subcommand lives in `edgediff/commands/<name>.py` and exposes `register(subparsers)`; add a command by adding
a module and one line to COMMAND_MODULES.

Exit codes: 0 success; 2 bad input (any EdgediffError, a bad flag, a path that cannot be read or written);
1 a failed check (ParityError); 130 SIGINT and 143 SIGTERM (both unwind like Ctrl-C, so staging folders are
removed); 70 an internal error (a bug: the message says to rerun with --debug). Whatever fails, stderr gets one
`error:` line (no traceback, no ANSI colour, no library warning before it).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import re
import signal
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from edgediff import __version__
from edgediff.errors import EdgediffError
from edgediff.quiet import quiet_environment, silence_library_noise

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

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): not the user's fault
# OSErrors the user's paths and machine cause (a missing, unreadable, read-only or full location), not bugs.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT, errno.ENOTDIR,
               errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.EFBIG, errno.ENOTEMPTY, errno.EXDEV}
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")
# Libraries read these once at import: keep their own log chatter (TensorFlow/LiteRT C++, transformers,
# diffusers) to errors, so nothing they print can look like part of our output.
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally` and staging folder unwinds the same way."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error:` line (argparse prints usage plus `prog: error: ...`)."""

    def error(self, message: str):  # type: ignore[override]
        print(error_line(f"{message} (see `{self.prog} --help`)"), file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="edgediff", description="Put Stable-Diffusion-class models on phones and edge boards: "
        "load -> slim -> lower -> verify -> profile -> bundle.")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks and library warnings (also accepted after the command)")
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


def error_line(message: str) -> str:
    """`error: ...` on one line: no colour codes, no control characters (a hostile file name cannot draw on the
    terminal), newlines folded."""
    text = _CONTROL.sub("", str(message).replace("\r", " ").replace("\t", " "))
    text = " | ".join(part.strip() for part in text.split("\n") if part.strip())
    return text if text.startswith("error: ") else f"error: {text}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        silence_library_noise()
    quiet_environment()
    command = next((a for a in argv if not a.startswith("-")), "")

    def parse_and_run() -> int:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help (0) or a bad flag (2, already reported)
            return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        return args.func(args)

    return run_guarded(parse_and_run, debug=debug, command=command)


def run_guarded(func: Callable[[], Any], debug: bool = False, command: str = "") -> int:
    """Run a command and turn every way it can end into an exit code and at most one `error:` line."""
    with _signals_as_interrupts(), _held_library_warnings(debug) as held:
        try:
            code = int(func() or 0)
        except EdgediffError as exc:
            if debug:
                raise
            print(error_line(str(exc)), file=sys.stderr)
            return exc.exit_code
        except Terminated:
            print(error_line("terminated (SIGTERM); partial output was removed"), file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print(error_line("interrupted (SIGINT); partial output was removed"), file=sys.stderr)
            return 128 + signal.SIGINT
        except ModuleNotFoundError as exc:
            if debug or not exc.name or exc.name.split(".")[0] == "edgediff":
                return _internal(exc, debug)
            print(error_line(f"`edgediff {command}` needs {exc.name}, which this install lacks: "
                             'pip install "edgediff[convert]" (or [all])'), file=sys.stderr)
            return EXIT_BAD_INPUT
        except MemoryError:
            if debug:
                raise
            print(error_line("out of memory; use a smaller model, resolution or batch, or a larger machine"),
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as exc:
            if debug or exc.errno not in USER_ERRNOS:
                return _internal(exc, debug)
            where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
            print(error_line(f"{where + ': ' if where else ''}{exc.strerror or exc}"), file=sys.stderr)
            return EXIT_BAD_INPUT
        except Exception as exc:  # noqa: BLE001 (the one place that turns a bug into a clean exit)
            return _internal(exc, debug)
        held.flush()
        return code


def _internal(exc: BaseException, debug: bool) -> int:
    if debug:
        raise exc
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no message"
    print(error_line(f"internal error ({type(exc).__name__}: {message}); rerun with --debug for the traceback"),
          file=sys.stderr)
    return EXIT_INTERNAL


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread; the old handler comes back after."""

    def on_term(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (a test runner's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _HeldWarnings:
    """Library warnings (Python `warnings` and WARNING+ `logging` records of other packages) held back while a
    command runs: they never come before an `error:` line. A successful run says how many it hid (torch and
    its add-ons warn on every import); --debug prints them as they happen."""

    def __init__(self) -> None:
        self.records: list[str] = []

    def add(self, text: str) -> None:
        text = _CONTROL.sub("", text).strip()
        if text and text not in self.records:
            self.records.append(text)

    def flush(self) -> None:
        if self.records:
            print(f"note: {len(self.records)} library warning(s) hidden (first: {self.records[0][:120]}); "
                  "--debug shows them", file=sys.stderr)
        self.records.clear()


@contextmanager
def _held_library_warnings(debug: bool) -> Iterator[_HeldWarnings]:
    held = _HeldWarnings()
    if debug:
        yield held
        return
    original_call, original_show = logging.Logger.callHandlers, warnings.showwarning

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING and not record.name.startswith("edgediff"):
            held.add(f"{record.name}: {record.getMessage().splitlines()[0] if record.getMessage() else ''}")
        else:
            original_call(logger, record)

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        held.add(f"{category.__name__}: {str(message).splitlines()[0] if str(message) else ''}")

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign,assignment]
    warnings.showwarning = show_warning
    try:
        yield held
    finally:
        logging.Logger.callHandlers = original_call  # type: ignore[method-assign]
        warnings.showwarning = original_show


if __name__ == "__main__":
    sys.exit(main())
