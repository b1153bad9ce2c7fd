"""Per-size UNet latency of bundles with several sizes (issue 21), against one-size bundles of each size.

    flock /tmp/edgediff-heavy.lock python benchmarks/sizes_latency.py --convert-only     (the 8 conversions)
    flock /tmp/edgediff-heavy.lock python benchmarks/sizes_latency.py --reuse            (the timing)

Converts the default model (models/shapes-sd) for ONNX Runtime and LiteRT once with every size (--sizes, WIDTHxHEIGHT)
and once per size alone, each conversion in its own process (`edgediff convert`; --reuse keeps finished ones in
--work). Then, in one process, times the UNet call (batch 2, the bundle's own shapes) of every (backend, bundle,
size) interleaved round by round, so machine-load drift hits all alike: warm-up calls first, then --runs rounds;
medians and p90 per cell, with the load average before and after. ONNX Runtime's 3-size bundle is one graph with
dynamic spatial axes; LiteRT's holds one signature per size (size_WxH) sharing the weights. File sizes are the
manifest's bytes per component. Writes OUT/sizes_latency.json and OUT/README.md (default OUT: reports/sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BACKENDS = ("onnxruntime", "litert")
DEFAULT_SIZES = ("64x64", "96x96", "128x128")


def _parse(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def convert(model: Path, backend: str, sizes: list[str], out: Path, reuse: bool) -> dict:
    """One `edgediff convert` in a child process; its wall time and whether it was reused."""
    bundle = out / backend
    if reuse and (bundle / "manifest.json").is_file():
        return {"seconds": None, "reused": True}
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "edgediff.cli", "convert", str(model), "--target", backend, "--output", str(out),
           "--no-profile", "--set", "verify.samples=1", "--set", "verify.end_to_end=false",
           *[a for s in sizes for a in ("--size", s)]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"convert {backend} {sizes} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {"seconds": round(time.perf_counter() - start, 1), "reused": False}


def file_bytes(bundle: Path) -> dict[str, int]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {name: int(c["bytes"]) for name, c in manifest["components"].items()}


def unet_feeds(bundle: Path, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The UNet's inputs at `size`: the manifest's fixed shapes with the sample's spatial axes at that size."""
    from edgediff.contract import Manifest

    manifest = Manifest.read(bundle, verify_checksums=False)
    factor = int(manifest.require_pipeline()["height"]) // int(manifest.latent_shape[2])
    feeds = {}
    for spec in manifest.component("unet").inputs:
        shape = [d if isinstance(d, int) else 2 for d in spec.shape]
        if spec.name == "sample":
            shape[-2:] = [size[0] // factor, size[1] // factor]
        if spec.name == "timestep":
            feeds[spec.name] = np.full(shape, 500.0, np.float32)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_cells(cells: list[dict], runs: int, warmup: int, threads: int) -> None:
    """Fill each cell's `ms` with `runs` UNet call times, interleaved cell by cell each round."""
    from edgediff.contract import Manifest
    from edgediff.runtime.sessions import SessionOptions, open_component

    rng = np.random.default_rng(0)
    sessions = {}
    for cell in cells:
        key = cell["bundle_path"]
        if key not in sessions:
            start = time.perf_counter()
            sessions[key] = open_component(Manifest.read(Path(key), verify_checksums=False), "unet",
                                           SessionOptions(threads=threads))
            cell["load_ms"] = round((time.perf_counter() - start) * 1000, 1)
        cell["feeds"] = unet_feeds(Path(key), _parse(cell["size"]), rng)
        cell["ms"] = []
    for _ in range(warmup):
        for cell in cells:
            sessions[cell["bundle_path"]].run(cell["feeds"])
    for _ in range(runs):
        for cell in cells:
            start = time.perf_counter()
            out = sessions[cell["bundle_path"]].run(cell["feeds"])
            cell["ms"].append((time.perf_counter() - start) * 1000)
            expected = list(cell["feeds"]["sample"].shape)
            got = list(next(iter(out.values())).shape)
            if got != expected:
                raise SystemExit(f"{cell['backend']} {cell['bundle']} {cell['size']}: output {got}, expected {expected}")
    for cell in cells:
        del cell["feeds"]
        ms = np.array(cell.pop("ms"))
        cell.update(median_ms=round(float(np.median(ms)), 3), p90_ms=round(float(np.percentile(ms, 90)), 3),
                    min_ms=round(float(ms.min()), 3), runs=len(ms))


def markdown(result: dict) -> str:
    lines = ["# UNet latency per size: bundles with several sizes vs one-size bundles", "",
             f"Generated by `{result['command']}` on {result['date']} ({result['machine']}).",
             f"Default model (models/shapes-sd), UNet call of batch 2 (batched guidance), {result['threads']} "
             f"thread(s), {result['runs']} interleaved rounds after {result['warmup']} warm-up; load average "
             f"{result['load_before']} before, {result['load_after']} after (2-core machine shared with other jobs: "
             "compare cells within this table, not with other runs).", "",
             "| backend | bundle | size (WxH) | median ms | p90 ms | min ms |", "|---|---|---|---:|---:|---:|"]
    for c in result["cells"]:
        lines.append(f"| {c['backend']} | {c['bundle']} | {c['size']} | {c['median_ms']:.3f} | {c['p90_ms']:.3f} "
                     f"| {c['min_ms']:.3f} |")
    lines += ["", "Files (bytes of each bundle's model files, from the manifests):", "",
              "| backend | bundle | sizes | unet bytes | all components bytes | convert s |", "|---|---|---|---:|---:|---:|"]
    for b in result["bundles"]:
        lines.append(f"| {b['backend']} | {b['bundle']} | {', '.join(b['sizes'])} | {b['bytes']['unet']:,} | "
                     f"{sum(b['bytes'].values()):,} | {b['convert']['seconds'] if b['convert']['seconds'] is not None else 'reused'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "shapes-sd")
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="WIDTHxHEIGHT, the first the default")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgediff-sizes-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "sizes")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="keep bundles already converted in --work")
    parser.add_argument("--convert-only", action="store_true", help="convert, time nothing (then rerun with --reuse)")
    args = parser.parse_args(argv)
    load_before = [round(v, 2) for v in os.getloadavg()]
    bundles, cells = [], []
    for backend in args.backends:
        variants = [("all sizes", list(args.sizes))] + [("one size", [s]) for s in args.sizes]
        for label, sizes in variants:
            folder = args.work / backend / ("sizes-" + "-".join(sizes))
            print(f"convert {backend} {sizes}", file=sys.stderr, flush=True)
            info = convert(args.model, backend, sizes, folder, args.reuse)
            bundle = folder / backend
            bundles.append({"backend": backend, "bundle": label, "sizes": sizes, "bytes": file_bytes(bundle),
                            "convert": info, "path": str(bundle)})
            for size in sizes:
                cells.append({"backend": backend, "bundle": label, "size": size, "bundle_path": str(bundle)})
    if args.convert_only:
        return 0
    print(f"timing {len(cells)} cells x {args.runs} rounds", file=sys.stderr, flush=True)
    time_cells(cells, args.runs, args.warmup, args.threads)
    for cell in cells:
        cell.pop("bundle_path")
    result = {
        "command": "python benchmarks/sizes_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}", "threads": args.threads, "runs": args.runs,
        "warmup": args.warmup, "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
        "cells": cells, "bundles": [{k: v for k, v in b.items() if k != "path"} for b in bundles],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizes_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "README.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
