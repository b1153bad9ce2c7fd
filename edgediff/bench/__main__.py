"""`python -m edgediff.bench --suite default|sd15|sd21|bksdm|all [--backends ...] [--output DIR]`.

Converts every row of the suite (one subprocess per conversion and per timing, each under the heavy lock),
writes rows/<key>/row.json as each row completes, then BENCHMARKS.md, results.json and plots/ from every row in
DIR. A rerun skips finished rows unless --force. --compare checks the rows against benchmarks/baseline.json
(exit 1 when one is more than 20% slower or larger on this machine); --record-baseline stores them there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgediff.bench.anchors import ROOT
from edgediff.bench.rows import CONVERTERS, SUITES, Settings

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
DEFAULT_BASELINE = ROOT / "benchmarks" / "baseline.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgediff.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="default", choices=list(SUITES))
    p.add_argument("--backends", nargs="+", metavar="NAME",
                   help=f"converters or runtimes to run (default: all): {', '.join(CONVERTERS)}, onnxruntime, "
                        "litert, coreml")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="rows, BENCHMARKS.md, results.json, plots")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgediff-bench" / "work",
                   help="where artifacts are written (gigabytes at full size; removed after each row is timed)")
    p.add_argument("--force", action="store_true", help="redo rows that are already finished")
    p.add_argument("--batch", type=int, default=1, help="UNet batch: 1, or 2 (batched classifier-free guidance)")
    p.add_argument("--runs", type=int, default=5, help="interleaved timed runs per engine")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="0 = every logical CPU")
    p.add_argument("--size", type=int, default=0, help="image size; 0 = each UNet's native resolution")
    p.add_argument("--lock", type=Path, default=Path("/tmp/edgediff-heavy.lock"), help="the shared heavy lock")
    p.add_argument("--no-lock", action="store_true", help="do not take the lock (when already running under it)")
    p.add_argument("--optimum-python", help="python of Optimum's environment (default: .venv-optimum/bin/python "
                                            "or $EDGEDIFF_OPTIMUM_PYTHON)")
    p.add_argument("--keep-artifacts", action="store_true")
    p.add_argument("--compare", action="store_true", help="check the rows against the baseline; exit 1 on a "
                                                          "regression")
    p.add_argument("--record-baseline", action="store_true", help="store this run's rows as the baseline")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    p.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from the stored rows")
    p.add_argument("--debug", action="store_true")
    return p


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from edgediff.bench import compare as guard
    from edgediff.bench.machine import describe_machine
    from edgediff.bench.report import write_markdown, write_plots
    from edgediff.bench.rows import plan_rows
    from edgediff.bench.runner import RunOptions, load_rows, run_row
    from edgediff.contract import inside, strict_json_value

    settings = Settings(batch=args.batch, runs=args.runs, warmup=args.warmup, threads=args.threads, size=args.size)
    rows = plan_rows(args.suite, args.backends, settings)
    machine = describe_machine().to_dict()
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    options = RunOptions(output=output, work=args.work, lock=None if args.no_lock else args.lock, force=args.force,
                         keep_artifacts=args.keep_artifacts, optimum_python=args.optimum_python)
    if not args.report_only:
        for i, row in enumerate(rows, 1):
            options.log(f"[{i}/{len(rows)}] {row.key}")
            record = run_row(row, options, machine["fingerprint"])
            options.log(f"[{i}/{len(rows)}] {row.key}: convert {record['convert']['status']}, "
                        f"timing {record['timing']['status']}")
    everything = load_rows(output)
    ran = {r.key for r in rows}
    this_machine = [r for r in everything if r.get("machine_fingerprint") == machine["fingerprint"]]
    comparison: dict[str, Any] | None = None
    if args.compare:
        findings, missing = guard.compare([r for r in this_machine if r["key"] in ran],
                                          guard.read_baseline(args.baseline), machine["fingerprint"])
        comparison = {"baseline": _shown(args.baseline), "tolerance": guard.TOLERANCE,
                      "findings": guard.findings_dicts(findings), "missing": missing}
    plots = write_plots(inside(output, "plots", "--output"), everything)
    command = "python -m edgediff.bench " + " ".join(shlex.quote(a) for a in argv)
    write_markdown(output / "BENCHMARKS.md", everything, machine, command, comparison, plots)
    (output / "results.json").write_text(json.dumps(strict_json_value(
        {"machine": machine, "command": command, "rows": everything, "comparison": comparison}), indent=1))
    print(f"wrote {output / 'BENCHMARKS.md'} ({len(everything)} rows)")
    if args.record_baseline:
        recorded = [r for r in this_machine if r["key"] in ran]
        guard.write_baseline(args.baseline, guard.record(recorded, guard.read_baseline(args.baseline), machine))
        print(f"recorded {len(recorded)} rows in {args.baseline}")
    if comparison and comparison["findings"]:
        raise guard.RegressionFound("; ".join(f"{f['key']}: {f['metric']} {f['change']:+.0%}"
                                              for f in comparison["findings"])
                                    + f" against {args.baseline} (more than {guard.TOLERANCE:.0%} worse)")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    from edgediff.cli import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    return run_guarded(lambda: run(args, argv), debug=args.debug, command="bench")


if __name__ == "__main__":
    sys.exit(main())
