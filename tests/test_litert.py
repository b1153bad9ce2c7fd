"""litert backend and the UNet splitter on tiny real components.

Conversions are slow (tens of seconds each even for tiny graphs), so the fast suite converts twice: a chunked
tiny UNet at fp16, and the real TAEF2 decoder at full int8 with a keep_float layer. Splitting is checked in
PyTorch without converting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgediff.backends.base import open_artifact
from edgediff.backends.litert import LiteRTBackend, LiteRTOptions, QuantPlan, _check_size, _match_modules
from edgediff.errors import RecipeError, UnsupportedError
from edgediff.model.components import Component, ComponentShapes, TensorSpec, build_components
from edgediff.model.load import LoadedModel
from edgediff.verify import compare
from tests.tiny import tiny_unet_config

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"

litert_missing = not LiteRTBackend().can_run_here()[0]
needs_litert = pytest.mark.skipif(litert_missing, reason="ai-edge-litert / litert-torch not installed")


def tiny_unet(family: str = "sd15"):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(tiny_unet_config(family)).eval().requires_grad_(False)


def mini_unet_component() -> Component:
    """Two levels, one layer each: the smallest UNet that still has attention, skips and an upsampler, so a
    conversion takes seconds rather than minutes."""
    import torch
    from diffusers import UNet2DConditionModel

    config = tiny_unet_config() | dict(block_out_channels=[32, 64], layers_per_block=1,
                                       down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                                       up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval().requires_grad_(False)
    return build_components(LoadedModel("mini", "unet", unet=unet), ["unet"], ComponentShapes(64, 64))[0]


# ---- splitting (PyTorch only) ----------------------------------------------------------------------------------


# 6x10 is not a multiple of the total upscale, so the up blocks need explicit upsample sizes
@pytest.mark.parametrize("family, latent", [("sd15", (8, 8)), ("bk-sdm-small", (6, 10)), ("sd21", (6, 10))])
def test_chained_chunks_equal_the_whole_unet(family, latent):
    import torch

    from edgediff.model.split import run_chunks, split_unet

    unet = tiny_unet(family)
    inputs = dict(sample=torch.randn(2, 4, *latent), timestep=torch.tensor([3.0, 700.0]),
                  encoder_hidden_states=torch.randn(2, 77, 32))
    with torch.no_grad():
        reference = unet(**inputs, return_dict=False)[0]
        for parts in (1, 2, 3):
            chunks = split_unet(unet, parts)
            assert len(chunks) == parts
            assert chunks[-1].output_names == ("noise_pred",)
            assert torch.equal(run_chunks(chunks, inputs)["noise_pred"], reference)


def test_chunk_names_follow_the_data_flow():
    from edgediff.model.split import split_unet

    first, second = split_unet(tiny_unet(), 2)
    assert first.input_names[:2] == ("sample", "timestep")
    assert "emb" in first.output_names and "hidden" in first.output_names
    # every tensor the second chunk reads comes from the first chunk or from the UNet's own inputs
    assert set(second.input_names) <= set(first.output_names) | {"encoder_hidden_states", "sample", "timestep"}
    assert any(n.startswith("skip_") for n in second.input_names)
    assert first.stages[0] == "prelude" and second.stages[-1] == "postlude"


def test_split_by_bytes_uses_the_fewest_chunks():
    from edgediff.model.split import split_unet

    unet = tiny_unet()
    total = sum(p.numel() * 4 for p in unet.parameters())
    assert len(split_unet(unet, max_chunk_bytes=total)) == 1
    chunks = split_unet(unet, max_chunk_bytes=int(total * 0.6))
    assert len(chunks) >= 2 and all(c.weight_bytes <= total * 0.6 for c in chunks)
    with pytest.raises(UnsupportedError, match="alone holds"):
        split_unet(unet, max_chunk_bytes=1000)


def test_split_refuses_extra_conditioning():
    from diffusers import UNet2DConditionModel

    from edgediff.model.split import split_unet

    config = tiny_unet_config() | {"class_embed_type": "timestep"}
    with pytest.raises(UnsupportedError, match="class_embed_type"):
        split_unet(UNet2DConditionModel.from_config(config), 2)


# ---- options and plans ------------------------------------------------------------------------------------------


def test_quant_plan_validates_its_mode():
    with pytest.raises(RecipeError, match="int8_weights"):
        QuantPlan("int4")


def test_keep_float_pattern_must_match_a_layer():
    from edgediff.nets.taef2 import TAEF2Decoder

    decoder = TAEF2Decoder()
    assert _match_modules(decoder, ["3.pool"]) == {id(decoder[3].pool)}
    assert len(_match_modules(decoder, ["*.pool"])) == 3  # the three gn blocks
    with pytest.raises(RecipeError, match="matches no layer"):
        _match_modules(decoder, ["up_blocks.*"])


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "unet.tflite"
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(UnsupportedError, match="max_chunk_bytes"):
        _check_size(path, LiteRTOptions(max_file_bytes=1024), "unet", "fp32")
    assert not path.exists()


def test_large_non_unet_component_is_refused(tmp_path):
    from edgediff.nets.taef2 import TAEF2Decoder

    component = Component("vae_decoder", TAEF2Decoder(), (TensorSpec("latent", (1, 32, 4, 4)),),
                          (TensorSpec("image", (1, 3, 32, 32)),))
    with pytest.raises(UnsupportedError, match="only UNets and SDXL text encoders can be split"):
        LiteRTBackend().lower(component, LiteRTOptions(max_chunk_bytes=1000), "fp32", tmp_path)


# ---- conversions --------------------------------------------------------------------------------------------------


@needs_litert
def test_chunked_unet_fp16_runs_as_a_chain(tmp_path):
    component = mini_unet_component()
    backend, options = LiteRTBackend(), LiteRTOptions(chunks=2, threads=2)
    artifact = backend.lower(component, options, "fp16", tmp_path)
    assert [c.path.name for c in artifact.chunks] == ["unet.part0.tflite", "unet.part1.tflite"]
    assert [s.name for s in artifact.inputs] == ["sample", "timestep", "encoder_hidden_states"]
    assert artifact.chunks[-1].outputs[0].name == "noise_pred"
    assert artifact.meta["chunked"]["count"] == 2
    assert artifact.chunks[0].meta["stages"][0] == "prelude"
    # later chunk inputs are earlier chunk outputs or the UNet's inputs, with the shapes the files declare
    produced = {s.name: s for s in artifact.chunks[0].outputs} | {s.name: s for s in artifact.inputs}
    for spec in artifact.chunks[1].inputs:
        assert produced[spec.name].shape == spec.shape
    session = open_artifact(backend, artifact, options)
    for seed in (1, 2):
        inputs = component.example_inputs(seed)
        metrics = compare(component.run_torch(inputs)["noise_pred"], session(inputs)["noise_pred"])
        assert metrics.psnr_db > 45 and metrics.cosine > 0.9999, metrics


@needs_litert
@pytest.mark.skipif(not (WEIGHTS / "taef2_decoder.pth").exists(), reason="shared/weights missing")
def test_full_int8_keeps_float_io_and_keep_float_layers(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgediff.nets.taef2 import load_taef2

    decoder = load_taef2("decoder", WEIGHTS / "taef2_decoder.pth")
    component = Component("vae_decoder", decoder, (TensorSpec("latent", (1, 32, 4, 4)),),
                          (TensorSpec("image", (1, 3, 32, 32)),))
    rng = np.random.default_rng(0)
    calibration = [{"latent": rng.standard_normal((1, 32, 4, 4)).astype(np.float32)} for _ in range(4)]
    plan = QuantPlan("int8_full", keep_float=("19",), calibration=calibration)
    backend, options = LiteRTBackend(), LiteRTOptions(threads=2)
    artifact = backend.lower(component, options, "int8", tmp_path, plan=plan)
    assert artifact.inputs[0].dtype == "float32" and artifact.outputs[0].dtype == "float32"
    assert artifact.meta["int8"]["mode"] == "int8_full" and artifact.meta["int8"]["calibration_samples"] == 4

    def conv_weight_dtype(index: int) -> str:  # the 4-D constant named after decoder layer `index`
        (weight,) = [t for t in tensors if f"Conv2d_{index};" in t["name"] and len(t["shape"]) == 4
                     and t["shape"][0] != 1]
        return np.dtype(weight["dtype"]).name

    tensors = Interpreter(model_path=str(artifact.path)).get_tensor_details()
    assert conv_weight_dtype(19) == "float32"  # kept in float by the plan
    assert conv_weight_dtype(17) == "int8"  # the rest really is int8

    session = open_artifact(backend, artifact, options)
    inputs = {"latent": rng.standard_normal((1, 32, 4, 4)).astype(np.float32)}
    metrics = compare(component.run_torch(inputs)["image"], session(inputs)["image"])
    assert metrics.psnr_db > 25, metrics
