"""Full-size UNet through the litert backend: conversion time, peak RSS, file sizes, parity and XNNPACK latency.

    flock /tmp/edgediff-heavy.lock python benchmarks/litert_unet.py \
        /work/shared/architectures/stable-diffusion-v1-5 --precisions fp32 fp16 int8 --out reports/litert-sd15

Each precision is converted in its own subprocess, so the peak RSS it reports (getrusage, measured right after
lowering, before anything is loaded to run) belongs to that conversion alone. The same subprocess then checks
the artifact against PyTorch and times it with XNNPACK; PyTorch eager is timed in one more subprocess of the
same run, and every latency ratio uses that figure. Weights are seeded random (--random-weights): the figures
are about size and speed, which do not depend on the weight values.

`LiteRTBackend.lower` at fp16/int8 is "convert to fp32, then quantize with ai-edge-quantizer". When this run
already wrote the fp32 files, the fp16/int8 workers reuse them and run only the quantize step (the same
`_quantize` call lower() makes; --fresh converts every precision from scratch instead). Their conversion time is
then reported as fp32 conversion + quantization, and their peak RSS is measured with the PyTorch UNet loaded, as
it is inside lower(); the conversion peak of lower() at that precision is max(fp32 conversion, quantization).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgediff.backends.base import open_artifact


def _unet_component(model_dir: str, size: int):
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    model = load_model(model_dir, random_weights=True)
    return build_components(model, ["unet"], ComponentShapes(size, size, batched_cfg=True))[0]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn, runs: int, warmup: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds per run; `cpu` collects process CPU seconds per run, which tells a busy machine apart
    (wall >> cpu / threads means the run waited for cores)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return times


def _quantize_from_fp32(component, float_dir: Path, out: Path, precision: str):
    """What lower() does after converting: quantize each fp32 file, read back its I/O, assemble the artifact."""
    from edgediff.backends.base import Artifact
    from edgediff.backends.litert import QuantPlan, _file_specs, _quantize

    out.mkdir(parents=True, exist_ok=True)
    plan = QuantPlan("int8_weights") if precision == "int8" else None
    chunks = []
    for piece in json.loads((float_dir / "pieces.json").read_text()):
        path = out / piece["file"]
        _quantize(float_dir / piece["file"], path, precision, plan, [], None)
        inputs, outputs = _file_specs(path, piece["inputs"], piece["outputs"])
        chunks.append(Artifact(path.stem, path, inputs, outputs, meta={"stages": piece["stages"]}))
    if len(chunks) == 1:
        return Artifact(component.name, chunks[0].path, chunks[0].inputs, chunks[0].outputs)
    return Artifact(component.name, chunks[0].path, component.inputs, component.outputs, chunks=chunks)


def worker(args) -> dict:
    component = _unet_component(args.model, args.size)
    inputs = component.example_inputs(1)
    result: dict = {"precision": args.precision, "rss_after_load_mb": round(_peak_rss_mb())}
    if args.precision == "pytorch":
        cpu: list[float] = []
        times = _time(lambda: component.run_torch(inputs), args.runs, args.warmup, cpu)
        result.update(median_s=statistics.median(times), times_s=times, cpu_s=cpu, load_avg=os.getloadavg(),
                      peak_rss_mb=round(_peak_rss_mb()))
        return result

    from edgediff.backends.litert import LiteRTBackend, LiteRTOptions
    from edgediff.verify import compare

    backend = LiteRTBackend()
    options = LiteRTOptions(threads=args.threads, lightweight_conversion=args.lightweight,
                            **({"max_chunk_bytes": args.max_chunk_bytes} if args.max_chunk_bytes else {}))
    out = Path(args.out) / args.precision
    float_dir = Path(args.out) / "fp32"
    start = time.perf_counter()
    if args.precision != "fp32" and not args.fresh and (float_dir / "pieces.json").exists():
        artifact = _quantize_from_fp32(component, float_dir, out, args.precision)
        result["quantize_s"] = time.perf_counter() - start
        result["made_from"] = "fp32 files of this run + ai-edge-quantizer"
    else:
        artifact = backend.lower(component, options, args.precision, out)
    result["convert_s"] = time.perf_counter() - start
    result["peak_rss_convert_mb"] = round(_peak_rss_mb())
    if args.precision == "fp32":
        pieces = [{"file": a.path.name, "inputs": [s.name for s in a.inputs], "outputs": [s.name for s in a.outputs],
                   "stages": a.meta.get("stages", [])} for a in (artifact.chunks or [artifact])]
        (out / "pieces.json").write_text(json.dumps(pieces))
    files = [c.path for c in artifact.chunks] or [artifact.path]
    result["files"] = {f.name: f.stat().st_size for f in files}
    result["total_bytes"] = sum(result["files"].values())
    result["max_file_bytes"] = max(result["files"].values())
    result["chunks"] = [{"file": c.path.name, "stages": c.meta.get("stages"), "inputs": [s.name for s in c.inputs],
                         "outputs": [s.name for s in c.outputs]} for c in artifact.chunks]
    session = open_artifact(backend, artifact, options)
    reference = component.run_torch(inputs)["noise_pred"]
    got = session(inputs)["noise_pred"]
    rel = float(((reference - got) ** 2).sum() ** 0.5 / (reference**2).sum() ** 0.5)
    result["parity"] = compare(reference, got).to_dict() | {"rel_l2_error": rel}
    cpu: list[float] = []
    times = _time(lambda: session(inputs), args.runs, args.warmup, cpu)
    result.update(median_s=statistics.median(times), times_s=times, cpu_s=cpu, load_avg=os.getloadavg(),
                  peak_rss_mb=round(_peak_rss_mb()))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="reports/litert-unet")
    parser.add_argument("--lightweight", action="store_true", help="litert-torch lightweight_conversion")
    parser.add_argument("--max-chunk-bytes", type=int, default=0, help="override LiteRTOptions.max_chunk_bytes")
    parser.add_argument("--no-pytorch", action="store_true", help="skip timing PyTorch eager")
    parser.add_argument("--fresh", action="store_true", help="convert fp16/int8 from scratch, not from fp32 files")
    parser.add_argument("--worker", dest="precision", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.precision:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for precision in ([] if args.no_pytorch else ["pytorch"]) + args.precisions:
        cmd = [sys.executable, __file__, args.model, "--worker", precision, "--size", str(args.size), "--runs",
               str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads), "--out", str(out),
               "--max-chunk-bytes", str(args.max_chunk_bytes)] + (["--lightweight"] if args.lightweight else []) \
            + (["--fresh"] if args.fresh else [])
        print("+", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        (out / f"{precision}.log").write_text(done.stdout + done.stderr)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            results.append({"precision": precision, "error": (done.stderr or done.stdout).strip()[-2000:]})
        else:
            results.append(json.loads(lines[-1][7:]))
        print(json.dumps(results[-1])[:2000], flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    torch_s = next((r["median_s"] for r in results if r["precision"] == "pytorch" and "median_s" in r), None)
    rows = ["| precision | convert s | peak RSS convert (GB) | files | largest file (GB) | total (GB) | "
            "PSNR dB | XNNPACK s/step | ratio to PyTorch |", "|" + "---|" * 9]
    for r in results:
        if r["precision"] == "pytorch" or "error" in r:
            continue
        rows.append(f"| {r['precision']} | {r['convert_s']:.0f} | {r['peak_rss_convert_mb'] / 1024:.2f} | "
                    f"{len(r['files'])} | {r['max_file_bytes'] / 1e9:.2f} | {r['total_bytes'] / 1e9:.2f} | "
                    f"{r['parity']['psnr_db']:.1f} | {r['median_s']:.2f} | "
                    + (f"{r['median_s'] / torch_s:.2f} |" if torch_s else "n/a |"))
    summary = "\n".join(rows) + (f"\n\nPyTorch eager: {torch_s:.2f} s/step (median of {args.runs})\n" if torch_s else "")
    (out / "results.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
