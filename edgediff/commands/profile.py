"""`edgediff profile BUNDLE`: time every component on this host next to PyTorch eager."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgediff.commands import _flags
from edgediff.commands.targets import add_device_profile_arguments, run_device_profile
from edgediff.errors import RecipeError
from edgediff.outputs import atomic_file, check_output
from edgediff.profile.host import profile_bundle
from edgediff.profile.record import write_records
from edgediff.report import text_table


def register(sub) -> None:
    p = sub.add_parser("profile", help="measure latency and memory of a bundle",
                       description="Warm-up, then N timed runs per component (median, p90, peak RSS, top ops), "
                                   "with PyTorch eager timed in the same run for the ratio.")
    p.add_argument("bundle", type=Path, nargs="?")
    p.add_argument("--runs", type=_flags.runs, default=None,
                   help="timed runs (default 5 on the host, the target's on a device)")
    p.add_argument("--warmup", type=_flags.warmup, default=None,
                   help="warm-up runs (default 1 on the host, the target's)")
    p.add_argument("--components", help="comma-separated subset")
    p.add_argument("--no-pytorch", action="store_true", help="do not time the PyTorch originals")
    p.add_argument("--json", type=Path, help="write the records as JSON")
    p.add_argument("--module", help="the custom network class 'package.module:Class' a bundle of a custom network "
                                    "was made from, to time PyTorch too: a bundle never names code to import, you do")
    _flags.add_checksum_flag(p)

    add_device_profile_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for flag, path in (("--json", args.json), ("--chart", getattr(args, "chart", None))):
        if path is not None:
            check_output(path, "file", flag=flag)
    if args.target or args.import_file is not None:
        return run_device_profile(args)
    args.runs = 5 if args.runs is None else args.runs
    args.warmup = 1 if args.warmup is None else args.warmup
    if args.bundle is None:
        raise RecipeError("give a BUNDLE folder to profile")
    components = [c for c in args.components.split(",") if c] if args.components else None
    records = profile_bundle(args.bundle, runs=args.runs, warmup=args.warmup, compare_pytorch=not args.no_pytorch,
                             components=components, log=print, module=args.module,
                             verify_checksums=_flags.checksums_wanted(args))
    rows = [[r.component, r.backend, f"{r.median_ms:.1f}", f"{r.p90_ms:.1f}" if r.p90_ms is not None else "–",
             f"{r.extra['ratio_to_pytorch']:.2f}×" if "ratio_to_pytorch" in r.extra else "–",
             f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb else "–"] for r in records]
    print(text_table(["component", "engine", "median ms", "p90 ms", "ratio", "peak RSS MB"], rows))
    if args.json:
        with atomic_file(args.json) as tmp:
            write_records(records, tmp)
        print(f"wrote {args.json}")
    return 0
