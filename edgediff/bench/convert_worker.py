"""Child process: convert one row's UNet and print one `RESULT {json}` line (run by edgediff.bench.runner).

One conversion per process, so the parent can watch the memory of exactly this conversion's process tree and the
memory is returned to the machine when it ends. Timed: building the PyTorch UNet (`load_s`) and the conversion
itself (`convert_s`); the parent adds the whole process's wall time and peak memory.

    python -m edgediff.bench.convert_worker --row ROW.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edgediff.bench.rows import MODELS, Settings
from edgediff.contract import strict_json_value


def build_unet(model_key: str, settings: Settings):
    """The row's PyTorch UNet component (seeded random weights for full-size architectures)."""
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    model = MODELS[model_key]
    loaded = load_model(model.unet_folder(), random_weights=model.random_weights)
    size = settings.size or native_size(loaded.unet)
    return build_components(loaded, ["unet"], ComponentShapes(size, size, batched_cfg=settings.batch == 2))[0]


def native_size(unet) -> int:
    """sample_size latents x 8: every model in the suites uses an SD-style VAE with 3 downsamplings."""
    sample = unet.config.sample_size
    return int(sample[0] if isinstance(sample, (list, tuple)) else sample) * 8


def convert(converter: str, model_key: str, settings: Settings, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    component = build_unet(model_key, settings)
    load_s = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if converter == "litert-torch":
        artifact = _litert_torch_default(component, out)
    else:
        from edgediff.backends.base import get_backend

        backend = get_backend(converter.removeprefix("edgediff-"))
        backend.check_available()
        artifact = backend.lower(component, backend.Options(), "fp32", out)
    convert_s = time.perf_counter() - start
    entry = artifact.to_entry(out)
    return {"load_s": load_s, "convert_s": convert_s, "artifact": entry,
            "files": {str(f.relative_to(out)): _bytes(f) for f in artifact.files()},
            "inputs": [s.to_dict() for s in component.inputs], "outputs": [s.to_dict() for s in component.outputs]}


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _litert_torch_default(component, out: Path):
    """litert-torch as its README shows it: `litert_torch.convert(module, args).export(path)`, nothing else
    (no chunking, no lightweight mode). A UNet over the 2 GB flatbuffer limit is the converter's own result."""
    import litert_torch
    import torch

    from edgediff.contract import Artifact

    path = out / "unet.tflite"
    with torch.no_grad():
        litert_torch.convert(component.module, component.example_args(0)).export(str(path))
    return Artifact(component.name, path, component.inputs, component.outputs)


def save_weights_folder(model_key: str, out: Path) -> dict[str, Any]:
    """The row's UNet as a diffusers folder (config + safetensors): what Optimum loads, like a user's model."""
    from edgediff.model.load import load_model

    model = MODELS[model_key]
    loaded = load_model(model.unet_folder(), random_weights=model.random_weights)
    out.mkdir(parents=True, exist_ok=True)
    loaded.unet.save_pretrained(str(out), safe_serialization=True)
    return {"folder": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--row", required=True, help="the row spec JSON the runner wrote")
    parser.add_argument("--out", required=True)
    parser.add_argument("--save-weights", action="store_true", help="write the UNet as a diffusers folder instead")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.row).read_text())
    settings = Settings(**spec["settings"])
    if args.save_weights:
        result = save_weights_folder(spec["model"], Path(args.out))
    else:
        result = convert(spec["converter"], spec["model"], settings, Path(args.out))
    print("RESULT " + json.dumps(strict_json_value(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
