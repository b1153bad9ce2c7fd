"""The pruning experiment of issue 9, end to end, every number measured in this run.

    OMP_NUM_THREADS=1 python benchmarks/prune_experiments.py --teacher models/shapes-sd --budget 0.6

1. `edgediff prune TEACHER --robust` (SnapFusion robust training; skipped with --robust-steps 0).
2. `edgediff prune ROBUST --latency-budget B --target host-cpu --recover`: per-block latency table through the
   ONNX Runtime lowering, greedy search (judge prompt accuracy), BK-SDM KD recovery of the chosen architecture.
3. UNet latency of teacher and student on the host backends (ONNX Runtime, LiteRT when installed, PyTorch
   eager): both lowered by the same backend code, timed in the same process, interleaved round by round.
4. `edgediff eval` prompt accuracy of teacher and student (same prompts, seeds, steps, guidance).
Results: --out/results.json and results.md (with the search trace and the quality-latency plot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sh(cmd: list[str], log: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as fh:
        fh.write("+ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def unet_latency(teacher: Path, student: Path, backends: list[str], rounds: int, runs: int) -> dict:
    """Median ms of both UNets per backend, lowered by edgediff's backend code, timed interleaved."""
    import numpy as np

    from edgediff.backends.base import get_backend
    from edgediff.errors import BackendUnavailable
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    models = {"teacher": load_model(str(teacher)), "student": load_model(str(student))}
    batched = bool(models["teacher"].defaults.get("batched_cfg", True))
    size = models["teacher"].unet.config.sample_size * 2 ** (len(models["teacher"].vae.config.block_out_channels) - 1)
    comps = {k: build_components(m, ["unet"], ComponentShapes(size, size, batched_cfg=batched))[0] for k, m in models.items()}
    runners: dict[tuple[str, str], tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in backends:
            if name == "pytorch":
                for k, c in comps.items():
                    runners[(name, k)] = (c.run_torch, c.example_inputs(1))
                continue
            backend = get_backend(name)
            try:
                backend.check_available()
            except BackendUnavailable as exc:
                print(f"skip {name}: {exc}")
                continue
            options = backend.Options()
            for k, c in comps.items():
                out = Path(tmp) / f"{name}-{k}"
                out.mkdir()
                artifact = backend.lower(c, options, "fp32", out)
                runners[(name, k)] = (backend.load(artifact, options), c.example_inputs(1))
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for run, inputs in runners.values():
            run(inputs)  # warm-up
        for _ in range(rounds):
            for key, (run, inputs) in runners.items():
                for _ in range(runs):
                    start = time.perf_counter()
                    run(inputs)
                    times[key].append((time.perf_counter() - start) * 1000.0)
    result = {}
    for name in backends:
        if (name, "teacher") not in times:
            continue
        t, s = statistics.median(times[(name, "teacher")]), statistics.median(times[(name, "student")])
        result[name] = {"teacher_ms": t, "student_ms": s, "speedup": t / s, "runs": len(times[(name, "teacher")]),
                        "teacher_p90_ms": float(np.percentile(times[(name, "teacher")], 90)),
                        "student_p90_ms": float(np.percentile(times[(name, "student")], 90))}
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, default=Path("models/shapes-sd"))
    p.add_argument("--budget", type=float, default=0.6, help="UNet latency budget as a fraction of the teacher's")
    p.add_argument("--target", default="host-cpu")
    p.add_argument("--robust-steps", type=int, default=300)
    p.add_argument("--recover-steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache-size", type=int, default=4096, help="shapes samples encoded once for training")
    p.add_argument("--search-prompts", type=int, default=48)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--latency-engine", choices=("backend", "pytorch"), default="backend")
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "litert", "pytorch"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--work", type=Path, default=Path("runs/prune-experiment"))
    p.add_argument("--out", type=Path, default=Path("reports/prune"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.work / "log.txt"
    exe = [sys.executable, "-m", "edgediff.cli"]

    search_model = args.teacher
    if args.robust_steps:
        robust = args.work / "robust"
        if not (robust / "model_index.json").is_file():
            sh(exe + ["prune", str(args.teacher), "--robust", "--max-steps", str(args.robust_steps),
                      "--batch-size", str(args.batch_size), "--cache-size", str(args.cache_size), "--output", str(robust),
                      "--run-dir", str(args.work / "robust-run")], log)
        search_model = robust
    student = args.work / "student"
    if not (student / "model_index.json").is_file():
        sh(exe + ["prune", str(search_model), "--latency-budget", str(args.budget), "--target", args.target,
                  "--latency-engine", args.latency_engine, "--search-prompts", str(args.search_prompts),
                  "--recover", "--max-steps", str(args.recover_steps), "--batch-size", str(args.batch_size),
                  "--cache-size", str(args.cache_size),
                  "--output", str(student), "--run-dir", str(args.work / "recover-run")], log)
    trace = json.loads((student / "unet-searched" / "search" / "trace.json").read_text())
    shutil.copyfile(student / "unet-searched" / "search" / "quality_latency.png", args.out / "quality_latency.png")
    shutil.copyfile(student / "unet-searched" / "search" / "trace.json", args.out / "search_trace.json")

    latency = unet_latency(args.teacher, student, args.backends, args.rounds, args.runs)
    accuracy = {}
    for name, model in (("teacher", args.teacher), ("student", student)):
        out = args.work / f"eval-{name}.json"
        if not out.is_file():
            sh(exe + ["eval", str(model), "--prompts", str(args.eval_prompts), "--json", str(out)], log)
        accuracy[name] = json.loads(out.read_text())
    params = json.loads((student / "unet" / "edgediff_prune.json").read_text())
    results = {
        "teacher": str(args.teacher), "budget": args.budget, "spec": trace["spec"], "removed": trace["removed"],
        "teacher_parameters": params.get("teacher_parameters"), "student_parameters": params.get("student_parameters"),
        "latency": latency,
        "prompt_accuracy": {k: v["prompt_accuracy"] for k, v in accuracy.items()},
        "frechet_distance": {k: v["frechet_distance"] for k, v in accuracy.items()},
        "search": {"quality": trace["quality"], "reached": trace["reached"], "trace": trace["trace"],
                   "teacher_unet_ms_in_table": trace["teacher_unet_ms"], "table_coverage": trace["table_coverage"]},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Pruning: latency-driven block removal + BK-SDM recovery", "",
             f"Teacher `{args.teacher}`; budget {args.budget} x the teacher's UNet latency on {args.target}.", "",
             f"Removed: {', '.join(trace['removed'])}", "",
             f"UNet parameters: {params.get('teacher_parameters'):,} -> {params.get('student_parameters'):,}", "",
             "| backend | teacher UNet ms (median) | student UNet ms (median) | speed-up |", "|---|---|---|---|"]
    for name, r in latency.items():
        lines.append(f"| {name} | {r['teacher_ms']:.2f} | {r['student_ms']:.2f} | {r['speedup']:.2f}x |")
    pa = results["prompt_accuracy"]
    lines += ["", f"Prompt accuracy: teacher {100 * pa['teacher']:.1f}%, student {100 * pa['student']:.1f}% "
              f"({100 * (pa['student'] - pa['teacher']):+.1f} points)", "",
              "## Search trace", "", f"Quality: {trace['quality']}", "",
              "| step | action | unit | est. latency ms | quality |", "|---|---|---|---|---|"]
    for s in trace["trace"]:
        lines.append(f"| {s['step']} | {s['action']} | {', '.join(s['unit']) or '-'} | {s['latency_ms']:.2f} | {s['quality']:.3f} |")
    lines += ["", "![quality against latency](quality_latency.png)", ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
