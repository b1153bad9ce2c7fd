"""Full-size UNet through the coreml backend: conversion time, peak RSS and package size per weight format.

    flock /tmp/edgediff-heavy.lock env OMP_NUM_THREADS=1 python benchmarks/coreml_unet.py \
        /work/shared/architectures/stable-diffusion-v1-5 --variants fp16 int8 --out /tmp/coreml-unet

Each variant runs `CoreMLBackend.lower` in its own subprocess, so the peak RSS it reports (VmHWM) is that
conversion's alone, and the backend's structural check runs on the result (compute precision, compressed-weight
ops, size ratio, I/O against the manifest). Variants: `fp16` (dense fp16 weights), `int8` (linear symmetric
per-channel int8 weights, every layer: no int8 plan, so no calibration or sensitivity search, which at 512x512 takes
hours on a CPU) and `6bit` (k-means palettization). Weights are seeded random: size and time do not depend on them.
Core ML cannot run predictions on Linux, so there is no latency here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"fp16": ("fp16", {}), "int8": ("int8", {}), "6bit": ("fp16", {"palettize_bits": 6})}


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def worker(args) -> dict:
    import torch

    torch.set_num_threads(1)
    from edgediff.backends.coreml import CoreMLBackend, CoreMLOptions
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.profile.host import peak_rss_mb

    precision, extra = VARIANTS[args.worker]
    start = time.perf_counter()
    model = load_model(args.model, random_weights=True)
    (unet,) = build_components(model, ["unet"], ComponentShapes(args.size, args.size, batched_cfg=True))
    del model
    load_s = time.perf_counter() - start
    options = CoreMLOptions(chunk_unet=args.chunks, **extra)
    out = args.out / args.worker
    backend = CoreMLBackend()
    start = time.perf_counter()
    artifact = backend.lower(unet, options, precision, out)
    convert_s = time.perf_counter() - start
    check = backend.structural_check(artifact, options, precision, raise_on_failure=False)
    packages = sorted(out.glob("*.mlpackage"))
    return {
        "variant": args.worker, "precision": precision, "options": extra, "load_s": round(load_s, 1),
        "convert_s": round(convert_s, 1), "peak_rss_mb": round(peak_rss_mb()),
        "packages": {p.name: _tree_bytes(p) for p in packages}, "total_bytes": sum(_tree_bytes(p) for p in packages),
        "structural_check": "passed" if check["passed"] else [c for c in check["checks"] if not c["passed"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--variants", nargs="+", default=["fp16", "int8"], choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/coreml-unet"))
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0
    import os

    results = []
    for variant in args.variants:
        cmd = [sys.executable, __file__, args.model, "--worker", variant, "--size", str(args.size),
               "--chunks", str(args.chunks), "--out", str(args.out)]
        load = os.getloadavg()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            results.append({"variant": variant, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_avg_before_after"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
        results.append(result)
        print(json.dumps(result), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| variant | conversion s | peak RSS GB | packages (MB) | total MB | structural check | load before/after |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | |")
            continue
        sizes = " + ".join(f"{b / 2**20:.1f}" for b in r["packages"].values())
        check = r["structural_check"] if r["structural_check"] == "passed" else "FAILED"
        lines.append(f"| {r['variant']} | {r['convert_s']:.0f} | {r['peak_rss_mb'] / 1024:.2f} | {sizes} | "
                     f"{r['total_bytes'] / 2**20:.1f} | {check} | {r['load_avg_before_after']} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
