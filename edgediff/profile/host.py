"""Host profiling: time every component of a bundle on this machine, next to its PyTorch original.

Each measurement runs in a fresh subprocess so its peak RSS belongs to that component and engine alone
(a process's peak never goes down), and so the two engines do not share caches or thread pools.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from edgediff.backends.base import get_backend, options_from_dict
from edgediff.contract import Manifest, inside
from edgediff.errors import DeviceError, RecipeError
from edgediff.profile.record import OpTime, ProfileRecord
from edgediff.recipe import load_recipe
from edgediff.runtime.sessions import open_session

WORKER_TIMEOUT_S = 3 * 3600


def host_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"host ({cpu}, {os.cpu_count()} cpus)"


def peak_rss_mb() -> float:
    """This process's own peak resident memory. Linux's `ru_maxrss` carries the parent's peak across fork/exec
    (a worker started by an 11 GB convert process reported 11 GB for a 10 MB model), so read VmHWM first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    scale = 2**20 if sys.platform == "darwin" else 1024.0  # macOS reports bytes, Linux kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def summarize(times_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(times_ms)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "mean_ms": float(arr.mean()), "min_ms": float(arr.min()), "max_ms": float(arr.max())}


def profile_bundle(bundle_dir: Path, runs: int = 5, warmup: int = 1, compare_pytorch: bool = True,
                   op_profile: bool = True, components: list[str] | None = None, log=None,
                   module: str | None = None, verify_checksums: bool = True) -> list[ProfileRecord]:
    """Backend (and PyTorch) records for each component; ratio_to_pytorch in the backend record's extra.

    `module`: the custom network class the user named (a bundle of a custom network is timed against PyTorch
    only when the user names its class: a bundle never names code to import)."""
    manifest = Manifest.read(bundle_dir, verify_checksums=verify_checksums)  # inside, sizes, sha256, before any run
    runnable, why = get_backend(manifest.backend).can_run_here()
    named = load_recipe(inside(manifest.root, "recipe.toml", "recipe.toml")).model.module
    names = components or list(manifest.components)
    unknown = sorted(set(names) - set(manifest.components))
    if unknown:
        raise RecipeError(f"no component(s) {', '.join(unknown)} in {manifest.root}; it has "
                          f"{', '.join(manifest.components)}")
    if compare_pytorch and named and named != module:
        compare_pytorch = False
        if log:
            log(f"note: PyTorch is not timed: the bundle was made from custom network {named!r}, which only "
                "runs when you name it (--module)")
    records: list[ProfileRecord] = []
    jobs = [(n, "backend") for n in names] if runnable else []
    if compare_pytorch:
        jobs += [(n, "pytorch") for n in names]
    if not runnable and log:
        log(f"note: {manifest.backend} artifacts are not timed on this machine: {why}")
    for name, engine in tqdm(jobs, desc="profile", unit="run-set"):
        records.append(_run_worker(bundle_dir, name, engine, runs, warmup, op_profile and engine == "backend",
                                   named if compare_pytorch else None))
    by_key = {(r.component, r.backend): r for r in records}
    for r in records:
        torch_rec = by_key.get((r.component, "pytorch"))
        if r.backend != "pytorch" and torch_rec is not None and r.median_ms and torch_rec.median_ms:
            r.extra["pytorch_median_ms"] = torch_rec.median_ms
            r.extra["ratio_to_pytorch"] = r.median_ms / torch_rec.median_ms
    return records


def _run_worker(bundle_dir: Path, component: str, engine: str, runs: int, warmup: int, ops: bool,
                module: str | None = None) -> ProfileRecord:
    cmd = [sys.executable, "-m", "edgediff.profile.host", f"--bundle={bundle_dir}", f"--component={component}",
           "--engine", engine, "--runs", str(runs), "--warmup", str(warmup)]  # `=`: a name may start with "-"
    if module:
        cmd += ["--module", module]
    if ops:
        cmd.append("--op-profile")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"profiling {component} ({engine}) did not finish in {WORKER_TIMEOUT_S} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"profiling {component} ({engine}) failed: {tail}")
    return ProfileRecord.from_dict(json.loads(lines[-1]))


def _measure(run, inputs, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(inputs)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _worker(args: argparse.Namespace) -> ProfileRecord:
    """Runs inside the subprocess: load one engine, time it, report peak RSS. The backend side opens the artifact
    through the runtime's sessions (what generate and the apps run); the PyTorch side rebuilds the component from
    the bundle's recipe."""
    bundle_dir = Path(args.bundle)
    manifest = Manifest.read(bundle_dir, verify_checksums=False)  # the parent checked them before starting us
    recipe = load_recipe(inside(manifest.root, "recipe.toml", "recipe.toml"))
    start = time.perf_counter()
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    if args.engine == "pytorch":
        import torch

        from edgediff.plan import resolve  # the conversion side (torch) only when PyTorch is timed

        if recipe.model.module and recipe.model.module != args.module:
            raise DeviceError(f"the bundle names custom network {recipe.model.module!r}; it runs only when the "
                              "user names it")
        plan = resolve(recipe)
        component = next(c for c in plan.components if c.name == args.component)
        inputs = component.example_inputs(1)
        run, version, backend_name = component.run_torch, str(torch.__version__), "pytorch"
        threads = torch.get_num_threads()
    else:
        backend = get_backend(manifest.backend)
        options = options_from_dict(backend.Options, recipe.backend.options, "backend.options")
        artifact = manifest.component(args.component)
        session_options = backend.session_options(options)
        run = open_session(artifact, manifest.backend, session_options).run
        rng = np.random.default_rng(1)
        inputs = {s.name: _random_input(rng, s.shape, s.dtype) for s in artifact.inputs}
        version, backend_name = backend.version(), manifest.backend
        threads = session_options.threads or 0
    init_ms = (time.perf_counter() - start) * 1000.0
    first_start = time.perf_counter()
    run(inputs)
    first_ms = (time.perf_counter() - first_start) * 1000.0
    times = _measure(run, inputs, args.runs, max(args.warmup - 1, 0))
    ops: list[OpTime] = []
    if args.op_profile and args.engine == "backend":
        ops = backend.op_profile(artifact, options, inputs)[:15]
    peak_mb = peak_rss_mb()
    # Timings on an oversubscribed machine are not comparable; keep the load beside the numbers.
    load_1min = os.getloadavg()[0]
    return ProfileRecord(
        component=args.component, backend=backend_name, precision=manifest.precision,
        device=host_name(), tool="edgediff-host", tool_version=version,
        settings={"threads": threads}, warmup=args.warmup, runs=args.runs, init_ms=init_ms,
        first_inference_ms=first_ms, peak_memory_mb=peak_mb, ops=ops, **summarize(times),
        extra={"load_average_1min": round(load_1min, 2), "cpu_count": os.cpu_count()},
    )


def _random_input(rng, shape, dtype) -> np.ndarray:
    if str(dtype).startswith("int"):
        return rng.integers(0, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgediff host profiling worker (internal)")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--component", required=True)
    parser.add_argument("--engine", choices=["backend", "pytorch"], required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--op-profile", action="store_true")
    parser.add_argument("--module", help="the custom network class the user named")
    record = _worker(parser.parse_args(argv))
    print(json.dumps(record.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
