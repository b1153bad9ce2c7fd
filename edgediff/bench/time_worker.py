"""Child process: time one row's artifact against PyTorch eager in the same process, interleaved.

Interleaving (eager, artifact, artifact, eager, ...) makes machine-load drift hit both engines alike, so the ratio
is meaningful even when the absolute seconds are not. Also measured here, in the same process and minutes: the
float32 GEMM peak (the ceiling), the UNet's FLOPs per step (PyTorch's FlopCounterMode over one eager call), session
load cold (the first session in this fresh process, including the runtime's graph optimisation; the OS page
cache is not dropped) and warm (a second session after the first is closed), and parity (PSNR vs eager).

    python -m edgediff.bench.time_worker --row ROW.json --convert CONVERT.json --out DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgediff.bench.convert_worker import build_unet
from edgediff.bench.machine import gemm_peak_gflops
from edgediff.bench.rows import CONVERTERS, Settings
from edgediff.contract import strict_json_value

MIN_SAMPLE_S = 0.2  # shortest timed sample: a 3 ms call timed alone is mostly timer and scheduler noise


def _open(converter: str, out: Path, convert: dict[str, Any], component, threads: int) -> Callable:
    """The artifact's `run(feeds) -> outputs`, opened by edgediff's runtime sessions (what apps and verify use)."""
    from edgediff.contract import Artifact
    from edgediff.runtime.sessions import SessionOptions, open_session

    options = SessionOptions(threads=threads)
    backend = CONVERTERS[converter][0]
    if converter.startswith("edgediff-"):
        artifact = Artifact.from_entry(out, "unet", convert["artifact"], check=True)
    elif converter == "optimum-onnxruntime":
        return _optimum_session(out / convert["model_file"], threads)
    else:  # litert-torch: one .tflite, arguments in the module's order
        artifact = Artifact("unet", out / "unet.tflite", component.inputs, component.outputs)
    session = open_session(artifact, backend, options)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(feeds)["noise_pred"]

    return run


def _optimum_session(path: Path, threads: int) -> Callable:
    """Optimum's UNet as its users run it: a plain InferenceSession (same threads and ORT_ENABLE_ALL as edgediff's
    sessions). Its timestep is a 0-d tensor, which edgediff's session (built for fixed 1-d specs) would reshape."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    types = {i.name: np.float32 if i.type == "tensor(float)" else np.int64 for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        given = dict(feeds, timestep=np.asarray(feeds["timestep"][0]))  # one step: one timestep for the batch
        return session.run(None, {k: np.asarray(given[k], dtype=types[k]) for k in types})[0]

    return run


def _repeat(fn: Callable[[], Any], times: int) -> Callable[[], None]:
    def repeated() -> None:
        for _ in range(times):
            fn()

    return repeated


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _stats(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    return {"median_s": float(np.median(wall)), "p90_s": float(np.percentile(wall, 90)),
            "min_s": float(np.min(wall)), "cpu_s_per_step": float(np.median(cpu)), "wall_s": wall, "cpu_s": cpu}


def time_row(spec: dict[str, Any], convert: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    from edgediff.profile.host import peak_rss_mb
    from edgediff.verify import compare

    settings = Settings(**spec["settings"])
    threads = settings.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    component = build_unet(spec["model"], settings)
    feeds = component.example_inputs(1)
    feeds["timestep"] = np.full_like(feeds["timestep"], feeds["timestep"][0])  # one step: one timestep per batch
    args = [torch.from_numpy(feeds[s.name]) for s in component.inputs]

    def eager() -> np.ndarray:
        with torch.inference_mode():
            return component.module(*args).numpy()

    gemm = gemm_peak_gflops(threads)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        component.module(*args)
    flops = int(counter.get_total_flops())
    start = time.perf_counter()
    run = _open(spec["converter"], out, convert, component, threads)
    cold_s = time.perf_counter() - start
    del run
    gc.collect()
    start = time.perf_counter()
    run = _open(spec["converter"], out, convert, component, threads)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    candidate = run(feeds)
    first_s = time.perf_counter() - start
    reference = eager()
    parity = compare(reference, candidate).to_dict()
    engines: dict[str, Callable[[], Any]] = {"eager": eager, "artifact": lambda: run(feeds)}
    calls = {}
    for name, fn in engines.items():  # warm-up; a sample of a tiny UNet repeats the call to last >= 0.2 s
        once = min([_timed(fn)[0] for _ in range(max(settings.warmup, 1))])
        calls[name] = max(1, min(1000, math.ceil(MIN_SAMPLE_S / max(once, 1e-5))))
        engines[name] = _repeat(fn, calls[name])
    wall: dict[str, list[float]] = {k: [] for k in engines}
    cpu: dict[str, list[float]] = {k: [] for k in engines}
    loads = [os.getloadavg()[0]]
    for i in range(settings.runs):
        for name in (list(engines) if i % 2 == 0 else list(reversed(engines))):
            w, c = _timed(engines[name])
            wall[name].append(w / calls[name])
            cpu[name].append(c / calls[name])
        loads.append(os.getloadavg()[0])
        print(f"run {i + 1}/{settings.runs}: eager {wall['eager'][-1]:.3f} s, artifact {wall['artifact'][-1]:.3f} s",
              file=sys.stderr, flush=True)
    artifact, torch_stats = _stats(wall["artifact"], cpu["artifact"]), _stats(wall["eager"], cpu["eager"])
    artifact["ratio_to_eager"] = artifact["median_s"] / torch_stats["median_s"]
    artifact["calls_per_sample"], torch_stats["calls_per_sample"] = calls["artifact"], calls["eager"]
    for stats in (artifact, torch_stats):
        stats["gflops"] = flops / stats["median_s"] / 1e9
        stats["fraction_of_gemm_peak"] = stats["gflops"] / gemm
    return {"threads": threads, "gemm_peak_gflops": gemm, "flops_per_step": flops,
            "session_load_cold_s": cold_s, "session_load_warm_s": warm_s, "first_run_s": first_s,
            "parity": parity, "artifact": artifact, "eager": torch_stats,
            "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
            "load_average_1min": [round(v, 2) for v in loads], "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--row", required=True)
    parser.add_argument("--convert", required=True)
    parser.add_argument("--out", required=True, help="the folder the conversion wrote")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.row).read_text())
    convert = json.loads(Path(args.convert).read_text())
    print("RESULT " + json.dumps(strict_json_value(time_row(spec, convert, Path(args.out)))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
