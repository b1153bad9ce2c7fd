"""Flags several commands share, typed at the door: argparse rejects a bad value as one `error:` line before
anything is loaded (the parser in edgediff/cli.py formats it)."""

from __future__ import annotations

import argparse
import math
import sys

from edgediff.recipe import MAX_SEED, MAX_STEPS


def int_in(low: int, high: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


def _float_in(low: float, high: float, what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


seed = int_in(0, MAX_SEED, f"a seed between 0 and {MAX_SEED}")
steps = int_in(1, MAX_STEPS, f"a number of steps between 1 and {MAX_STEPS}")
guidance = _float_in(0.0, 100.0, "a finite guidance scale between 0 and 100")
threads = int_in(0, 1024, "a thread count between 0 (the runtime's choice) and 1024")
runs = int_in(1, 100_000, "a number of runs between 1 and 100000")
warmup = int_in(0, 10_000, "a number of warm-up runs between 0 and 10000")


def strength(text: str) -> float:
    """Image-to-image strength: (0, 1], as diffusers' pipelines accept it (0 would denoise nothing)."""
    value = _float_in(0.0, 1.0, "a strength in (0, 1] (1 = ignore the image's content)")(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError("expected a strength in (0, 1] (1 = ignore the image's content), got 0: "
                                         "nothing would be denoised")
    return value


def add_checksum_flag(p: argparse.ArgumentParser) -> None:
    """`--no-checksums`, named the same in every command that reads a bundle (`--no-verify-checksums` is the
    older spelling of generate)."""
    p.add_argument("--no-checksums", "--no-verify-checksums", dest="no_checksums", action="store_true",
                   help="do not check the bundle's files against their sha256 (paths and sizes are still checked); "
                        "stated on stderr")


def checksums_wanted(args: argparse.Namespace) -> bool:
    """False when the user opted out, which is then said on stderr (an unchecked run should never look checked)."""
    if getattr(args, "no_checksums", False):
        print("note: --no-checksums: the bundle's files are not checked against their sha256 (paths and sizes are)",
              file=sys.stderr)
        return False
    return True
