"""The pruning experiment of issue 9, end to end, every number measured in this run.

    OMP_NUM_THREADS=1 python benchmarks/prune_experiments.py --teacher models/shapes-sd --budget 0.6

1. `edgediff prune TEACHER --robust` (SnapFusion robust training; skipped with --robust-steps 0).
2. `edgediff prune MODEL --latency-budget B --target host-cpu`: latency table through the ONNX Runtime lowering
   (default: each removal unit priced by whole-UNet ablation, CPU time, 1 thread), greedy search by judge
   prompt accuracy that keeps some cross-attention.
3. `edgediff prune TEACHER --spec <searched spec> --recover`: BK-SDM KD recovery (resumable: re-running the
   script continues from the last checkpoint in --work/recover-run).
4. UNet latency of teacher and student on the host backends (ONNX Runtime, LiteRT when installed, PyTorch
   eager), one runtime thread each: both lowered by the same backend code, timed in the same process,
   interleaved round by round, wall time and process CPU time of every run.
5. `edgediff eval` prompt accuracy of teacher and student (same prompts, seeds, steps, guidance).
Results: --out/results.json and results.md (with the search trace and the quality-latency plot).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgediff.backends.base import open_artifact


def sh(cmd: list[str], log: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as fh:
        fh.write("+ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def unet_latency(teacher: Path, student: Path, backends: list[str], rounds: int, runs: int, threads: int = 1) -> dict:
    """Median ms (wall and process CPU time) of both UNets per backend, lowered by edgediff's backend code,
    `threads` runtime threads, timed interleaved (teacher, student, next backend, ... every round)."""
    import numpy as np
    import torch

    from edgediff.backends.base import get_backend
    from edgediff.errors import BackendUnavailable
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    torch.set_num_threads(threads)
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
            if hasattr(options, "threads"):
                options = dataclasses.replace(options, threads=threads)
            for k, c in comps.items():
                out = Path(tmp) / f"{name}-{k}"
                out.mkdir()
                artifact = backend.lower(c, options, "fp32", out)
                runners[(name, k)] = (open_artifact(backend, artifact, options), c.example_inputs(1))
        wall: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for run, inputs in runners.values():
            run(inputs)  # warm-up
        load_before = os.getloadavg()
        for _ in range(rounds):
            for key, (run, inputs) in runners.items():
                for _ in range(runs):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run(inputs)
                    cpu[key].append((time.process_time() - start_cpu) * 1000.0)
                    wall[key].append((time.perf_counter() - start) * 1000.0)
        load_after = os.getloadavg()
    result = {}
    for name in backends:
        if (name, "teacher") not in wall:
            continue
        t, s = statistics.median(wall[(name, "teacher")]), statistics.median(wall[(name, "student")])
        tc, sc = statistics.median(cpu[(name, "teacher")]), statistics.median(cpu[(name, "student")])
        result[name] = {"teacher_ms": t, "student_ms": s, "speedup": t / s, "runs": len(wall[(name, "teacher")]),
                        "teacher_cpu_ms": tc, "student_cpu_ms": sc, "cpu_speedup": tc / sc,
                        "teacher_p90_ms": float(np.percentile(wall[(name, "teacher")], 90)),
                        "student_p90_ms": float(np.percentile(wall[(name, "student")], 90)),
                        "threads": threads, "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in load_after]}
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
    p.add_argument("--latency-method", choices=("ablation", "blocks"), default="ablation")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="clock of the search's latency table")
    p.add_argument("--lr", type=float, default=3e-4, help="recovery learning rate")
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "litert", "pytorch"])
    p.add_argument("--threads", type=int, default=1, help="runtime threads for every timing")
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
    searched = args.work / "searched"
    if not (searched / "edgediff_prune.json").is_file():
        sh(exe + ["prune", str(search_model), "--latency-budget", str(args.budget), "--target", args.target,
                  "--latency-engine", args.latency_engine, "--latency-method", args.latency_method,
                  "--clock", args.clock, "--latency-threads", str(args.threads),
                  "--search-prompts", str(args.search_prompts), "--output", str(searched)], log)
    trace = json.loads((searched / "search" / "trace.json").read_text())
    shutil.copyfile(searched / "search" / "quality_latency.png", args.out / "quality_latency.png")
    shutil.copyfile(searched / "search" / "trace.json", args.out / "search_trace.json")
    shutil.copyfile(searched / "search" / "latency_table.json", args.out / "latency_table.json")
    spec_file = args.work / "searched_spec.json"
    spec_file.write_text(json.dumps(trace["spec"]) + "\n")
    student = args.work / "student"
    if not (student / "model_index.json").is_file():  # resumes from the last checkpoint in recover-run
        sh(exe + ["prune", str(args.teacher), "--spec", str(spec_file), "--recover",
                  "--max-steps", str(args.recover_steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                  "--cache-size", str(args.cache_size), "--checkpoint-every", "100",
                  "--output", str(student), "--run-dir", str(args.work / "recover-run")], log)

    latency = unet_latency(args.teacher, student, args.backends, args.rounds, args.runs, args.threads)
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
                   "teacher_unet_ms_in_table": trace["teacher_unet_ms"], "table_coverage": trace["table_coverage"],
                   "table_method": trace.get("table_method"), "clock": trace.get("clock"),
                   "table_load_average": trace.get("table_load_average")},
        "recovery": json.loads((args.work / "recover-run" / "summary.json").read_text()),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Pruning: latency-driven block removal + BK-SDM recovery", "",
             f"Teacher `{args.teacher}`; budget {args.budget} x the teacher's UNet latency on {args.target}.", "",
             f"Removed: {', '.join(trace['removed'])}", "",
             f"UNet parameters: {params.get('teacher_parameters'):,} -> {params.get('student_parameters'):,}", "",
             f"Latency table: {trace.get('table_method')} pricing, {trace.get('clock')} clock, teacher "
             f"{trace['teacher_unet_ms']:.2f} ms, units cover {100 * (trace['table_coverage'] or 0):.0f}%, "
             f"load average {trace.get('table_load_average')}", "",
             "| backend | teacher ms wall | student ms wall | speed-up wall | teacher ms CPU | student ms CPU "
             "| speed-up CPU | load average before/after |", "|---|---|---|---|---|---|---|---|"]
    for name, r in latency.items():
        lines.append(f"| {name} | {r['teacher_ms']:.2f} | {r['student_ms']:.2f} | {r['speedup']:.2f}x "
                     f"| {r['teacher_cpu_ms']:.2f} | {r['student_cpu_ms']:.2f} | {r['cpu_speedup']:.2f}x "
                     f"| {r['load_average_before'][0]} / {r['load_average_after'][0]} |")
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
