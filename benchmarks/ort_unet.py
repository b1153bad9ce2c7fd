"""SD 1.5 UNet on ONNX Runtime (CPU) against PyTorch eager: which export is fast, and why (benchmarks/ORT_UNET.md).

Full size (run under the shared lock; about 12 GB RAM, tens of minutes on a busy 2-core machine):

    flock /tmp/edgediff-heavy.lock python benchmarks/ort_unet.py --size 512 --batch 1 --runs 5 --work /tmp/ort_unet

Exports (cached in --work, each in its own process so memory is returned), then times every variant in ONE
process, interleaved step by step (eager, torchscript, dynamo, edgediff, eager, ...) so machine-load drift hits
them all alike, and prints medians, the ratio to eager, CPU-seconds per step and the load average. Variants:

- torchscript: torch.onnx.export(dynamo=False, opset 18, constant folding) — what Hugging Face Optimum runs;
- dynamo: torch.onnx.export(dynamo=True, opset 18, optimize=True) — the backend before this work;
- edgediff: OnnxRuntimeBackend.lower (dynamo export + edgediff.backends.onnxruntime.graph.optimize).

--profile adds ORT's per-op-type profile (one profiled run per ORT variant) and node counts of each graph after
ORT's own optimisations. --tiny-export times only the exporter stages on the tests' tiny UNet (no lock needed):

    python benchmarks/ort_unet.py --tiny-export
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SD15 = Path("/work/shared/architectures/stable-diffusion-v1-5")
if not SD15.exists():
    SD15 = ROOT.parent / "shared" / "architectures" / "stable-diffusion-v1-5"
VARIANTS = ("torchscript", "dynamo", "edgediff")


@dataclass
class Timing:
    name: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    first_s: float = 0.0
    init_s: float = 0.0

    @property
    def median(self) -> float:
        return float(np.median(self.wall_s))


WIDTH = 0  # --width: 0 = SD 1.5 as it is; N = same architecture with block_out_channels [N, 2N, 4N, 4N]


def _unet_component(size: int, batch: int):
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import LoadedModel, load_model

    if WIDTH:  # a narrower SD 1.5 (same blocks, heads and attention lengths) that fits without the heavy lock
        import torch
        from diffusers import UNet2DConditionModel

        config = {k: v for k, v in json.loads((SD15 / "unet" / "config.json").read_text()).items()
                  if not k.startswith("_")}
        config["block_out_channels"] = [WIDTH, 2 * WIDTH, 4 * WIDTH, 4 * WIDTH]
        torch.manual_seed(0)
        model = LoadedModel(source=f"sd15-width{WIDTH}", kind="unet", random_weights=True,
                            unet=UNet2DConditionModel.from_config(config).eval())
    else:
        model = load_model(SD15, random_weights=True)
    return build_components(model, ["unet"], ComponentShapes(size, size, batched_cfg=batch == 2))[0]


def export_variant(variant: str, size: int, batch: int, out: Path) -> None:
    """One export (run in a child process). Writes out/<variant>/unet.onnx and export.json with the seconds."""
    import torch

    component = _unet_component(size, batch)
    folder = out / variant
    folder.mkdir(parents=True, exist_ok=True)
    args = component.example_args(0)
    names = dict(input_names=[s.name for s in component.inputs], output_names=[s.name for s in component.outputs])
    start = time.perf_counter()
    meta = {}
    with torch.no_grad():
        if variant == "torchscript":
            torch.onnx.export(component.module, args, str(folder / "unet.onnx"), dynamo=False, opset_version=18,
                              do_constant_folding=True, **names)
        elif variant == "dynamo":
            program = torch.onnx.export(component.module, args, dynamo=True, opset_version=18, optimize=True,
                                        **names)
            program.save(str(folder / "unet.onnx"), external_data=True)
        else:
            from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions

            artifact = OnnxRuntimeBackend().lower(component, OnnxRuntimeOptions(), "fp32", folder)
            meta = artifact.meta
    seconds = time.perf_counter() - start
    (folder / "export.json").write_text(json.dumps({"seconds": seconds, "meta": meta}, indent=1))
    print(f"exported {variant} in {seconds:.0f} s", flush=True)


def _session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _psnr(ref: np.ndarray, out: np.ndarray) -> float:
    mse = float(np.mean((ref.astype(np.float64) - out) ** 2))
    peak = float(np.max(np.abs(ref)))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def bench(size: int, batch: int, runs: int, out: Path, threads: int, variants: list[str]) -> dict:
    """Eager and every ORT variant in one process, interleaved step by step."""
    import torch

    torch.set_num_threads(threads)
    component = _unet_component(size, batch)
    feed = component.example_inputs(1)
    args = [torch.from_numpy(feed[s.name]) for s in component.inputs]
    timings = {"eager": Timing("eager")}
    runners = {}

    def eager():
        with torch.inference_mode():
            return component.module(*args).numpy()

    runners["eager"] = eager
    for variant in variants:
        start = time.perf_counter()
        session = _session(out / variant / "unet.onnx", threads)
        timings[variant] = Timing(variant, init_s=time.perf_counter() - start)
        runners[variant] = (lambda s: (lambda: s.run(None, feed)[0]))(session)
    outputs = {}
    for name, run in runners.items():  # warm-up (first inference) and outputs for parity
        start = time.perf_counter()
        outputs[name] = run()
        timings[name].first_s = time.perf_counter() - start
    loads = [os.getloadavg()[0]]
    for i in range(runs):
        order = list(runners) if i % 2 == 0 else list(reversed(runners))
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            runners[name]()
            timings[name].wall_s.append(time.perf_counter() - wall)
            timings[name].cpu_s.append(time.process_time() - cpu)
        loads.append(os.getloadavg()[0])
        print(f"round {i + 1}/{runs}: " + ", ".join(f"{n} {t.wall_s[-1]:.2f}s" for n, t in timings.items()),
              flush=True)
    eager_median = timings["eager"].median
    result = {"size": size, "batch": batch, "width": WIDTH, "runs": runs, "threads": threads,
              "load_average_1min": loads,
              "variants": {}}
    for name, t in timings.items():
        export = out / name / "export.json"
        result["variants"][name] = {
            **asdict(t), "median_s": t.median, "ratio_to_eager": t.median / eager_median,
            "median_cpu_s": float(np.median(t.cpu_s)),
            "psnr_vs_eager_db": _psnr(outputs["eager"], outputs[name]) if name != "eager" else None,
            "export_s": json.loads(export.read_text())["seconds"] if export.exists() else None,
        }
    return result


def profile(out: Path, size: int, batch: int, threads: int, variants: list[str]) -> dict:
    """ORT's per-op-type time (one profiled run after one warm-up) and node counts after ORT's optimiser."""
    import tempfile

    import onnx

    from edgediff.backends.onnxruntime import summarize_ort_trace

    component = _unet_component(size, batch)
    feed = component.example_inputs(1)
    del component
    gc.collect()
    found = {}
    for variant in variants:
        with tempfile.TemporaryDirectory() as tmp:
            session = _session(out / variant / "unet.onnx", threads, profile_prefix=os.path.join(tmp, "p"))
            session.run(None, feed)
            session.run(None, feed)
            trace = json.loads(Path(session.end_profiling()).read_text())
            del session
            ops = summarize_ort_trace(trace, 2)  # the warm-up run is in the trace too: ms are per run
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "opt.data")
            so.log_severity_level = 3
            ort.InferenceSession(str(out / variant / "unet.onnx"), so, providers=["CPUExecutionProvider"])
            after = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath, load_external_data=False)
                            .graph.node)
        before = Counter(n.op_type for n in onnx.load(str(out / variant / "unet.onnx"), load_external_data=False)
                         .graph.node)
        found[variant] = {"ops": [(o.name, round(o.ms), round(o.percent, 1), o.count) for o in ops],
                          "nodes_exported": dict(before.most_common()), "nodes_after_ort": dict(after.most_common())}
        print(f"profiled {variant}", flush=True)
    return found


def tiny_export() -> dict:
    """Exporter stages on the tests' tiny UNet: where the time goes, and the old path against ours."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.onnx._internal.exporter import _capture_strategies, _core, _onnx_program

    from edgediff.backends.onnxruntime import graph as onnx_graph
    from tests.tiny import tiny_unet_config

    stages: dict[str, float] = {}

    def timed(owner, attr, label):
        original = getattr(owner, attr)

        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, attr, wrapper)

    timed(_core, "_prepare_exported_program_for_export", "decompositions")
    timed(_core, "_exported_program_to_onnx_program", "translate to ONNX")
    timed(_onnx_program.ONNXProgram, "optimize", "onnxscript optimizer")
    for cls in _capture_strategies.CAPTURE_STRATEGIES:
        timed(cls, "__call__", "torch.export")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(tiny_unet_config()).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, context):
            return self.unet(sample, timestep, context, return_dict=False)[0]

    args = (torch.randn(2, 4, 8, 8), torch.tensor([10.0, 500.0]), torch.randn(2, 77, 32))
    results = {}
    for label, optimize in (("optimize=True (before)", True), ("optimize=False + onnx_graph.optimize", False)):
        stages.clear()
        start = time.perf_counter()
        with torch.no_grad():
            program = torch.onnx.export(Wrap(unet).eval(), args, dynamo=True, opset_version=18, optimize=optimize)
        if not optimize:
            t = time.perf_counter()
            _, report = onnx_graph.optimize(program.model)
            stages["edgediff onnx_graph.optimize"] = time.perf_counter() - t
        total = time.perf_counter() - start
        stages["total"] = total
        stages["other (registry, version conversion)"] = total - sum(v for k, v in stages.items() if k != "total")
        results[label] = {k: round(v, 1) for k, v in stages.items()}
        print(label, results[label], flush=True)
    results["load_average_1min"] = os.getloadavg()[0]
    return results


def _markdown(result: dict) -> str:
    lines = [f"UNet{' width ' + str(result['width']) if result.get('width') else ''} {result['size']}x{result['size']}, batch {result['batch']}, {result['runs']} interleaved runs, "
             f"{result['threads']} threads, load average {min(result['load_average_1min']):.1f}–"
             f"{max(result['load_average_1min']):.1f}", "",
             "| variant | median s/step | × eager | CPU s/step | first run s | session init s | export s | PSNR vs eager dB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        psnr = "" if v["psnr_vs_eager_db"] is None else f"{v['psnr_vs_eager_db']:.1f}"
        export = "" if v["export_s"] is None else f"{v['export_s']:.0f}"
        lines.append(f"| {name} | {v['median_s']:.2f} | {v['ratio_to_eager']:.2f} | {v['median_cpu_s']:.2f} | "
                     f"{v['first_s']:.1f} | {v['init_s']:.1f} | {export} | {psnr} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image size (latents are size/8)")
    parser.add_argument("--batch", type=int, default=1, choices=(1, 2), help="2 = batched classifier-free guidance")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (physical cores)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ort_unet"))
    parser.add_argument("--width", type=int, default=0,
                        help="0 = SD 1.5; N = SD 1.5 blocks with channels [N, 2N, 4N, 4N] (e.g. 160: a quarter "
                             "of the weights, no lock needed)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--profile", action="store_true", help="also ORT's op profile and node counts")
    parser.add_argument("--tiny-export", action="store_true", help="only time the exporter on the tiny UNet")
    parser.add_argument("--export-one", help=argparse.SUPPRESS)  # internal: child process for one export
    args = parser.parse_args()

    if args.tiny_export:
        print(json.dumps(tiny_export(), indent=1))
        return 0
    global WIDTH
    WIDTH = args.width
    out = args.work / (f"b{args.batch}_{args.size}" + (f"_w{args.width}" if args.width else ""))
    if args.export_one:
        export_variant(args.export_one, args.size, args.batch, out)
        return 0
    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        if not (out / variant / "export.json").exists():
            subprocess.run([sys.executable, __file__, "--export-one", variant, "--size", str(args.size),
                            "--batch", str(args.batch), "--work", str(args.work), "--width", str(args.width)],
                           check=True)
    result = bench(args.size, args.batch, args.runs, out, args.threads, variants)
    gc.collect()
    if args.profile:
        result["profile"] = profile(out, args.size, args.batch, args.threads, variants)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(_markdown(result))
    print(f"wrote {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
