"""TAEF2 decoder (real weights) int8 through the precision plan, ONNX Runtime and LiteRT: round-trip PSNR on real photos.

    OMP_NUM_THREADS=1 python benchmarks/int8_taef2.py --out reports/int8/taef2

Photos (shared/images/*.jpg) are resized to 512 wide and center-cropped to 192 rows (latent [1, 32, 24, 64]), encoded
by the PyTorch TAEF2 encoder, decoded by each decoder variant; PSNR is of the reconstruction (clamped to [0, 1])
against the photo. Calibration latents come from other views of the same photos (mirror images, top and bottom
crops; never the evaluated center crops), written to an .npz and given to the quantize step as `calibration_file`,
exactly as a recipe for a custom network does. Variants per backend: fp32, int8 from the plan (quantize step
defaults), int8 naive (the step's `naive = true`: every layer int8, ranges from one calibration sample; a decoder
has no timesteps, so "one timestep" becomes "one sample").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from edgediff.backends.base import open_artifact

SHARED = Path(__file__).resolve().parents[2] / "shared"
WIDTH, HEIGHT = 512, 192


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(SHARED / "weights"))
    parser.add_argument("--images", default=str(SHARED / "images"))
    parser.add_argument("--out", type=Path, default=Path("reports/int8/taef2"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/int8/taef2"))
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "litert"])
    parser.add_argument("--target-psnr", type=float, default=30.0, help="the quantize step's target_psnr_db")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from taef2_litert import encode_photos  # benchmarks/ is on sys.path when run as a script
    from edgediff.backends import onnxruntime as ort_backend
    from edgediff.backends import litert as lt_backend
    from edgediff.model.components import Component, TensorSpec
    from edgediff.nets.taef2 import psnr
    from edgediff.slim import calibration as calib
    from edgediff.slim.quantize import QuantizeSettings, _cache_dir, attach, plan_component, weights_digest
    from edgediff.verify import compare

    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    decoder, images, latents, views = encode_photos(args.weights, args.images)
    npz = args.work / "calibration_latents.npz"
    np.savez(npz, latent=np.stack(views))
    h, w = HEIGHT // 8, WIDTH // 8
    component = Component("vae_decoder", decoder, (TensorSpec("latent", (1, 32, h, w)),),
                          (TensorSpec("image", (1, 3, HEIGHT, WIDTH)),))

    # The quantize step's own path for a custom network: samples from the file, plan (cached), attach.
    settings = QuantizeSettings(target_psnr_db=args.target_psnr, calibration_file=str(npz))
    samples = calib.load_input_file(npz, component)
    start = time.perf_counter()
    plan, backend_samples = plan_component(component, samples, [], settings, _cache_dir(settings),
                                           weights_digest(None, [component]), {"source": f"file {npz}"})
    plan_seconds = time.perf_counter() - start
    naive, naive_samples = plan_component(component, samples, [], dataclasses.replace(settings, naive=True),
                                          _cache_dir(settings), weights_digest(None, [component]),
                                          {"source": f"file {npz}"})  # the same (cached) search, naive realisation
    plan.to_json(args.out / "precision_plan_taef2_decoder.json")
    print("plan:", json.dumps(plan.summary()))

    reference = {name: component.run_torch({"latent": z})["image"] for name, z in latents.items()}
    rows: dict[str, dict[str, float]] = {"pytorch": {n: psnr(images[n].numpy(), reference[n]) for n in latents}}
    details: dict[str, dict] = {}
    backends = {"onnxruntime": (ort_backend.OnnxRuntimeBackend(), ort_backend.OnnxRuntimeOptions(threads=1)),
                "litert": (lt_backend.LiteRTBackend(), lt_backend.LiteRTOptions(threads=1))}
    for backend_name in args.backends:
        backend, options = backends[backend_name]
        for variant in ("fp32", "int8_plan", "int8_naive"):
            component.int8 = None
            precision = "fp32" if variant == "fp32" else "int8"
            if variant == "int8_plan":
                attach(component, plan, backend_samples)
            elif variant == "int8_naive":
                attach(component, naive, naive_samples)
            label = f"{backend_name} {variant}"
            work = args.work / backend_name / variant
            work.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            artifact = backend.lower(component, options, precision, work)
            seconds = time.perf_counter() - start
            session = open_artifact(backend, artifact, options)
            rows[label], parity = {}, []
            for name, z in latents.items():
                got = session({"latent": z})["image"]
                rows[label][name] = psnr(images[name].numpy(), got)
                parity.append(compare(reference[name], got).psnr_db)
            files = [artifact.path] + [c.path for c in artifact.chunks]
            size = sum(p.stat().st_size for p in {Path(f) for f in files} if p.is_file())
            size += sum(p.stat().st_size for p in Path(artifact.path).parent.glob("*.data"))
            details[label] = {"bytes": size, "lower_s": round(seconds, 1),
                              "parity_vs_pytorch_min_psnr_db": round(min(parity), 2),
                              "mean_psnr_db": round(float(np.mean(list(rows[label].values()))), 3)}
            print(label, details[label], flush=True)

    names = list(images)
    float_mean = float(np.mean(list(rows["pytorch"].values())))
    lines = ["| decoder | " + " | ".join(names) + " | mean PSNR dB | vs float dB | file bytes | parity vs PyTorch (min dB) |",
             "|" + "---|" * (len(names) + 5)]
    for label, values in rows.items():
        d = details.get(label, {})
        mean = float(np.mean(list(values.values())))
        lines.append(f"| {label} | " + " | ".join(f"{values[n]:.2f}" for n in names)
                     + f" | {mean:.2f} | {mean - float_mean:+.2f} | {d.get('bytes', '')} | "
                     f"{d.get('parity_vs_pytorch_min_psnr_db', '')} |")
    table = "\n".join(lines)
    result = {"psnr_db": rows, "details": details, "plan": plan.summary(), "plan_seconds": round(plan_seconds, 1),
              "calibration_samples": len(samples), "plan_ranges_samples": len(backend_samples),
              "naive_ranges_samples": len(naive_samples), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
