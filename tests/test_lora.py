"""LoRAs: fused into the text encoder and UNet before lowering, equal to diffusers with the same adapters set,
recorded in the manifest, verified against PyTorch with the LoRAs applied; LoRAs that do not fit are refused with
the layer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff.cli import main
from edgediff.contract import sha256_file
from edgediff.errors import ModelLoadError, UnsupportedError
from edgediff.model.load import load_model
from edgediff.model.lora import apply_loras, parse_lora_argument
from tests.lora_layout import random_lora, to_kohya, write_lora
from tests.tiny import tiny_unet_config, write_tiny_pipeline

ATTENTION = {"to_q", "to_k", "to_v", "to_out.0"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", seed=3)


@pytest.fixture(scope="module")
def loras(pipeline, tmp_path_factory) -> tuple[Path, Path]:
    """A: diffusers / PEFT layout with its LoraConfig (rank 4, alpha 8) on attention, the 1x1-conv projections and
    the text encoder's q / v / fc1. B: kohya layout (rank 2, alpha 1) on feed-forwards, 3x3 resnet convolutions
    (LoCon), time projections and the text encoder's k / out_proj."""
    model = load_model(pipeline)
    folder = tmp_path_factory.mktemp("loras")
    a = (random_lora(model.unet, "unet", ATTENTION | {"proj_in", "proj_out"}, 4, seed=1)
         | random_lora(model.text_encoder, "text_encoder", {"q_proj", "v_proj", "fc1"}, 4, seed=2))
    b = (random_lora(model.unet, "unet", {"ff.net.2", "proj", "conv1", "time_emb_proj"}, 2, seed=3)
         | random_lora(model.text_encoder, "text_encoder", {"k_proj", "out_proj"}, 2, seed=4))
    return (write_lora(a, folder / "style.safetensors", {"unet": 8, "text_encoder": 8}),
            write_lora(to_kohya(b, alpha=1), folder / "kohya_detail.safetensors"))


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 49407, (1, 77), generator=g)
    ids[0, 0] = 49406
    return {"ids": ids, "sample": torch.randn(2, 4, 8, 8, generator=g), "timestep": torch.tensor([999.0, 250.0]),
            "context": torch.randn(2, 77, 32, generator=g)}


def _outputs(text_encoder, unet, x) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return (text_encoder(x["ids"]).last_hidden_state,
                unet(x["sample"], x["timestep"], x["context"]).sample)


def _diffusers_reference(pipeline: Path, files: list[Path], strengths: list[float]):
    """A real StableDiffusionPipeline that loads the files itself, with set_adapters (not fused)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    base = load_model(pipeline)
    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, unet=base.unet,
                                   tokenizer=CLIPTokenizer.from_pretrained(str(pipeline / "tokenizer")),
                                   scheduler=__import__("diffusers").PNDMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    names = [f"adapter_{i}" for i in range(len(files))]
    for name, path in zip(names, files):
        pipe.load_lora_weights(str(path), adapter_name=name)
    pipe.set_adapters(names, strengths)
    return pipe


def test_two_loras_fused_equal_diffusers_set_adapters(pipeline, loras):
    x = _inputs()
    base = load_model(pipeline)
    base_text, base_noise = _outputs(base.text_encoder, base.unet, x)
    reference = _diffusers_reference(pipeline, list(loras), [0.8, 0.5])
    want_text, want_noise = _outputs(reference.text_encoder, reference.unet, x)

    fused = load_model(pipeline)
    applied = apply_loras(fused, [(str(loras[0]), 0.8), (str(loras[1]), 0.5)])
    got_text, got_noise = _outputs(fused.text_encoder, fused.unet, x)
    assert [lora.layout for lora in applied] == ["diffusers", "kohya"]
    assert (want_noise - base_noise).abs().max() > 0.05 and (want_text - base_text).abs().max() > 0.05  # they matter
    assert torch.allclose(got_noise, want_noise, rtol=1e-4, atol=1e-5), (got_noise - want_noise).abs().max()
    assert torch.allclose(got_text, want_text, rtol=1e-4, atol=1e-5), (got_text - want_text).abs().max()
    plain = list(fused.unet.state_dict()) + list(fused.text_encoder.state_dict())
    assert plain == list(base.unet.state_dict()) + list(base.text_encoder.state_dict())  # no adapter left behind
    records = fused.details["loras"]
    assert [(r["file"], r["strength"], r["layout"]) for r in records] == [
        ("style.safetensors", 0.8, "diffusers"), ("kohya_detail.safetensors", 0.5, "kohya")]
    assert records[1]["sha256"] == sha256_file(loras[1]) and set(records[1]["layers"]) == {"unet", "text_encoder"}


def test_kohya_scaling_by_hand(pipeline, tmp_path):
    """Independent of diffusers: W' = W + strength * alpha / rank * up @ down, for a Linear and a 3x3 conv."""
    model = load_model(pipeline)
    linear = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v"
    conv = "down_blocks.1.resnets.0.conv1"
    state = {k: v for k, v in random_lora(model.unet, "unet", {"to_v", "conv1"}, 3, seed=9).items()
             if k.startswith((f"unet.{linear}.", f"unet.{conv}."))}
    before = {n: model.unet.get_submodule(n).weight.clone() for n in (linear, conv)}
    apply_loras(model, [(str(write_lora(to_kohya(state, alpha=1.5), tmp_path / "k.safetensors")), 0.7)])
    for name in (linear, conv):
        down, up = state[f"unet.{name}.lora_A.weight"], state[f"unet.{name}.lora_B.weight"]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(before[name].shape) * 0.7 * 1.5 / 3
        assert torch.allclose(model.unet.get_submodule(name).weight, before[name] + delta, atol=1e-6), name


@pytest.fixture(scope="module")
def bundle(pipeline, loras, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    code = main(["convert", str(pipeline), "--lora", f"{loras[0]}:0.8", "--lora", f"{loras[1]}:0.5",
                 "--no-profile", "--set", "pipeline.num_inference_steps=3", "--set", "verify.samples=1",
                 "--output", str(out)])
    assert code == 0
    return out / "onnxruntime"


def test_bundle_records_the_loras_and_matches_diffusers(bundle, pipeline, loras):
    import onnxruntime as ort
    import tomllib

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["source"]["loras"] == [
        {"file": "style.safetensors", "sha256": sha256_file(loras[0]), "strength": 0.8, "layout": "diffusers",
         "layers": manifest["source"]["loras"][0]["layers"]},
        {"file": "kohya_detail.safetensors", "sha256": sha256_file(loras[1]), "strength": 0.5, "layout": "kohya",
         "layers": manifest["source"]["loras"][1]["layers"]}]
    assert all(c["verify"]["status"] == "passed" for c in manifest["components"].values())
    assert manifest["verify"]["end_to_end"]["status"] == "passed"
    assert "LoRA `style.safetensors` at strength 0.8" in (bundle / "report.md").read_text()
    recipe = tomllib.loads((bundle / "recipe.toml").read_text())
    assert recipe["model"]["loras"] == [{"file": str(loras[0]), "strength": 0.8},
                                        {"file": str(loras[1]), "strength": 0.5}]
    # the lowered UNet against diffusers with the adapters set, same inputs
    x = _inputs(1)
    reference = _diffusers_reference(pipeline, list(loras), [0.8, 0.5])
    with torch.no_grad():
        want = reference.unet(x["sample"], x["timestep"], x["context"]).sample.numpy()
    session = ort.InferenceSession(str(bundle / manifest["components"]["unet"]["file"]))
    got = session.run(None, {"sample": x["sample"].numpy(), "timestep": x["timestep"].numpy(),
                             "encoder_hidden_states": x["context"].numpy()})[0]
    assert np.allclose(got, want, rtol=1e-3, atol=1e-4), np.abs(got - want).max()


def test_verify_rebuilds_pytorch_with_the_loras(bundle, loras, tmp_path, capsys):
    """`edgediff verify` rebuilds PyTorch from recipe.toml, LoRAs included: it passes, and names a missing LoRA."""
    assert main(["verify", str(bundle), "--samples", "1"]) == 0
    moved = tmp_path / "elsewhere.safetensors"
    loras[1].rename(moved)
    try:
        capsys.readouterr()
        assert main(["verify", str(bundle), "--samples", "1"]) == 2
        assert "kohya_detail.safetensors does not exist" in capsys.readouterr().err
    finally:
        moved.rename(loras[1])


def test_recipe_table_and_flag(pipeline, loras, tmp_path, capsys):
    import tomllib

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'version = 1\n[[model.loras]]\nfile = "{loras[1]}"\nstrength = 0.25\n')
    assert main(["convert", str(pipeline), "--recipe", str(recipe), "--dry-run"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["model"]["loras"] == [{"file": str(loras[1]), "strength": 0.25}]
    assert main(["convert", str(pipeline), "--recipe", str(recipe), "--lora", str(loras[0]), "--dry-run"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["model"]["loras"] == [{"file": str(loras[0]), "strength": 1.0}]


def test_lora_on_a_single_file_checkpoint(tmp_path):
    from edgediff.model.single_file import load_single_file
    from tests.ldm_layout import tiny_checkpoint

    path, _ = tiny_checkpoint(tmp_path, "sd2")
    model = load_single_file(path)
    lora = write_lora(to_kohya(random_lora(model.unet, "unet", {"to_k"}, 2, seed=5), 2.0), tmp_path / "l.safetensors")
    before = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.clone()
    apply_loras(model, [(str(lora), 1.0)])
    assert not torch.equal(before, model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight)


def test_parse_lora_argument():
    assert parse_lora_argument("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_lora_argument("dir/a.safetensors:0.8") == ("dir/a.safetensors", 0.8)
    assert parse_lora_argument("a.safetensors:-1") == ("a.safetensors", -1.0)
    assert parse_lora_argument(r"C:\loras\a.safetensors") == (r"C:\loras\a.safetensors", 1.0)


# ---- refusals --------------------------------------------------------------------------------------------------------


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _convert_with(pipeline: Path, lora: str, tmp_path: Path) -> int:
    return main(["convert", str(pipeline), "--lora", lora, "--no-profile", "--output", str(tmp_path / "o")])


def test_lora_of_another_family_names_the_layer(pipeline, tmp_path, capsys):
    from diffusers import UNet2DConditionModel

    wider = UNet2DConditionModel.from_config(tiny_unet_config(cross_attention_dim=64))  # like SD 2.x's 1024 vs 768
    for layout in ("diffusers", "kohya"):
        state = random_lora(wider, "unet", ATTENTION, 4, seed=1)
        path = write_lora(to_kohya(state, 4) if layout == "kohya" else state, tmp_path / f"{layout}.safetensors")
        assert _convert_with(pipeline, str(path), tmp_path) == 2
        line = _error_line(capsys)
        assert "does not fit this model at layer unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k" in line
        assert "32 -> 32 features" in line and "(4, 64)" in line
        assert not (tmp_path / "o").exists()


def test_lora_with_a_layer_the_model_lacks(pipeline, tmp_path):
    model = load_model(pipeline)
    state = random_lora(model.unet, "unet", {"to_q"}, 2, seed=1)
    ghost = "unet.down_blocks.0.attentions.0.transformer_blocks.7.attn1.to_q"
    state |= {f"{ghost}.lora_A.weight": torch.zeros(2, 32), f"{ghost}.lora_B.weight": torch.zeros(32, 2)}
    for layout, data in (("diffusers", state), ("kohya", to_kohya(state, 2))):
        with pytest.raises(ModelLoadError, match=r"transformer_blocks\.7\.attn1\.to_q: the model has no such layer"):
            apply_loras(copy.deepcopy(model), [(str(write_lora(data, tmp_path / f"{layout}.safetensors")), 1.0)])


@pytest.mark.parametrize("extra,expected", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(2, 2)}, "LoHa"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale": torch.zeros(1, 32)}, "DoRA"),
    ({"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(2, 32)}, "SDXL LoRA"),
])
def test_adapters_that_are_not_plain_lora_are_refused(pipeline, tmp_path, extra, expected):
    model = load_model(pipeline)
    state = to_kohya(random_lora(model.unet, "unet", {"to_q"}, 2, seed=1), 2) | extra
    with pytest.raises(UnsupportedError, match=expected):
        apply_loras(model, [(str(write_lora(state, tmp_path / "x.safetensors")), 1.0)])


def test_text_encoder_lora_on_a_unet_only_model_and_half_pairs(pipeline, tmp_path):
    model = load_model(pipeline)
    text = random_lora(model.text_encoder, "text_encoder", {"q_proj"}, 2, seed=1)
    unet_only = load_model(pipeline / "unet")
    with pytest.raises(UnsupportedError, match="changes the text_encoder"):
        apply_loras(unet_only, [(str(write_lora(text, tmp_path / "te.safetensors")), 1.0)])
    half = {k: v for k, v in random_lora(model.unet, "unet", {"to_q"}, 2, seed=1).items() if "lora_B" not in k
            or "down_blocks.0.attentions.0." not in k}
    with pytest.raises(ModelLoadError, match="has lora_A but not its partner"):
        apply_loras(model, [(str(write_lora(half, tmp_path / "half.safetensors")), 1.0)])


def test_bad_files_and_strengths(pipeline, tmp_path, capsys):
    assert _convert_with(pipeline, str(tmp_path / "missing.safetensors"), tmp_path) == 2
    assert "does not exist" in _error_line(capsys)
    assert _convert_with(pipeline, f"{tmp_path / 'missing.safetensors'}:inf", tmp_path) == 2
    assert "finite" in _error_line(capsys)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    assert _convert_with(pipeline, str(garbage), tmp_path) == 2
    assert "header claims" in _error_line(capsys)
