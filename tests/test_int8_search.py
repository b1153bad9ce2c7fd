"""The int8 plan's block search (edgediff.slim.plan_search) against the layer-by-layer one, and the caches that let
a second int8 run skip calibration, on tiny real networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgediff.model.components import Component, TensorSpec
from edgediff.slim.plan_search import block_search, default_block_size, layer_search, partition
from edgediff.slim.quantize import QuantizeSettings, search_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Stage-cache entries (ONNX Runtime's ranges) go to this test's folder, never a shared one."""
    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / "cache"))


class Stage(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(2, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.norm(self.conv1(x))))


class DeepNet(nn.Module):
    """conv_in -> six residual stages -> conv_out: 26 units in a module tree, like a small UNet's blocks."""

    def __init__(self, hot: str = ""):
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.stages = nn.ModuleList(Stage(8) for _ in range(6))
        self.conv_out = nn.Conv2d(8, 3, 3, padding=1)
        if hot:  # one output channel 400x larger: its 8-bit activation range drowns the others
            with torch.no_grad():
                self.get_submodule(hot).weight[0] *= 400.0

    def forward(self, x):
        h = self.conv_in(x)
        for stage in self.stages:
            h = stage(h)
        return self.conv_out(h)


def deep_component(hot: str = "") -> Component:
    return Component("deep", DeepNet(hot).eval().requires_grad_(False), inputs=(TensorSpec("x", (1, 3, 8, 8)),),
                     outputs=(TensorSpec("y", (1, 3, 8, 8)),))


def samples(component: Component, count: int, offset: int = 0) -> list[dict[str, np.ndarray]]:
    return [component.example_inputs(offset + i) for i in range(count)]


def plans(component: Component, target: float, **options):
    ranges, held = samples(component, 8), samples(component, 4, offset=100)
    return {kind: search_plan(component, ranges, held, ranges[:1],
                              QuantizeSettings(target_psnr_db=target, eval_batch=4, search=kind, **options))
            for kind in ("layers", "blocks")}


def float_params(plan) -> int:
    return sum(layer.weight_params for layer in plan.layers if layer.mode == "float")


def test_partition_follows_the_module_tree():
    names = ["conv_in"] + [f"stages.{i}.{n}" for i in range(3) for n in ("conv1", "norm", "conv2", "")] + ["conv_out"]
    names = [n.rstrip(".") for n in names]
    blocks = partition(names, 4)
    assert sorted(n for members in blocks.values() for n in members) == sorted(names)  # a partition
    assert all(len(members) <= 4 for members in blocks.values())
    assert blocks["stages.1"] == ["stages.1.conv1", "stages.1.norm", "stages.1.conv2", "stages.1"]  # a whole stage
    assert partition(names, 1) == {n: [n] for n in names}
    assert len(partition(names, len(names))) == 1
    assert default_block_size(158) == 13


def test_block_search_keeps_the_same_sensitive_layer_as_the_layer_search():
    """One layer made sensitive on purpose: both searches meet the target with the same layers kept above int8;
    the block search measures units only inside the block that holds it."""
    component = deep_component(hot="stages.3.conv1")
    found = plans(component, target=35.0)
    layers, blocks = found["layers"], found["blocks"]
    assert layers.all_int8_psnr_db < 35.0
    assert blocks.psnr_db >= 35.0 and layers.psnr_db >= 35.0
    assert float_params(blocks) <= float_params(layers)
    assert blocks.modes() == layers.modes(), ({n: m for n, m in blocks.modes().items() if m != "int8"},
                                              {n: m for n, m in layers.modes().items() if m != "int8"})
    assert any(blocks.modes()[n] != "int8" for n in ("stages.3.conv1", "stages.3.norm"))
    refined = blocks.search["refined_blocks"]
    assert refined and all(b.startswith("stages.3") for b in refined), refined
    units = {layer.name: layer for layer in blocks.layers}
    assert units["stages.3.conv1"].group == "stages.3.conv1"  # measured alone
    assert units["stages.0.conv1"].group != "stages.0.conv1"  # measured with its block only
    assert blocks.evaluations < layers.evaluations


def test_block_search_measures_only_blocks_when_everything_int8_meets_the_target():
    component = deep_component()
    found = plans(component, target=20.0)
    assert found["blocks"].all_int8_psnr_db >= 20.0
    assert found["blocks"].modes() == found["layers"].modes()  # everything at int8
    blocks = found["blocks"].search["blocks"]
    assert blocks < len(found["blocks"].layers)
    assert found["blocks"].evaluations == 2 + blocks  # all int8, naive, one per block
    assert found["layers"].evaluations == 2 + len(found["layers"].layers)


def test_weight_only_block_search_meets_the_target():
    component = deep_component(hot="stages.3.conv1")
    found = plans(component, target=45.0, activations=False)
    for plan in found.values():
        assert plan.psnr_db >= 45.0 and plan.counts()["int8"] == 0
    assert float_params(found["blocks"]) <= float_params(found["layers"]) or \
        found["blocks"].modes() == found["layers"].modes()


def test_search_functions_on_a_synthetic_score():
    """Without a network: noise powers add; group 'g7' alone costs most of the budget."""
    groups = [f"b{i // 4}.g{i}" for i in range(16)]
    noise = {g: 1e-5 for g in groups} | {"b1.g7": 1e-2}

    def psnr(active: list[str]) -> float:
        total = sum(noise[g] for g in active)
        return float("inf") if not total else -10 * np.log10(total)

    def measure(modes):
        return psnr([g for g in groups if modes.get(g, "int8") == "int8"])

    def alone(members):
        return psnr(members)

    all_int8 = psnr(groups)
    args = (measure, alone, lambda g: ["int8"], 30.0, all_int8)
    by_layer = layer_search(groups, *args)
    by_block = block_search(groups, 4, *args)
    assert by_layer.decided == by_block.decided == {"b1.g7": "float"}
    assert by_block.refined_blocks == ["b1"]


# ---- what ONNX Runtime fuses of the QDQ graph ----------------------------------------------------------------------


def test_onnxruntime_int8_records_the_pairs_its_optimiser_fused(tmp_path):
    """The count comes from the optimized graph ORT writes: with the optimiser off nothing is fused; at the
    bundle's level ("all") convolutions become quantized kernels and their Q/DQ pairs disappear."""
    import onnx

    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions
    from edgediff.backends.onnxruntime.qdq_fusion import runtime_fusion
    from edgediff.slim.quantize import attach

    component = deep_component()
    ranges, held = samples(component, 8), samples(component, 4, offset=100)
    attach(component, search_plan(component, ranges, held, ranges[:1], QuantizeSettings(target_psnr_db=20.0)),
           ranges)
    artifact = OnnxRuntimeBackend().lower(component, OnnxRuntimeOptions(), "int8", tmp_path)
    fusion = artifact.meta["int8"]["runtime_fusion"]
    graph = onnx.load(str(artifact.path))
    ops = [n.op_type for n in graph.graph.node]
    assert fusion["quantize_nodes_in"] == ops.count("QuantizeLinear") > 0
    assert fusion["dequantize_nodes_in"] == ops.count("DequantizeLinear")
    assert fusion["optimization_level"] == "all"
    assert 0 < fusion["pairs_fused"] <= fusion["quantize_nodes_in"]
    assert fusion["quantize_nodes_left"] == fusion["quantize_nodes_in"] - fusion["pairs_fused"]
    assert fusion["quantized_ops"].get("QLinearConv", 0) >= 7  # conv_in, 2 per stage, conv_out: most of 14
    off = runtime_fusion(artifact.path, "disable")
    assert off["pairs_fused"] == 0 and off["quantized_ops"] == {}
    assert off["quantize_nodes_left"] == fusion["quantize_nodes_in"]


# ---- a second run calibrates nothing -------------------------------------------------------------------------------


def test_second_int8_run_reuses_calibration_plan_and_ranges(tmp_path, monkeypatch):
    """The quantize step's calibration capture and plan search, and ONNX Runtime's range calibration, run once;
    a second run of the same model (here: the quantize step again, then the backend again) reads all three."""
    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions
    from edgediff.backends.onnxruntime import int8 as ort_int8
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.slim import calibration as calib
    from edgediff.slim import quantize, stage_cache
    from tests.test_quantize import write_mini_pipeline

    folder = write_mini_pipeline(tmp_path / "mini-sd")
    captures, searches, calibrations = [], [], []
    monkeypatch.setattr(calib, "capture", lambda *a, real=calib.capture: (captures.append(1), real(*a))[1])
    monkeypatch.setattr(quantize, "search_plan", lambda *a, real=quantize.search_plan: (searches.append(1),
                                                                                       real(*a))[1])
    monkeypatch.setattr(ort_int8, "calibrate_ranges",
                        lambda *a, real=ort_int8.calibrate_ranges: (calibrations.append(1), real(*a))[1])
    options = {"prompts": ["a red circle"], "num_inference_steps": 2, "scheduler": "EulerDiscreteScheduler",
               "guidance_scale": 5.0, "eval_samples": 2, "calibration_samples": 4, "components": ["unet"]}
    artifacts, records = [], []
    for run in range(2):
        model = load_model(str(folder))
        components = build_components(model, ["text_encoder", "unet", "vae_decoder"], ComponentShapes(16, 16))
        stage_cache.take_records()
        unet = {c.name: c for c in quantize.quantize_slim_step(model, components, dict(options))}["unet"]
        records.append({r["stage"]: r["cache"] for r in stage_cache.take_records()})
        artifacts.append(OnnxRuntimeBackend().lower(unet, OnnxRuntimeOptions(), "int8", tmp_path / f"run{run}"))
    assert (len(captures), len(searches), len(calibrations)) == (1, 1, 1)
    assert records[0] == {"quantize calibration": "miss", "quantize plan (unet)": "miss"}
    assert records[1] == {"quantize calibration": "hit", "quantize plan (unet)": "hit"}
    assert [a.meta["int8"]["ranges_cache"] for a in artifacts] == ["miss", "hit"]
    assert artifacts[0].path.read_bytes() == artifacts[1].path.read_bytes()  # the same int8 model
    # another backend's weight-only plan (Core ML) searches its own plan on the same cached calibration
    model = load_model(str(folder))
    components = build_components(model, ["text_encoder", "unet", "vae_decoder"], ComponentShapes(16, 16))
    quantize.quantize_slim_step(model, components, dict(options) | {"activations": False})
    assert (len(captures), len(searches)) == (1, 2)
