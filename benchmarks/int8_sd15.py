"""int8 vs fp32 UNet of the SD 1.5 architecture (random weights): size ratio and same-run latency, per backend.

    flock /tmp/edgediff-heavy.lock env OMP_NUM_THREADS=1 python benchmarks/int8_sd15.py \
        /work/shared/architectures/stable-diffusion-v1-5 --backend onnxruntime --size 512 --out /tmp/int8/sd15 \
        --json reports/int8/sd15_onnxruntime.json
    OMP_NUM_THREADS=1 python benchmarks/int8_sd15.py /work/shared/architectures/stable-diffusion-v1-5 \
        --part down_blocks.3 --backend litert --json reports/int8/sd15_down_blocks.3_litert.json

`--part` picks one 1280-wide block instead of the whole UNet (a few hundred MB: no heavy lock needed).

Random weights have no calibration trajectory and no quality to keep, so no plan is searched: the int8 artifact is
the backend's plan-less int8 (ONNX Runtime: every layer static QDQ, calibrated on seeded example inputs; LiteRT:
`--litert-mode` int8_weights or int8_full through ai-edge-quantizer). The int8 file is made from the fp32 file of
the same run with the functions lower() uses (ONNX Runtime: `quantize_int8` on the exported fp32 graph, which
keeps ORT's fused MultiHeadAttention: it has no int8 kernel and stays float, where lower() at int8 exports plain
attention ops; LiteRT: `_quantize` on each fp32 chunk). Both are then opened with one thread and timed interleaved (fp32, int8,
fp32, ...) on the same seeded inputs; medians and os.getloadavg() are recorded, and the int8 output is compared
with fp32 (PSNR) as a sanity check of the realisation (random weights: not a quality figure).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

from edgediff.backends.base import open_artifact


def _component(model_dir: str, size: int, part: str = "unet"):
    if part != "unet":
        return _block_component(model_dir, size, part)
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    model = load_model(model_dir, random_weights=True)
    return build_components(model, ["unet"], ComponentShapes(size, size, batched_cfg=True))[0]


def _block_component(model_dir: str, size: int, part: str):
    """One full-width block of the UNet (seeded random weights), built from the UNet config alone, at the shapes it
    has inside the batch-2 UNet at `size`: `down_blocks.3` (DownBlock2D: the four [1280, 3, 3, 1280] convs that
    stopped ai-edge-quantizer) or `mid_block` (UNetMidBlock2DCrossAttn: + 1280-wide attention). It needs a few
    hundred MB, so it runs where the whole UNet (3.4 GB of weights, > 5 GB to convert) cannot."""
    import torch
    from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UNetMidBlock2DCrossAttn

    from edgediff.model.components import Component, TensorSpec

    config = json.loads((Path(model_dir) / "unet" / "config.json").read_text())
    width, eps, groups = config["block_out_channels"][-1], config["norm_eps"], config["norm_num_groups"]
    temb = config["block_out_channels"][0] * 4
    context = config["cross_attention_dim"]
    torch.manual_seed(0)
    if part == "down_blocks.3":
        block = DownBlock2D(in_channels=width, out_channels=width, temb_channels=temb, num_layers=2, resnet_eps=eps,
                            resnet_act_fn="silu", resnet_groups=groups, add_downsample=False)
    elif part == "mid_block":
        heads = config["attention_head_dim"]
        block = UNetMidBlock2DCrossAttn(in_channels=width, temb_channels=temb, resnet_eps=eps, resnet_groups=groups,
                                        cross_attention_dim=context, num_attention_heads=heads)
    else:
        raise SystemExit(f"unknown --part {part}")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, hidden, temb, states):
            out = self.block(hidden, temb, encoder_hidden_states=states) if part == "mid_block" \
                else self.block(hidden, temb)[0]
            return out

    side = size // 8 // 8  # latent size / 8: the resolution of the 1280-wide blocks
    inputs = (TensorSpec("hidden", (2, width, side, side)), TensorSpec("temb", (2, temb)),
              TensorSpec("states", (2, 77, context)))
    return Component("unet", Block().eval().requires_grad_(False), inputs, (TensorSpec("noise_pred", (2, width, side, side)),))


def _files_bytes(artifact) -> int:
    files = {Path(c.path) for c in (artifact.chunks or [artifact])}
    files |= {p for f in list(files) for p in f.parent.glob(f.name + ".data")}
    files |= {p for f in list(files) for p in f.parent.glob("*.onnx.data")}
    return sum(p.stat().st_size for p in files if p.is_file())


def _lower_fp32(model_dir: str, size: int, part: str, out: Path, options) -> tuple:
    """Build the component and export its fp32 ONNX file; returns (component without its module, artifact, s).

    Runs in a spawned process for the ONNX Runtime path: the PyTorch UNet and the exporter's in-memory graph
    (together > 7 GB for SD 1.5) then leave with that process instead of staying resident beside calibration."""
    from dataclasses import replace

    import torch

    from edgediff.backends.onnxruntime import OnnxRuntimeBackend

    torch.set_num_threads(options.threads)
    component = _component(model_dir, size, part)
    start = time.perf_counter()
    artifact = OnnxRuntimeBackend().lower(component, options, "fp32", out / "fp32")
    return replace(component, module=None), artifact, round(time.perf_counter() - start, 1)


def _onnxruntime(model_dir: str, size: int, part: str, out: Path, options) -> tuple:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import onnx

    from edgediff.backends.onnxruntime import graph as onnx_graph
    from edgediff.backends.onnxruntime import EXTERNAL_DATA_THRESHOLD, OnnxRuntimeBackend
    from edgediff.backends.onnxruntime.int8 import quantize_int8

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        component, fp32, fp32_seconds = pool.submit(_lower_fp32, model_dir, size, part, out, options).result()
    stamps = {"fp32_convert_s": fp32_seconds}
    start = time.perf_counter()
    model = onnx.load(str(fp32.path), load_external_data=False)  # the weights stay on disk until quantize_static
    quantized, meta = quantize_int8(model, component, out / "int8", source_dir=fp32.path.parent)
    del model
    gc.collect()
    path = out / "int8" / fp32.path.name
    onnx_graph.save(quantized, path, EXTERNAL_DATA_THRESHOLD)
    del quantized
    gc.collect()
    stamps["int8_quantize_s"] = round(time.perf_counter() - start, 1)
    from dataclasses import replace

    int8 = replace(fp32, path=path, meta=fp32.meta | meta)
    return component, OnnxRuntimeBackend(), fp32, int8, stamps


def _litert(component, out: Path, options, mode: str) -> tuple:
    from dataclasses import replace

    from edgediff.backends.litert import LiteRTBackend, QuantPlan, _file_specs, _quantize

    backend = LiteRTBackend()
    stamps = {}
    start = time.perf_counter()
    fp32 = backend.lower(component, options, "fp32", out / "fp32")
    stamps["fp32_convert_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    calibration = [component.example_inputs(1000 + i) for i in range(options.calibration_samples)] \
        if mode == "int8_full" else []
    plan = QuantPlan(mode, calibration=calibration)
    (out / "int8").mkdir(parents=True, exist_ok=True)
    pieces = fp32.chunks or [fp32]
    if len(pieces) > 1 and mode == "int8_full":
        raise SystemExit("int8_full on a chunked UNet needs per-chunk calibration inputs; use --litert-mode int8_weights")
    chunks = []
    for piece in pieces:
        path = out / "int8" / piece.path.name
        _quantize(piece.path, path, "int8", plan, [], calibration or None)
        inputs, outputs = _file_specs(path, [s.name for s in piece.inputs], [s.name for s in piece.outputs])
        chunks.append(replace(piece, path=path, inputs=inputs, outputs=outputs))
    stamps["int8_quantize_s"] = round(time.perf_counter() - start, 1)
    int8 = chunks[0] if len(chunks) == 1 else replace(fp32, path=chunks[0].path, chunks=chunks)
    return backend, fp32, int8, stamps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--backend", choices=("onnxruntime", "litert"), required=True)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--part", default="unet", choices=("unet", "down_blocks.3", "mid_block"),
                        help="the whole UNet (needs the heavy lock) or one 1280-wide block of it")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--litert-mode", default="int8_weights", choices=("int8_weights", "int8_full"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/int8/sd15"))
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from edgediff.verify import compare

    out = args.out / args.part / args.backend
    for sub in ("fp32", "int8"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if args.backend == "onnxruntime":
        from edgediff.backends.onnxruntime import OnnxRuntimeOptions

        options = OnnxRuntimeOptions(threads=args.threads)
        component, backend, fp32, int8, stamps = _onnxruntime(args.model, args.size, args.part, out, options)
    else:
        from edgediff.backends.litert import LiteRTOptions

        options = LiteRTOptions(threads=args.threads)
        component = _component(args.model, args.size, args.part)
        backend, fp32, int8, stamps = _litert(component, out, options, args.litert_mode)
    inputs = component.example_inputs(1)
    del component
    gc.collect()
    sessions = {"fp32": open_artifact(backend, fp32, options), "int8": open_artifact(backend, int8, options)}
    outputs = {label: s(inputs)["noise_pred"] for label, s in sessions.items()}
    load_before = os.getloadavg()
    for _ in range(args.warmup):
        for s in sessions.values():
            s(inputs)
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for _ in range(args.runs):
        for label, s in sessions.items():
            start = time.perf_counter()
            s(inputs)
            times[label].append(time.perf_counter() - start)
    sizes = {"fp32": _files_bytes(fp32), "int8": _files_bytes(int8)}
    medians = {label: statistics.median(t) for label, t in times.items()}
    result = {
        "model": args.model, "part": args.part, "backend": args.backend, "size": args.size, "batch": 2, "threads": args.threads,
        "int8": int8.meta.get("int8", {"litert_mode": args.litert_mode}) if args.backend == "onnxruntime"
        else {"litert_mode": args.litert_mode},
        "bytes": sizes, "size_ratio": round(sizes["int8"] / sizes["fp32"], 4),
        "median_s": {k: round(v, 3) for k, v in medians.items()}, "times_s": times,
        "latency_ratio_int8_vs_fp32": round(medians["int8"] / medians["fp32"], 3),
        "int8_vs_fp32_output_psnr_db": round(compare(outputs["fp32"], outputs["int8"]).psnr_db, 2),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        **stamps,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "times_s"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
