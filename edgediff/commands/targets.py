"""`edgediff targets`: list the device targets a recipe or `edgediff profile --target` can name."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from edgediff.errors import RecipeError
from edgediff.profile.chart import latency_chart, latency_table
from edgediff.profile.devices import profile_on_target
from edgediff.profile.importers import TOOLS, import_report
from edgediff.profile.record import records_json, write_records
from edgediff.report import text_table
from edgediff.targets import list_targets, load_target


def register(sub) -> None:
    p = sub.add_parser("targets", help="list device targets (targets/*.toml)",
                       description="List the device targets found in $EDGEDIFF_TARGETS, ./targets and the "
                                   "repository's targets/ folder, with backend, precision and how each is reached.")
    p.add_argument("name", nargs="?", help="show one target in full")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        target = load_target(args.name)
        print(f"{target.name}: {target.description}")
        print(f"  file: {target.path}")
        print(f"  {target.platform}, {target.summary()}")
        if target.memory_budget_mb:
            print(f"  memory budget: {target.memory_budget_mb} MB")
        for section in ("reach", "benchmark"):
            values = {k: v for k, v in dataclasses.asdict(getattr(target, section)).items() if v not in ("", (), {}, None)}
            print(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return 0
    targets = list_targets()
    if not targets:
        print("no targets found (add .toml files under targets/ or set EDGEDIFF_TARGETS)")
        return 0
    width = max(len(t.name) for t in targets)
    for t in targets:
        budget = f", budget {t.memory_budget_mb} MB" if t.memory_budget_mb else ""
        print(f"{t.name:<{width}}  {t.platform:<7}  {t.summary()}{budget}")
        if t.description:
            print(f"{'':<{width}}  {t.description}")
    return 0


# ------------------------------------------------------------------------------ `edgediff profile --target/--import`


def add_device_profile_arguments(p: argparse.ArgumentParser) -> None:
    """The device options of `edgediff profile` (the host options stay in edgediff/commands/profile.py)."""

    g = p.add_argument_group("device targets and saved tool outputs")
    g.add_argument("--target", help="measure on a device target (name from `edgediff targets`, or a .toml path)")
    g.add_argument("--import", dest="import_file", type=Path, metavar="FILE",
                   help="read a saved output of a benchmark tool instead of measuring (BUNDLE not needed)")
    g.add_argument("--tool", help=f"with --import: the tool that wrote FILE ({', '.join(TOOLS)})")
    g.add_argument("--component", help="with --import: which component FILE measured (default: model)")
    g.add_argument("--device", help="with --import: the device it ran on (default: unknown)")
    g.add_argument("--backend", help="with --import: override the backend recorded")
    g.add_argument("--precision", help="with --import: the precision of the artifact (default: unknown)")
    g.add_argument("--chart", type=Path, metavar="PNG", help="also draw the latency bar chart across devices")


def run_device_profile(args: argparse.Namespace) -> int:
    """`--import FILE --tool T` prints the records as JSON; `--target NAME` measures BUNDLE on the device."""

    if args.import_file is not None:
        if args.target:
            raise RecipeError("give either --import FILE or --target NAME, not both")
        if not args.tool:
            raise RecipeError("--import needs --tool (benchmark_model, onnxruntime_perf_test, trtexec, app, ...)")
        records = import_report(args.import_file, args.tool, component=args.component, device=args.device,
                                backend=args.backend, precision=args.precision)
        print(records_json(records), end="")
    else:
        if args.bundle is None:
            raise RecipeError(f"give a BUNDLE folder to measure on {args.target}")
        for flag in ("tool", "component", "device", "backend", "precision"):
            if getattr(args, flag):
                raise RecipeError(f"--{flag} only applies to --import")
        from edgediff.commands._flags import checksums_wanted

        components = [c for c in args.components.split(",") if c] if args.components else None
        target = load_target(args.target)
        records = profile_on_target(args.bundle, target, runs=args.runs, warmup=args.warmup,
                                    components=components, log=print, verify_checksums=checksums_wanted(args))
        header, rows = latency_table(records)
        print(text_table(header, rows))
        if any(r.median_ms is None for r in records):
            print("* mean: the tool reports no median")
    if args.json:
        from edgediff.outputs import atomic_file

        with atomic_file(args.json) as tmp:
            write_records(records, tmp)
        print(f"wrote {args.json}")
    if args.chart:
        print(f"wrote {latency_chart(records, args.chart)}")
    return 0
