"""The distillation experiment of issue 10, end to end, every number measured in this run.

    OMP_NUM_THREADS=1 python benchmarks/distill_experiments.py --teacher models/shapes-sd --minutes 25

1. `edgediff distill` (consistency) for a wall-time budget (resumable: rerun to continue training).
2. `edgediff eval` of the teacher at 25 steps with guidance, the teacher at 2 and 4 steps with each
   few-step sampler (DDIM / Euler / DPM++ 2M, trailing spacing), and the student at 2 and 4 steps.
3. Grids side by side (benchmarks/distill_grid.py).
4. Host time per image: `edgediff convert` of teacher and student, then `edgediff generate` timings.
Results go to --out (JSON + markdown table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

FAILED_FILE = "CONVERSION_FAILED.txt"
FEW_STEP_SAMPLERS = ("DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler")


def sh(cmd: list[str], log: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as fh:
        fh.write("+ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def with_scheduler(teacher: Path, scheduler: str, where: Path) -> Path:
    """A view of the teacher folder (symlinked components) with another scheduler, trailing spacing."""
    view = where / f"{teacher.name}-{scheduler}"
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for item in teacher.iterdir():
        if item.name not in ("scheduler", "model_index.json", "edgediff.json"):
            (view / item.name).symlink_to(item.resolve())
    config = json.loads((teacher / "scheduler" / "scheduler_config.json").read_text())
    config.update(_class_name=scheduler, timestep_spacing="trailing")
    (view / "scheduler").mkdir()
    (view / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=1))
    index = json.loads((teacher / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", scheduler]
    (view / "model_index.json").write_text(json.dumps(index, indent=1))
    return view


def evaluate(model: Path, steps: int, guidance: float, prompts: int, out: Path, log: Path) -> dict:
    if not out.is_file():
        sh(["edgediff", "eval", str(model), "--steps", str(steps), "--guidance", str(guidance),
            "--prompts", str(prompts), "--json", str(out)], log)
    return json.loads(out.read_text())


def _bundle_steps(folder: Path) -> int:
    return int(json.loads((folder / "manifest.json").read_text())["pipeline"]["scheduler"]["num_inference_steps"])


def _bundle_guidance(folder: Path) -> float:
    return float(json.loads((folder / "manifest.json").read_text())["pipeline"]["guidance"]["scale"])


def timing(args: argparse.Namespace, prompts_file: Path, log: Path) -> dict:
    """Median ms per image of teacher and student bundles, alternating runs so both see the same load."""
    models = {"teacher": args.teacher, "student": args.student}
    if args.pruned_teacher is not None:
        models.update(pruned_teacher=args.pruned_teacher, pruned_student=args.pruned_student)
    for precision in args.precisions.split(","):
        if precision != "fp32":
            models[f"teacher_{precision}"] = args.teacher
            models[f"student_{precision}"] = args.student
            if args.pruned_teacher is not None:
                models[f"pruned_teacher_{precision}"] = args.pruned_teacher
                models[f"pruned_student_{precision}"] = args.pruned_student
    if args.only:  # a subset of the rows (bundles and evaluations on disk are reused by later, fuller runs)
        models = {name: models[name] for name in args.only.split(",")}
    out: dict = {}
    for backend in args.backends.split(","):  # each backend converts every row; a failure drops it there only
        failed: dict[str, str] = {}  # rows whose conversion failed (e.g. convert's end-to-end PSNR gate): reported, not timed
        for name, model in models.items():
            bundle = args.out / "bundles" / f"{name}-{backend}"
            if (bundle / FAILED_FILE).is_file():  # a failed conversion is not retried on every rerun
                failed[name] = (bundle / FAILED_FILE).read_text().strip()
            elif not (bundle / backend / "manifest.json").is_file():
                precision = name.rsplit("_", 1)[1] if name.endswith(("_fp16", "_int8")) else "fp32"
                try:
                    sh(["edgediff", "convert", str(model), "--target", backend, "--precision", precision,
                        "--output", str(bundle), "--no-profile"], log)
                except SystemExit:
                    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
                    failed[name] = errors[-1] if errors else "edgediff convert failed (see commands.log)"
                    bundle.mkdir(parents=True, exist_ok=True)
                    (bundle / FAILED_FILE).write_text(failed[name] + "\n")
        converted = [name for name in models if name not in failed]
        totals: dict[str, list[float]] = {name: [] for name in converted}
        loads = []
        for rnd in range(args.rounds):
            loads.append(round(os.getloadavg()[0], 2))  # other jobs share the host: record their load per round
            for name in converted:
                bundle = args.out / "bundles" / f"{name}-{backend}"
                timings = args.out / "timings" / f"{name}-{backend}-{rnd}.json"
                sh(["edgediff", "generate", str(bundle), "--prompts-file", str(prompts_file), "--output",
                    str(args.out / "images" / f"{name}-{backend}"), "--timings-json", str(timings), "--threads", str(args.threads), "--quiet"], log)
                totals[name] += [float(r["total_ms"]) for r in json.loads(timings.read_text())]
        accuracy = {}
        if args.bundle_prompts:
            for name in converted:
                folder = args.out / "bundles" / f"{name}-{backend}" / backend
                accuracy[name] = evaluate(folder, _bundle_steps(folder), _bundle_guidance(folder), args.bundle_prompts,
                                          args.out / "eval" / f"bundle-{name}-{backend}.json", log)
        manifests = {n: json.loads((args.out / "bundles" / f"{n}-{backend}" / backend / "manifest.json").read_text()) for n in converted}
        out[backend] = {
            name: {"median_ms_per_image": statistics.median(v), "images": len(v),
                   "steps": manifests[name]["pipeline"]["scheduler"]["num_inference_steps"],
                   "batched_cfg": manifests[name]["pipeline"]["guidance"]["batched_cfg"],
                   "precision": manifests[name]["precision"],
                   "prompt_accuracy": accuracy.get(name, {}).get("prompt_accuracy"),
                   "frechet_distance": accuracy.get(name, {}).get("frechet_distance")}
            for name, v in totals.items()
        }
        for name in out[backend]:
            out[backend][name]["loadavg_1min_per_round"] = loads
        out[backend].update({name: {"failed": reason} for name, reason in failed.items()})
    return out


def _pct(value: float | None) -> float | None:
    return None if value is None else (value * 100.0 if value <= 1.0 else value)


def write_report(results: dict, path: Path) -> None:
    """Markdown tables of every measured figure (accuracy in percent, Frechet distance, ms per image)."""
    evals = results.get("evals", {})
    lines = [f"# Step distillation of {results['teacher']}", "",
             f"Student: `{results['student']}`; guidance {results['guidance']:g}.", ""]
    if "training" in results:
        t = results["training"]
        lines += [f"Training: {t['final_step']} iterations in {t['seconds']:.0f} s on {t['num_processes']} process(es), "
                  f"replicas identical: {t['replicas_identical']}.", ""]
    lines += ["| run | steps | UNet evals / image | prompt accuracy (%) | Frechet distance |", "|---|---|---|---|---|"]
    for key, ev in evals.items():
        parts = key.split("_")
        steps = int(parts[-1]) if parts[-1].isdigit() else int(next(p for p in parts if p.isdigit()))
        evals_per_image = steps * (2 if key.startswith(("teacher", "pruned_teacher")) else 1)
        acc = _pct(ev.get("prompt_accuracy"))
        fd = ev.get("frechet_distance")
        lines.append(f"| {key} | {steps} | {evals_per_image} | {acc:.1f} | {fd:.2f} |" if acc is not None and fd is not None
                     else f"| {key} | {steps} | {evals_per_image} | {acc} | {fd} |")
    if "teacher_25_cfg" in evals and "student_4" in evals:
        t25, s4 = _pct(evals["teacher_25_cfg"]["prompt_accuracy"]), _pct(evals["student_4"]["prompt_accuracy"])
        lines += ["", f"- 4-step student vs. teacher at 25 steps with guidance: {s4 - t25:+.1f} points "
                      f"(criterion: within 3 points) -> {'met' if s4 >= t25 - 3 else 'NOT met'}"]
    best = results.get("teacher_best_2_step_sampler")
    if best and "student_2" in evals:
        tb, s2 = _pct(evals[f"teacher_2_{best}"]["prompt_accuracy"]), _pct(evals["student_2"]["prompt_accuracy"])
        lines += [f"- 2-step student vs. the teacher's best 2-step sampler ({best}): {s2 - tb:+.1f} points "
                  f"(criterion: at least +15) -> {'met' if s2 >= tb + 15 else 'NOT met'}"]
    for backend, rows in results.get("timing", {}).items():
        base = rows.get("teacher", {}).get("median_ms_per_image")
        lines += ["", f"## Host time per image, {backend} (medians from the same run)", "",
                  "| model | precision | steps | CFG batch | median ms / image | speed-up vs. teacher | prompt accuracy (%) | Frechet distance |",
                  "|---|---|---|---|---|---|---|---|"]
        loads = next((r["loadavg_1min_per_round"] for r in rows.values() if "loadavg_1min_per_round" in r), None)
        if loads:
            lines[-2:-2] = [f"Load average (1 min) at the start of each round: {', '.join(f'{x:g}' for x in loads)}.", ""]
        for name, r in rows.items():
            if "failed" in r:
                lines.append(f"| {name} | - | - | - | conversion failed: {r['failed']} | - | - | - |")
                continue
            speed = f"{base / r['median_ms_per_image']:.1f}x" if base else "-"
            acc, fd = _pct(r.get("prompt_accuracy")), r.get("frechet_distance")
            lines.append(f"| {name} | {r['precision']} | {r['steps']} | {r['batched_cfg']} | {r['median_ms_per_image']:.0f} | {speed} | "
                         f"{'-' if acc is None else f'{acc:.1f}'} | {'-' if fd is None else f'{fd:.2f}'} |")
    if (path.parent / "grid.png").is_file():
        lines += ["", "![teacher vs. students](grid.png)"]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=Path("models/shapes-sd"))
    ap.add_argument("--student", type=Path, default=Path("models/shapes-sd-lcm4"))
    ap.add_argument("--run-dir", type=Path, default=Path("runs/distill/shapes-sd-lcm4"))
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--guidance", type=float, default=None, help="teacher's guidance (default: its edgediff.json, else 7.5)")
    ap.add_argument("--guidance-range", type=float, nargs=2, default=None)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--pruned-teacher", type=Path, default=None, help="a pruned (recovered) teacher: distill it too, for the combination table")
    ap.add_argument("--pruned-student", type=Path, default=Path("runs/distill/shapes-sd-pruned-lcm4"))
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--backends", default="onnxruntime,litert")
    ap.add_argument("--precisions", default="fp32,int8", help="student precisions to time besides fp32")
    ap.add_argument("--only", default=None, help="time only these rows, e.g. teacher,student,teacher_int8")
    ap.add_argument("--threads", type=int, default=1, help="runtime threads of the timed `edgediff generate` runs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bundle-prompts", type=int, default=100, help="prompts for the accuracy of each bundle (0: skip)")
    ap.add_argument("--out", type=Path, default=Path("runs/distill/experiment"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "commands.log"
    teacher_defaults = json.loads((args.teacher / "edgediff.json").read_text()) if (args.teacher / "edgediff.json").is_file() else {}
    g = args.guidance or float(teacher_defaults.get("guidance", 7.5))
    lo, hi = args.guidance_range or (max(1.0, g - 3.0), g + 3.0)
    results: dict = {"teacher": str(args.teacher), "student": str(args.student), "guidance": g, "evals": {}}

    if not args.skip_train:
        sh(["edgediff", "distill", str(args.teacher), "--method", "consistency", "--steps", "4", "--guidance", str(g),
            "--guidance-range", str(lo), str(hi), "--max-steps", "100000", "--max-minutes", str(args.minutes),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--checkpoint-every", "50",
            "--output", str(args.student), "--run-dir", str(args.run_dir)], log)
    if args.pruned_teacher is not None and not args.skip_train:
        sh(["edgediff", "distill", str(args.pruned_teacher), "--method", "consistency", "--steps", "4", "--guidance", str(g),
            "--guidance-range", str(lo), str(hi), "--max-steps", "100000", "--max-minutes", str(args.minutes),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--checkpoint-every", "50",
            "--output", str(args.pruned_student), "--run-dir", str(args.pruned_student.parent / (args.pruned_student.name + "-run"))], log)
    if (args.run_dir / "summary.json").is_file():
        results["training"] = json.loads((args.run_dir / "summary.json").read_text())

    if not args.skip_eval:
        ev = args.out / "eval"
        ev.mkdir(exist_ok=True)
        views = args.out / "views"
        for steps in (2, 4):  # the teacher with few-step samplers (trailing spacing) and with its own scheduler
            for sampler in FEW_STEP_SAMPLERS:
                view = with_scheduler(args.teacher, sampler, views)
                results["evals"][f"teacher_{steps}_{sampler}"] = evaluate(view, steps, g, args.prompts, ev / f"teacher_{steps}_{sampler}.json", log)
            results["evals"][f"teacher_{steps}_own"] = evaluate(args.teacher, steps, g, args.prompts, ev / f"teacher_{steps}_own.json", log)
        if not (args.student / "model_index.json").is_file():
            raise SystemExit(f"teacher few-step evaluations done; {args.student} does not exist yet (train it, then rerun)")
        for steps in (1, 2, 4):
            results["evals"][f"student_{steps}"] = evaluate(args.student, steps, g, args.prompts, ev / f"student_{steps}.json", log)
        if args.pruned_teacher is not None:
            results["evals"]["pruned_teacher_25_cfg"] = evaluate(args.pruned_teacher, 25, g, args.prompts, ev / "pruned_teacher_25.json", log)
            results["evals"]["pruned_student_4"] = evaluate(args.pruned_student, 4, g, args.prompts, ev / "pruned_student_4.json", log)
        card = args.teacher / "metrics.json"
        card_eval = json.loads(card.read_text()).get("evaluation", {}).get("25") if card.is_file() else None
        if card_eval and card_eval.get("settings", {}).get("guidance") == g and card_eval.get("settings", {}).get("prompts") == args.prompts:
            results["evals"]["teacher_25_cfg"] = card_eval | {"source": str(card)}  # same evaluate(), same settings
        else:
            results["evals"]["teacher_25_cfg"] = evaluate(args.teacher, 25, g, args.prompts, ev / "teacher_25.json", log)
        candidates = (*FEW_STEP_SAMPLERS, "own")
        best2 = max(candidates, key=lambda s: results["evals"][f"teacher_2_{s}"]["prompt_accuracy"])
        results["teacher_best_2_step_sampler"] = best2
        grid = args.out / "grid.png"
        sh([sys.executable, "benchmarks/distill_grid.py", "--out", str(grid), "--rows", "8",
            "--column", f"teacher 25 steps cfg {g:g}={args.teacher}::25:{g}",
            "--column", f"teacher 2 steps {best2[:5]}={args.teacher if best2 == 'own' else with_scheduler(args.teacher, best2, views)}::2:{g}",
            "--column", f"student 4 steps={args.student}::4:",
            "--column", f"student 2 steps={args.student}::2:"], log)

    if not args.skip_timing:
        prompts_file = args.out / "timing_prompts.txt"
        from edgediff.shapes import dataset

        prompts_file.write_text("\n".join(dataset.sample_spec(777, i).caption for i in range(6)) + "\n")
        results["timing"] = timing(args, prompts_file, log)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    write_report(results, args.out / "report.md")
    print(json.dumps(results.get("timing"), indent=1))
    print(json.dumps({k: {m: v.get(m) for m in ("prompt_accuracy", "frechet_distance")} for k, v in results["evals"].items()}, indent=1))


if __name__ == "__main__":
    main()
