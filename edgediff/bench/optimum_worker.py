"""Child process for the Optimum anchor: export a UNet folder the way `optimum-cli export onnx` does.

Runs in its own environment (optimum-onnx 0.1.0 needs transformers < 4.58, edgediff's convert extra has 5.x), so
it imports nothing from edgediff: standard library, torch, diffusers and optimum only. The export is Optimum's
own path for a diffusers UNet: its registered UNet ONNX config, `export_models` with the pipeline defaults (opset
from the config, constant folding, fp32, dynamic axes), without the output check (`--no-post-process` and no
validation, the 2:36 / 8.8 GB anchor setting of the issue). Prints one `RESULT {json}` line. The runner calls
this file by path with the anchor environment's python (edgediff.bench.anchors.optimum_python).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def export(unet_folder: Path, out: Path) -> dict:
    start = time.perf_counter()
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(unet_folder), torch_dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    from optimum.exporters.onnx.convert import export_models
    from optimum.exporters.tasks import TasksManager
    from optimum.exporters.utils import _get_diffusers_submodel_type

    unet.config.export_model_type = _get_diffusers_submodel_type(unet)  # as Optimum's pipeline export sets it

    start = time.perf_counter()
    constructor = TasksManager.get_exporter_config_constructor(
        model=unet, exporter="onnx", library_name="diffusers", task="semantic-segmentation")
    config = constructor(unet.config, int_dtype="int64", float_dtype="fp32")
    out.mkdir(parents=True, exist_ok=True)
    unet.save_config(out / "unet")
    with torch.no_grad():
        export_models(models_and_onnx_configs={"unet": (unet, config)}, opset=None, output_dir=out,
                      output_names=["unet/model.onnx"], device="cpu", dtype="fp32", do_constant_folding=True)
    convert_s = time.perf_counter() - start
    import optimum.version

    files = {str(f.relative_to(out)): f.stat().st_size for f in sorted((out / "unet").iterdir()) if f.is_file()}
    return {"load_s": load_s, "convert_s": convert_s, "model_file": "unet/model.onnx", "files": files,
            "versions": {"optimum": optimum.version.__version__, "torch": torch.__version__},
            "opset": config.DEFAULT_ONNX_OPSET}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--unet-folder", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    print("RESULT " + json.dumps(export(Path(args.unet_folder), Path(args.out))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
