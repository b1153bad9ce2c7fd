"""TAEF2 round trip on real photos: PyTorch encoder -> decoder as PyTorch, fp32 .tflite, int8 .tflite.

    python benchmarks/taef2_litert.py --out reports/taef2-litert

Photos (shared/images/*.jpg) are resized to 512 wide and center-cropped to 192 rows (one fixed shape for the
artifacts: latent [1, 32, 24, 64]). The int8 decoders are made by the litert backend: "int8_weights" (int8
weights, float compute, no calibration) and "int8_full" (int8 activations too), calibrated on latents of other
views of the same photos (top/bottom crops and mirror images, never the evaluated center crops). PSNR is of the
reconstruction (clamped to [0, 1]) against the input photo; parity is the artifact against the PyTorch decoder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgediff.backends.base import open_artifact

SHARED = Path(__file__).resolve().parents[2] / "shared"
WIDTH, HEIGHT = 512, 192


def calibration_views(path: Path) -> list[torch.Tensor]:
    """Views of a photo other than its center crop: mirrored, and top/bottom crops when it is tall enough."""
    from edgediff.nets.taef2 import image_tensor

    full = image_tensor(path, width=WIDTH)
    views = [torch.flip(image_tensor(path, WIDTH, HEIGHT), dims=[3])]
    if full.shape[2] >= HEIGHT + 16:
        views += [full[:, :, :HEIGHT], full[:, :, -HEIGHT:]]
    return views


def encode_photos(weights: Path, images_dir: Path):
    """The trained decoder, each photo's center crop, its latent, and the calibration latents of the other views."""
    from edgediff.nets.taef2 import image_tensor, load_taef2

    encoder = load_taef2("encoder", Path(weights) / "taef2_encoder.pth")
    decoder = load_taef2("decoder", Path(weights) / "taef2_decoder.pth")
    photos = sorted(Path(images_dir).glob("*.jpg"))
    images = {p.name: image_tensor(p, WIDTH, HEIGHT) for p in photos}
    with torch.no_grad():
        latents = {name: encoder(x).numpy() for name, x in images.items()}
        views = [encoder(v).numpy() for p in photos for v in calibration_views(p)]
    return decoder, images, latents, views


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(SHARED / "weights"))
    parser.add_argument("--images", default=str(SHARED / "images"))
    parser.add_argument("--out", default="reports/taef2-litert")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    from edgediff.backends.litert import LiteRTBackend, LiteRTOptions, QuantPlan
    from edgediff.model.components import Component, TensorSpec
    from edgediff.nets.taef2 import psnr
    from edgediff.verify import compare

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    decoder, images, latents, views = encode_photos(args.weights, args.images)
    calibration = [{"latent": v} for v in views]
    h, w = HEIGHT // 8, WIDTH // 8
    component = Component("vae_decoder", decoder, (TensorSpec("latent", (1, 32, h, w)),),
                          (TensorSpec("image", (1, 3, HEIGHT, WIDTH)),))
    backend, options = LiteRTBackend(), LiteRTOptions(threads=args.threads)

    rows = {"pytorch": {}}
    for name, z in latents.items():
        rows["pytorch"][name] = psnr(images[name].numpy(), component.run_torch({"latent": z})["image"])
    details = {}
    variants = [("fp32", "fp32", None), ("int8_weights", "int8", QuantPlan("int8_weights")),
                ("int8_full", "int8", QuantPlan("int8_full", calibration=calibration))]
    for label, precision, plan in variants:
        start = time.perf_counter()
        artifact = backend.lower(component, options, precision, out / label, plan=plan)
        seconds = time.perf_counter() - start
        session = open_artifact(backend, artifact, options)
        rows[label], parity = {}, []
        for name, z in latents.items():
            got = session({"latent": z})["image"]
            rows[label][name] = psnr(images[name].numpy(), got)
            parity.append(compare(component.run_torch({"latent": z})["image"], got).psnr_db)
        details[label] = {"bytes": artifact.path.stat().st_size, "convert_s": round(seconds, 1),
                          "parity_vs_pytorch_min_psnr_db": round(min(parity), 2),
                          "calibration_samples": len(calibration) if label == "int8_full" else 0}

    names = list(images)
    lines = ["| decoder | " + " | ".join(names) + " | mean PSNR dB | file bytes | parity vs PyTorch (min dB) |",
             "|" + "---|" * (len(names) + 4)]
    for label, values in rows.items():
        d = details.get(label, {})
        lines.append(f"| {label} | " + " | ".join(f"{values[n]:.2f}" for n in names)
                     + f" | {np.mean(list(values.values())):.2f} | {d.get('bytes', '')} | "
                     f"{d.get('parity_vs_pytorch_min_psnr_db', '')} |")
    table = "\n".join(lines)
    (out / "results.json").write_text(json.dumps({"psnr_db": rows, "details": details}, indent=1))
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
