"""int8 vs fp32 latency of one component (the UNet by default) of converted bundles, interleaved in one run.

    OMP_NUM_THREADS=1 python benchmarks/int8_latency.py ort_fp32=/tmp/int8/ort_fp32/onnxruntime \
        ort_int8=/tmp/int8/ort/onnxruntime --runs 30 --json reports/int8/latency.json

Every bundle's session (one thread) is opened first; then each round runs every bundle once, in turn, on the same
input, so a load change on the shared machine hits all of them alike. Reported: median and p90 wall milliseconds
per call, the ratio of every median to the first bundle's, the component's file bytes and their ratio, and
os.getloadavg() before and after. Inputs are seeded normal latents, a mid-range timestep and seeded text states
(latency does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _feeds(spec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for t in spec.inputs:
        shape = tuple(int(d) if isinstance(d, int) else 1 for d in t.shape)
        if "int" in t.dtype:
            feeds[t.name] = rng.integers(0, 1000, shape).astype(t.dtype)
        elif t.name == "timestep":
            feeds[t.name] = np.full(shape, 500.0, t.dtype)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", help="LABEL=BUNDLE_DIR; the first is the ratio's reference")
    parser.add_argument("--component", default="unet")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from edgediff.contract import Manifest
    from edgediff.runtime.sessions import SessionOptions, open_component

    sessions, sizes, feeds = {}, {}, {}
    for item in args.bundles:
        label, path = item.split("=", 1)
        manifest = Manifest.read(Path(path))
        spec = manifest.component(args.component)
        sessions[label] = open_component(manifest, args.component, SessionOptions(threads=args.threads))
        files = set(spec.files) | {p for f in spec.files for p in Path(f).parent.glob(Path(f).name + ".data")}
        sizes[label] = sum(Path(f).stat().st_size for f in files)
        feeds[label] = _feeds(spec)
    load_before = os.getloadavg()
    for _ in range(args.warmup):
        for label, session in sessions.items():
            session.run(feeds[label])
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for _ in range(args.runs):
        for label, session in sessions.items():
            start = time.perf_counter()
            session.run(feeds[label])
            times[label].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    first = next(iter(sessions))
    base_ms, base_bytes = statistics.median(times[first]) * 1000, sizes[first]
    result = {"component": args.component, "runs": args.runs, "threads": args.threads,
              "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
              "bundles": {}}
    for label in sessions:
        ms = sorted(t * 1000 for t in times[label])
        median = statistics.median(ms)
        result["bundles"][label] = {"median_ms": round(median, 3), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
                                    "ratio_vs_first": round(median / base_ms, 3), "bytes": sizes[label],
                                    "size_ratio_vs_first": round(sizes[label] / base_bytes, 3)}
        print(f"{label}: median {median:.2f} ms (x{median / base_ms:.2f} of {first}), {sizes[label]} bytes "
              f"(x{sizes[label] / base_bytes:.3f})")
    print(f"loadavg before {load_before}, after {load_after}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
