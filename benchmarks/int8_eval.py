"""End-to-end int8 quality gate on the default model: fp32 vs int8 bundles of each backend, same prompts and seeds.

    OMP_NUM_THREADS=1 python benchmarks/int8_eval.py ort_fp32=/tmp/int8/ort_fp32/onnxruntime \
        ort_int8=/tmp/int8/ort/onnxruntime ... --reference ort_fp32 --prompts 200 --json reports/int8/eval.json

Per bundle: `edgediff eval`'s figures (prompt accuracy and Frechet distance over the 200-prompt set, through the
torch-free runtime, one image at a time, steps and guidance from the bundle's manifest), plus the image PSNR of
every generated image against the image of the float bundle of the same backend at the same prompt and seed
(`--reference LABEL`, or per label `label:reference`), the bundle's size on disk and its UNet file size. Runtime
sessions use one thread (SessionOptions(threads=1)) because the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def _bundle_bytes(bundle: Path) -> tuple[int, int]:
    """(whole bundle, UNet artifact files) in bytes; the UNet files are the ones the manifest lists for it."""
    total = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and p.suffix in (".onnx", ".tflite", ".data"))
    unet = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and p.name.startswith("unet")
               and p.suffix in (".onnx", ".tflite", ".data"))
    return total, unet


def _psnr_uint8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB, peak 255) of two uint8 image stacks; identical images count as 99 dB."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return np.where(mse == 0, 99.0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", help="LABEL=BUNDLE_DIR (evaluated in this order)")
    parser.add_argument("--reference", nargs="*", default=[],
                        help="LABEL:REFERENCE_LABEL pairs: image PSNR of LABEL against REFERENCE_LABEL")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=None, help="keep each bundle's images as LABEL.npy here")
    parser.add_argument("--grid", type=Path, default=None, help="PNG grid: first 8 images of every bundle, one row each")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from edgediff import evaluate as ev
    from edgediff.commands.eval import model_defaults
    from edgediff.runtime import BundlePipeline, SessionOptions

    load = BundlePipeline.load.__func__

    def load_one_thread(cls, bundle_dir, *a, options=None, **k):  # eval's generator passes no options
        return load(cls, bundle_dir, *a, options=options or SessionOptions(threads=1), **k)

    BundlePipeline.load = classmethod(load_one_thread)

    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    images: dict[str, np.ndarray] = {}
    for item in args.bundles:
        label, path = item.split("=", 1)
        bundle = Path(path)
        cached = args.images / f"{label}.npy" if args.images else None
        steps, guidance = model_defaults(bundle)
        settings = ev.EvalSettings(steps=steps, guidance=guidance, prompts=args.prompts, seed=args.seed)
        if cached is not None and cached.is_file() and label in results:
            images[label] = np.load(cached)
            print(f"{label}: reused {cached}")
            continue
        result, generated = ev.evaluate(bundle, settings, keep_images=True)
        images[label] = generated
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, generated)
        total, unet = _bundle_bytes(bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        results[label] = {"bundle": str(bundle), "precision": manifest.get("precision"),
                          "prompt_accuracy": result.prompt_accuracy, "frechet_distance": round(result.frechet_distance, 3),
                          "attributes": result.attributes, "steps": steps, "guidance": guidance,
                          "bytes": total, "unet_bytes": unet, "eval_seconds": result.seconds,
                          "loadavg": [round(x, 2) for x in os.getloadavg()]}
        print(f"{label}: accuracy {result.prompt_accuracy:.4f}  FD {result.frechet_distance:.3f}  "
              f"bytes {total}  unet {unet}  ({result.seconds:.0f} s)", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    for pair in args.reference:
        label, ref = pair.split(":", 1)
        if label in images and ref in images:
            psnr = _psnr_uint8(images[label], images[ref])
            results[label]["image_psnr_vs"] = ref
            results[label]["image_psnr_db_median"] = round(float(np.median(psnr)), 2)
            results[label]["image_psnr_db_mean"] = round(float(np.mean(np.minimum(psnr, 99.0))), 2)
            results[label]["image_psnr_db_p10"] = round(float(np.percentile(psnr, 10)), 2)
            print(f"{label} vs {ref}: image PSNR median {np.median(psnr):.2f} dB, p10 {np.percentile(psnr, 10):.2f} dB")
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.grid is not None and images:
        from PIL import Image

        rows = [np.concatenate(list(images[label][:8]), axis=1) for label in images]
        grid = np.concatenate(rows, axis=0)
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.grid)
        print(f"wrote {args.grid} (rows: {', '.join(images)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
