"""Core ML backend: split-einsum rewrite and chunking checked in PyTorch, real coremltools conversions of micro
components checked structurally (compressed weights, sizes, Apple's Swift layout), macOS-only numerics.

The conversion fixture runs three real conversions once per module (micro text encoder / UNet / VAE decoder with
the Swift layout, a two-chunk 6-bit UNet and an int8 text encoder); everything else is PyTorch-only.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from edgediff.backends.base import open_artifact
from edgediff.backends.coreml import CoreMLBackend, CoreMLOptions, inspect_package, read_package_io  # noqa: E402
from edgediff.backends.coreml.attention import rewrite_attention  # noqa: E402
from edgediff.errors import BackendUnavailable, ParityError, RecipeError, UnsupportedError  # noqa: E402
from edgediff.model.components import ComponentShapes, build_components  # noqa: E402
from edgediff.model.load import LoadedModel  # noqa: E402
from edgediff.slim.quantize import LayerPlan, PrecisionPlan, attach  # noqa: E402
from tests.tiny import SD15  # noqa: E402

ON_MAC = platform.system() == "Darwin"


def micro_unet(family: str = "sd15"):
    """The smallest UNet with SD's block types; "sd21" adds SD 2.x's linear projections and per-block head dims.

    SD 1.5's micro UNet has 2 heads per attention (diffusers reads `attention_head_dim` as the head count here):
    split-einsum unrolls attention head by head, so the head count sets the size of the Core ML program, and the
    conversion time of the session fixture grows with it (16 heads made it ~4x slower, checking nothing more).
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    extra = dict(use_linear_projection=True, attention_head_dim=(8, 16)) if family == "sd21" else \
        dict(attention_head_dim=2)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, **extra,
    ).eval().requires_grad_(False)


def micro_model() -> LoadedModel:
    """The smallest real SD-shaped pipeline: cross-attention down/up blocks, a mid block, CLIP, AutoencoderKL."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = micro_unet()
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77))
    for module in (vae, text):
        module.eval().requires_grad_(False)
    return LoadedModel(source="micro", kind="pipeline", unet=unet, vae=vae, text_encoder=text,
                       tokenizer_dir=SD15 / "tokenizer")


@pytest.fixture(scope="module")
def micro():
    """One micro pipeline shared by the tests of this module (nothing here modifies it: the attention rewrite,
    the chunker and the converter all build new modules around the original weights)."""
    return micro_model()


# ---- PyTorch-only: the rewrite and the chunks are what coremltools receives ------------------------------------


def _unet_inputs(batch=2, channels=32, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, size, size, generator=g), torch.tensor([10.0, 700.0][:batch]),
            torch.randn(batch, 77, channels, generator=g))


@pytest.mark.parametrize("family, form", [("sd15", "split_einsum"), ("sd21", "split_einsum"),
                                          ("sd15", "split_einsum_v2")])
def test_split_einsum_unet_equals_original_attention(family, form):
    unet = micro_unet(family)
    sample, t, context = _unet_inputs()
    with torch.no_grad():
        reference = unet(sample, t, context).sample
        rebuilt, report = rewrite_attention(unet, form, query_chunk=24)  # 64 tokens -> 3 query chunks
        out = rebuilt(sample, t, context).sample
        out_channels_first = rebuilt(sample, t, context.transpose(1, 2).unsqueeze(2)).sample
    assert report.transformer_blocks == 4 and report.attention_layers == 8 and not report.kept
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_channels_first, reference, rtol=1e-4, atol=1e-5)
    # the original diffusers module is untouched; the rewrite shares its weights, except the query projections
    # that absorb the attention scale (new tensors that remember their source for keep-float plans)
    assert type(unet.down_blocks[0].attentions[0]).__name__ == "Transformer2DModel"
    original = {p.data_ptr() for p in unet.parameters()}
    for name, param in rebuilt.named_parameters():
        if param.data_ptr() not in original:
            assert ".to_q." in name and param._edgediff_source.data_ptr() in original, name


def test_split_einsum_vae_attention_equals_original(micro):
    vae = micro.vae
    latent = torch.randn(1, 4, 8, 8)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        rebuilt, report = rewrite_attention(vae, "split_einsum")
        torch.testing.assert_close(rebuilt.decode(latent).sample, vae.decode(latent).sample, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(rebuilt.encode(image).latent_dist.mean, vae.encode(image).latent_dist.mean,
                                   rtol=1e-4, atol=1e-5)
    assert report.attention_layers == 2  # encoder and decoder mid-block attention


def test_split_einsum_refuses_what_it_cannot_express():
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    block = Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=8,
                               cross_attention_dim=16, norm_type="ada_norm", num_embeds_ada_norm=10)
    holder = torch.nn.Sequential(block)
    with pytest.raises(UnsupportedError, match="original"):
        rewrite_attention(holder, "split_einsum")
    assert rewrite_attention(holder, "original")[0] is holder
    with pytest.raises(RecipeError, match="split_einsum"):
        rewrite_attention(holder, "flash")


@pytest.mark.parametrize("parts", [2, 3])
def test_chunked_unet_equals_whole_unet(micro, parts):
    from edgediff.model.split import run_chunks, split_unet

    model = micro
    rebuilt, _ = rewrite_attention(model.unet, "split_einsum")
    sample, t, context = _unet_inputs()
    with torch.no_grad():
        whole = model.unet(sample, t, context).sample
        chunks = split_unet(rebuilt, parts, granularity="layer")
        chained = run_chunks(chunks, {"sample": sample, "timestep": t, "encoder_hidden_states": context})
    assert len(chunks) == parts
    torch.testing.assert_close(chained["noise_pred"], whole, rtol=1e-4, atol=1e-5)
    # balanced: no other cut into `parts` contiguous stage groups has a smaller largest chunk
    from edgediff.model.split import _weight_bytes, unet_stages

    sizes = [_weight_bytes(s) for s in unet_stages(rebuilt, "layer")]
    best = _best_largest_group(sizes, parts)
    assert max(c.weight_bytes for c in chunks) == best


def _best_largest_group(sizes, parts):
    import itertools

    n, best = len(sizes), None
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0,) + cuts + (n,)
        largest = max(sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:]))
        best = largest if best is None else min(best, largest)
    return best


# ---- options are validated before any conversion ----------------------------------------------------------------


@pytest.mark.parametrize("options, precision, message", [
    (dict(minimum_deployment_target="iOS99"), "fp16", "iOS99"),
    (dict(palettize_bits=6), "int8", "pick one"),
    (dict(palettize_bits=3), "fp16", "3-bit needs iOS18"),
    (dict(palettize_bits=4, palettize_granularity="per_grouped_channel"), "fp16", "iOS18"),
    (dict(compute_units="NPU"), "fp16", "CPU_AND_NE"),
    (dict(attention="flash"), "fp16", "split_einsum"),
    (dict(swift_layout=True, chunk_unet=3), "fp16", "2 chunks"),
])
def test_bad_options_fail_before_converting(micro, tmp_path, options, precision, message):
    (unet,) = build_components(micro, ["unet"], ComponentShapes(16, 16))
    with pytest.raises(RecipeError, match=message):
        CoreMLBackend().lower(unet, CoreMLOptions(**options), precision, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(ON_MAC, reason="on macOS Core ML runs; this checks the Linux refusal")
def test_load_refuses_on_linux_with_the_reason(tmp_path):
    backend = CoreMLBackend()
    runnable, why = backend.can_run_here()
    assert not runnable and "macOS" in why
    from edgediff.backends.base import Artifact

    with pytest.raises(BackendUnavailable, match="macOS"):
        open_artifact(backend, Artifact("unet", tmp_path / "x.mlpackage", (), ()), CoreMLOptions())


# ---- real conversions -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swift_bundle(micro, tmp_path_factory):
    """Micro pipeline in Apple's Swift layout: int8 text encoder, 2-chunk 6-bit UNet, fp16 VAE decoder."""
    out = tmp_path_factory.mktemp("coreml_swift")
    model = micro
    components = {c.name: c for c in build_components(model, ["text_encoder", "unet", "vae_decoder"],
                                                         ComponentShapes(16, 16))}
    backend = CoreMLBackend()
    # the int8 step's precision plan keeps fc1 float and fc2 int8: the hand-off every weight-only backend reads
    attach(components["text_encoder"], _text_plan(components["text_encoder"], "layers.0.mlp.fc1"), [])
    # kmeans1d handles fp16 tensors >= 10k elements in milliseconds; smaller ones would go to scikit-learn
    base = CoreMLOptions(swift_layout=True, weight_threshold=10_000)
    plan = {
        # 48: every micro CLIP matrix is compressed, and its fc1 bias (64 elements, rank 1: coremltools never
        # compresses those) is over the threshold, as SD 1.5's 3072-element fc1 biases are at 2048
        "text_encoder": (dataclasses.replace(base, weight_threshold=48), "int8"),
        "unet": (dataclasses.replace(base, chunk_unet=2, palettize_bits=6,
                                     keep_float=["conv_in", "unet:down_blocks.0.attentions.0.proj_in"]), "fp16"),
        "vae_decoder": (base, "fp16"),
    }
    artifacts, options = {}, {}
    for name, (opts, precision) in plan.items():
        artifacts[name] = backend.lower(components[name], opts, precision, out)
        options[name] = (opts, precision)
    section = backend.finalize_bundle(out, artifacts, model.tokenizer_dir, base, log=lambda m: None)
    return dict(dir=out, artifacts=artifacts, options=options, section=section, model=model, components=components)


def _text_plan(component, keep: str):
    """A precision plan as the int8 step writes it: `keep` (a module path suffix) float, fc2 int8."""
    def path(suffix: str) -> str:  # the full module path in the component, or the suffix when nothing has it
        return next((n for n, _ in component.module.named_modules() if n.endswith(suffix)), suffix)

    layers = [LayerPlan(path(keep), "Linear", "float", 20.0, 2112),
              LayerPlan(path("layers.0.mlp.fc2"), "Linear", "int8", 50.0, 2080)]
    return PrecisionPlan(component.name, 35.0, layers, psnr_db=36.0, all_int8_psnr_db=20.0, naive_psnr_db=18.0)


def test_int8_plan_keep_float_layers_stay_float(swift_bundle):
    artifact = swift_bundle["artifacts"]["text_encoder"]
    kept = artifact.meta["keep_float_weights"]
    assert any(k.endswith("mlp_fc1_weight_to_fp16") for k in kept), kept
    assert not any("fc2" in k for k in kept), kept
    info = inspect_package(artifact.path)
    assert any(n.endswith("mlp_fc1_weight_to_fp16") for n in info.float_const_names)
    assert any("mlp_fc2_weight" in n for n in info.compressed_names), sorted(info.compressed_names)


def test_int8_plan_naming_a_missing_layer_fails_before_converting(micro, tmp_path):
    (text,) = build_components(micro, ["text_encoder"], ComponentShapes(16, 16))
    attach(text, _text_plan(text, "layers.7.mlp.fc1"), [])  # the micro CLIP has one layer
    with pytest.raises(RecipeError, match="layers.7.mlp.fc1"):
        CoreMLBackend().lower(text, CoreMLOptions(weight_threshold=1024), "int8", tmp_path)
    assert not list(tmp_path.iterdir())


def test_structural_checks_pass_on_every_package(swift_bundle):
    backend = CoreMLBackend()
    for name, artifact in swift_bundle["artifacts"].items():
        opts, precision = swift_bundle["options"][name]
        result = backend.structural_check(artifact, opts, precision)
        assert result["status"] == "passed", [c for c in result["checks"] if not c["passed"]]
        names = {c["name"] for c in result["checks"]}
        assert any("pytorch: converted modules = original" in n for n in names)


def test_palettized_chunked_unet_holds_6bit_luts_and_is_smaller(swift_bundle):
    unet = swift_bundle["artifacts"]["unet"]
    assert [c.path.name for c in unet.chunks] == ["UnetChunk1.mlpackage", "UnetChunk2.mlpackage"]
    chain = json.loads(unet.path.read_text())
    assert [c["file"] for c in chain["chunks"]] == ["UnetChunk1.mlpackage", "UnetChunk2.mlpackage"]
    fp16_bytes = sum(p.numel() for p in swift_bundle["model"].unet.parameters()) * 2
    weight_bytes = expected = 0
    for chunk in unet.chunks:
        info = inspect_package(chunk.path)
        assert info.op_counts["constexpr_lut_to_dense"] > 0
        # every weight over the threshold (10k elements here) not kept float sits behind a 6-bit LUT
        assert not [n for n, e in info.float_const_elements.items() if e > 10_000]
        weight_bytes += info.weight_file_bytes
        expected += info.compressed_elements * 6 / 8 + (info.weight_elements - info.compressed_elements) * 2
    # 6 of 16 bits for the LUT'd tensors, the rest stays fp16: the file is that size (plus LUTs), not more
    assert weight_bytes <= 1.1 * expected, (weight_bytes, expected)
    assert weight_bytes < 0.7 * fp16_bytes, (weight_bytes, fp16_bytes)
    # the two chunks carry similar weight (the splitter's balanced cut)
    sizes = [c["weight_bytes"] for c in chain["chunks"]]
    assert max(sizes) / sum(sizes) < 0.6


def test_keep_float_layers_are_not_compressed(swift_bundle):
    unet = swift_bundle["artifacts"]["unet"]
    kept = unet.meta["keep_float_weights"]
    assert any("conv_in_weight" in k for k in kept) and any("proj_in_weight" in k for k in kept)
    float_consts = set().union(*(inspect_package(c.path).float_const_names for c in unet.chunks))
    for name in kept:
        base = name.removesuffix("_to_fp16")
        assert base in float_consts or base + "_to_fp16" in float_consts, name


def test_int8_text_encoder_holds_int8_weights(swift_bundle):
    info = inspect_package(swift_bundle["artifacts"]["text_encoder"].path)
    assert info.op_counts["constexpr_affine_dequantize"] > 0
    # a rank-1 weight over the threshold stays float and the structural check does not count it against us
    assert any(n.endswith("mlp_fc1_bias_to_fp16") for n in info.vector_const_names)
    dense_fp16 = info.weight_elements * 2
    assert info.weight_file_bytes < 0.62 * dense_fp16  # 8 of 16 bits plus per-channel scales


def test_swift_layout_matches_apples_names_and_shapes(swift_bundle):
    """Literal names and shapes from apple/ml-stable-diffusion's Swift sources (see coreml_swift's docstring)."""
    root = swift_bundle["dir"]
    for name in ("TextEncoder.mlpackage", "UnetChunk1.mlpackage", "UnetChunk2.mlpackage", "VAEDecoder.mlpackage",
                 "Resources/vocab.json", "Resources/merges.txt", "compile_swift_resources.sh"):
        assert (root / name).exists(), name
    assert not (root / "Unet.mlpackage").exists()
    text_in, text_out = read_package_io(root / "TextEncoder.mlpackage")
    assert (text_in[0].name, text_in[0].shape, text_in[0].dtype) == ("input_ids", (1, 77), "float32")
    assert ("last_hidden_state", (1, 77, 32)) in [(s.name, s.shape) for s in text_out]
    chunk1_in, chunk1_out = read_package_io(root / "UnetChunk1.mlpackage")
    chunk2_in, chunk2_out = read_package_io(root / "UnetChunk2.mlpackage")
    unet_inputs = {s.name: s for s in chunk1_in + chunk2_in}
    assert unet_inputs["sample"].shape == (2, 4, 8, 8)
    assert unet_inputs["timestep"].shape == (2,)
    assert unet_inputs["encoder_hidden_states"].shape == (2, 32, 1, 77)  # [B, D, 1, S], Swift's toHiddenStates
    assert {s.name for s in chunk2_in} <= {"sample", "timestep", "encoder_hidden_states"} | {s.name for s in chunk1_out}
    assert [(s.name, s.shape) for s in chunk2_out] == [("noise_pred", (2, 4, 8, 8))]
    dec_in, dec_out = read_package_io(root / "VAEDecoder.mlpackage")
    assert [(s.name, s.shape) for s in dec_in] == [("z", (1, 4, 8, 8))]
    assert [(s.name, s.shape) for s in dec_out] == [("image", (1, 3, 16, 16))]
    script = (root / "compile_swift_resources.sh").read_text()
    assert "xcrun coremlcompiler compile UnetChunk1.mlpackage Resources" in script
    section = swift_bundle["section"]
    assert section["status"] == "passed", [c for c in section["checks"] if not c["passed"]]
    if not ON_MAC:
        assert section["compiled"] is False and "macOS" in section["reason"]


def test_swift_layout_check_catches_a_wrong_bundle(swift_bundle, tmp_path):
    from edgediff.backends.coreml.swift import check_layout

    broken = tmp_path / "broken"
    shutil.copytree(swift_bundle["dir"], broken)
    (broken / "Resources" / "merges.txt").unlink()
    # swap the chunks: the first one now needs tensors nobody gives it
    (broken / "UnetChunk1.mlpackage").rename(broken / "tmp.mlpackage")
    (broken / "UnetChunk2.mlpackage").rename(broken / "UnetChunk1.mlpackage")
    (broken / "tmp.mlpackage").rename(broken / "UnetChunk2.mlpackage")
    failed = {c["name"] for c in check_layout(broken, read_package_io) if not c["passed"]}
    assert "swift: Resources/merges.txt" in failed
    assert "swift: UnetChunk1 inputs" in failed


def test_structural_check_fails_loudly_on_a_manifest_mismatch(swift_bundle):
    artifact = swift_bundle["artifacts"]["vae_decoder"]
    opts, precision = swift_bundle["options"]["vae_decoder"]
    wrong = dataclasses.replace(artifact, outputs=(dataclasses.replace(artifact.outputs[0], shape=(1, 3, 32, 32)),))
    with pytest.raises(ParityError, match="outputs match manifest"):
        CoreMLBackend().structural_check(wrong, opts, precision)
    result = CoreMLBackend().structural_check(wrong, opts, "fp32", raise_on_failure=False)
    failed = {c["name"] for c in result["checks"] if not c["passed"]}
    assert "VAEDecoder.mlpackage: compute precision fp32" in failed  # it is an fp16 program


@pytest.mark.skipif(ON_MAC, reason="on macOS the verify stage runs Core ML predictions")
def test_verify_stage_reports_numerics_skipped_on_linux_with_the_reason(swift_bundle):
    """What `edgediff convert` writes into the manifest here: numeric parity skipped (never passed), with the
    reason, next to the structural checks that did run."""
    from edgediff.recipe import Recipe
    from edgediff.verify import Thresholds, end_to_end, end_to_end_settings, verify_artifacts

    backend = CoreMLBackend()
    opts, precision = swift_bundle["options"]["vae_decoder"]
    recipe = Recipe()
    recipe.backend.name, recipe.backend.precision = "coreml", precision
    component = swift_bundle["components"]["vae_decoder"]
    artifacts = {component.name: swift_bundle["artifacts"]["vae_decoder"]}
    (result,) = verify_artifacts([component], artifacts, "coreml", backend.session_options(opts),
                                 {component.name: Thresholds(35.0, 0.99)}, 3, backend.can_run_here(),
                                 structural_check=lambda a: backend.structural_check(a, opts, precision))
    assert result.status == "skipped" and result.samples == 0 and result.metrics is None
    assert "macOS" in result.reason
    assert result.structural["status"] == "passed"
    e2e = end_to_end(swift_bundle["model"], [component], swift_bundle["artifacts"], "coreml",
                     backend.session_options(opts), end_to_end_settings(recipe, precision), backend.can_run_here())
    assert e2e == {"status": "skipped", "reason": result.reason}


# ---- macOS: numeric parity through MLModel.predict --------------------------------------------------------------
# Not marked `macos` (which the default addopts deselect): here they must show up as skipped, with the reason.


@pytest.mark.skipif(not ON_MAC, reason="Core ML predictions need macOS (coremltools converts but cannot run "
                                       "models on Linux); run on a Mac: pytest tests/test_coreml.py")
@pytest.mark.parametrize("name", ["text_encoder", "unet", "vae_decoder"])
def test_coreml_predictions_match_pytorch(swift_bundle, name):
    from edgediff.verify import compare

    backend = CoreMLBackend()
    component = swift_bundle["components"][name]
    artifact = swift_bundle["artifacts"][name]
    opts, _ = swift_bundle["options"][name]
    run = open_artifact(backend, artifact, dataclasses.replace(opts, compute_units="CPU_ONLY"))
    for seed in (1, 2):
        inputs = component.example_inputs(seed)
        reference = component.run_torch(inputs)
        got = run(inputs)
        for key, value in reference.items():
            assert compare(value, got[key]).psnr_db >= 30.0, (name, key)  # 6-bit / int8 weights: Apple's gate is 35


def test_convert_writes_the_swift_layout_from_the_cli(tmp_path):
    """`edgediff convert --target coreml` with swift_layout = true calls the backend's bundle hook: Resources/ and
    the manifest's `swift` section come from the command line, not only from the Python API."""
    from edgediff.cli import main
    from edgediff.contract import read_strict_json
    from tests.tiny import compact_unet_config, write_tiny_pipeline

    folder = write_tiny_pipeline(tmp_path / "tiny", unet_config=compact_unet_config())  # every block type, fewer ops
    out = tmp_path / "out"
    assert main(["convert", str(folder), "--target", "coreml", "--output", str(out), "--no-profile",
                 "--set", "backend.options.swift_layout=true", "--set", "verify.samples=1"]) == 0
    bundle = out / "coreml"
    manifest = read_strict_json(bundle / "manifest.json")
    assert manifest["swift"]["status"] == "passed", manifest["swift"]
    assert (bundle / "Resources" / "vocab.json").is_file() and (bundle / "Resources" / "merges.txt").is_file()
    assert (bundle / "swift_layout.json").is_file()
