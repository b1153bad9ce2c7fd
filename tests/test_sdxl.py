"""SDXL end to end on tiny real pipelines (tests/sdxl_tiny.py): `edgediff convert` to ONNX Runtime and LiteRT
verifies every component and one image against PyTorch, and the torch-free runtime's image matches diffusers'
own StableDiffusionXLPipeline at the same initial latent (and, for SDXL-Turbo's ancestral sampler, the same
per-step noise). Core ML converts and passes its structural checks (its predictions need macOS)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgediff.cli import main  # noqa: E402
from edgediff.runtime import BundlePipeline  # noqa: E402
from edgediff.runtime.golden import read_tensor  # noqa: E402
from edgediff.runtime.sdxl import SDXLBundlePipeline, time_ids  # noqa: E402
from tests.sdxl_tiny import write_tiny_sdxl  # noqa: E402

PROMPT = "a red circle on a blue background"
STEPS = 3
MIN_PSNR_DB = 35.0  # runtime vs diffusers, 8-bit images (fp32 artifacts: typically > 45 dB)


def convert(model: Path, out: Path, target: str, *extra: str) -> Path:
    code = main(["convert", str(model), "--target", target, "--output", str(out), "--no-profile",
                 "--set", "verify.samples=1", "--set", f"pipeline.num_inference_steps={STEPS}", *extra])
    assert code == 0, f"edgediff convert {model.name} --target {target} failed with exit code {code}"
    return out / target


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


_PIPES: dict[Path, object] = {}


def _reference_pipeline(model: Path):
    if model not in _PIPES:
        _PIPES[model] = diffusers.StableDiffusionXLPipeline.from_pretrained(str(model))
        _PIPES[model].set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return _PIPES[model]


def reference_image(model: Path, seed: int, steps: int, guidance: float, negative_prompt: str | None,
                    latent_shape, noisy_steps: int = 0) -> np.ndarray:
    """diffusers' StableDiffusionXLPipeline from the folder, fed the runtime's seed convention: the same initial
    latent and, where the scheduler draws noise, the runtime's per-step draws in order."""
    pipe = _reference_pipeline(model)
    rng = np.random.default_rng(seed)
    initial = rng.standard_normal(latent_shape, dtype=np.float32)
    draws = [rng.standard_normal(latent_shape, dtype=np.float32) for _ in range(noisy_steps)]
    draws.append(np.zeros(latent_shape, np.float32))  # diffusers draws on the last step too and multiplies by 0
    module = sys.modules[type(pipe.scheduler).__module__]
    with mock.patch.object(module, "randn_tensor", lambda *a, **k: torch.from_numpy(draws.pop(0)), create=True):
        out = pipe(PROMPT, negative_prompt=negative_prompt, num_inference_steps=steps, guidance_scale=guidance,
                   latents=torch.from_numpy(initial), output_type="np").images[0]
    return (out * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sdxl-models")
    return {"base": write_tiny_sdxl(root / "tiny-sdxl"), "turbo": write_tiny_sdxl(root / "tiny-sdxl-turbo", turbo=True)}


@pytest.fixture(scope="module")
def ort_base(models, tmp_path_factory) -> Path:
    return convert(models["base"], tmp_path_factory.mktemp("sdxl-ort"), "onnxruntime")


@pytest.fixture(scope="module")
def litert_turbo(tmp_path_factory) -> tuple[Path, Path]:
    """SDXL-Turbo for LiteRT, (model folder, bundle): the one turbo conversion (the runtime's turbo logic is the same
    on every backend; ONNX Runtime is covered by the base bundle). The run converts it once, for this file and
    test_large_models, whose chunked text encoder it carries: text_encoder_2 in chunks, text_encoder and the UNet
    whole (tests/shared_bundle.py)."""
    pytest.importorskip("litert_torch")
    from tests.shared_bundle import sdxl_turbo_litert_bundle

    model, bundle, _ = sdxl_turbo_litert_bundle(tmp_path_factory)
    return model, bundle


def test_manifest_carries_sdxl(ort_base):
    manifest = json.loads((ort_base / "manifest.json").read_text())
    assert list(manifest["components"]) == ["text_encoder", "text_encoder_2", "unet", "vae_decoder"]
    for name, entry in manifest["components"].items():
        assert entry["verify"]["status"] == "passed" and entry["verify"]["psnr_db"] > 60, (name, entry["verify"])
    te2 = manifest["components"]["text_encoder_2"]
    assert [o["name"] for o in te2["outputs"]] == ["hidden_states", "text_embeds"]
    unet = manifest["components"]["unet"]
    assert [i["name"] for i in unet["inputs"]] == ["sample", "timestep", "encoder_hidden_states", "text_embeds",
                                                   "time_ids"]
    assert [i["shape"] for i in unet["inputs"][2:]] == [[2, 77, 64], [2, 32], [2, 6]]
    pipe = manifest["pipeline"]
    assert pipe["vae_scaling_factor"] == pytest.approx(0.13025)
    sdxl = pipe["sdxl"]
    assert sdxl["text_encoders"] == ["text_encoder", "text_encoder_2"] and sdxl["force_zeros_for_empty_prompt"]
    assert sdxl["time_ids"] == {"original_size": [64, 64], "crops_coords_top_left": [0, 0], "target_size": [64, 64]}
    assert sdxl["vae_force_upcast"] is True
    assert "tokenizer_2/special_tokens_map.json" in manifest["files"]
    assert manifest["verify"]["end_to_end"]["status"] == "passed"


def test_time_ids_like_diffusers():
    assert time_ids((1024, 1024), (0, 0), (1024, 1024)).tolist() == [[1024, 1024, 0, 0, 1024, 1024]]
    refiner = diffusers.StableDiffusionXLImg2ImgPipeline
    assert "aesthetic_score" in refiner._get_add_time_ids.__code__.co_varnames  # the refiner's variant exists
    assert time_ids((768, 512), (8, 16), (768, 512), aesthetic_score=6.0).tolist() == [[768, 512, 8, 16, 6.0]]


@pytest.mark.parametrize("negative_prompt, guidance", [(None, 5.0), ("blurry, grey", 5.0), (None, 1.0)])
def test_runtime_matches_diffusers(models, ort_base, negative_prompt, guidance):
    pipe = BundlePipeline.load(ort_base)
    assert isinstance(pipe, SDXLBundlePipeline)
    got = pipe.generate(PROMPT, seed=7, steps=STEPS, guidance=guidance, negative_prompt=negative_prompt or "").image
    ref = reference_image(models["base"], 7, STEPS, guidance, negative_prompt, pipe.latent_shape)
    assert got.shape == ref.shape == (64, 64, 3)
    assert psnr(got, ref) >= MIN_PSNR_DB, psnr(got, ref)


def test_turbo_one_unet_call_per_step_matches_diffusers(litert_turbo):
    model, bundle = litert_turbo
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["components"]["unet"]["inputs"][0]["shape"][0] == 1  # guidance 0: no CFG batch
    sched = manifest["pipeline"]["scheduler"]
    assert sched["class_name"] == "EulerAncestralDiscreteScheduler" and sched["config"]["timestep_spacing"] == "trailing"
    pipe = BundlePipeline.load(bundle)
    result = pipe.generate(PROMPT, seed=11)
    assert result.steps == 2 and len(result.timings.unet_step_ms) == 2
    ref = reference_image(model, 11, 2, 0.0, None, pipe.latent_shape, noisy_steps=1)
    assert psnr(result.image, ref) >= MIN_PSNR_DB, psnr(result.image, ref)


def test_generate_and_golden_cli(ort_base, tmp_path):
    image = tmp_path / "sdxl.png"
    assert main(["generate", str(ort_base), "--prompt", PROMPT, "--steps", "2", "-o", str(image)]) == 0
    from PIL import Image

    assert Image.open(image).size == (64, 64)
    golden = tmp_path / "golden"
    assert main(["bundle-golden", str(ort_base), "--output", str(golden)]) == 0
    doc = json.loads((golden / "golden.json").read_text())
    assert doc["tokens"]["input_ids_2"][-1] == 0  # the second tokenizer pads with "!" (id 0), the first does not
    assert doc["tokens"]["input_ids"][-1] == 49407
    ids = read_tensor(golden, doc["tensors"]["prompt_time_ids"])
    assert ids.tolist() == [[64, 64, 0, 0, 64, 64]]
    pooled = read_tensor(golden, doc["tensors"]["prompt_text_embeds"])
    assert pooled.shape == (1, 32) and np.abs(pooled).max() > 0
    negative = read_tensor(golden, doc["tensors"]["negative_prompt_embeds"])
    assert negative.shape == (1, 77, 64) and not negative.any()  # force_zeros_for_empty_prompt



def test_apps_refuse_sdxl_bundles_clearly(ort_base, tmp_path, capsys):
    assert main(["bundle", str(ort_base), "--app", "android", "--output", str(tmp_path / "app")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "SDXL" in err[0] and "text_embeds" in err[0], err


def test_litert_converts_and_matches_diffusers(litert_turbo):
    model, bundle = litert_turbo
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert all(c["verify"]["status"] == "passed" for c in manifest["components"].values())
    assert manifest["verify"]["end_to_end"]["status"] == "passed"
    pipe = BundlePipeline.load(bundle)
    got = pipe.generate(PROMPT, seed=5, steps=2).image
    ref = reference_image(model, 5, 2, 0.0, None, pipe.latent_shape, noisy_steps=1)
    assert psnr(got, ref) >= MIN_PSNR_DB, psnr(got, ref)


@pytest.mark.slow  # a full conversion beside the fast suite's own; `python -m pytest -m slow`
def test_coreml_converts_with_structural_checks(models, tmp_path):
    pytest.importorskip("coremltools")
    bundle = convert(models["turbo"], tmp_path, "coreml", "--set", "pipeline.guidance_scale=0")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["components"]) == {"text_encoder", "text_encoder_2", "unet", "vae_decoder"}
    for name, entry in manifest["components"].items():
        structural = entry["verify"]["structural"]
        assert structural["passed"] and all(c["passed"] for c in structural["checks"]), (name, structural)
        if sys.platform != "darwin":
            assert entry["verify"]["status"] == "skipped" and "macOS" in entry["verify"]["reason"]
    assert "force_upcast" in manifest["pipeline"]["sdxl"]["vae_note"]  # an fp16 SDXL VAE is flagged
    unet_inputs = [i["name"] for i in manifest["components"]["unet"]["inputs"]]
    assert unet_inputs == ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]


# ---- single-file checkpoints -----------------------------------------------------------------------------------


def _plain(module) -> dict:
    config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "transformers_version"}


@pytest.mark.parametrize("refiner", [False, True])
def test_single_file_loads_bit_identical_to_its_folder(refiner, tmp_path):
    from edgediff.model.load import load_model
    from edgediff.model.single_file import load_single_file
    from tests.ldm_layout_sdxl import tiny_sdxl_checkpoint

    path, folder = tiny_sdxl_checkpoint(tmp_path, refiner)
    single, reference = load_single_file(path), load_model(folder)
    parts = ("text_encoder_2", "unet", "vae") + (() if refiner else ("text_encoder",))
    for part in parts:
        got, want = getattr(single, part), getattr(reference, part)
        a, b = got.state_dict(), want.state_dict()
        assert a.keys() == b.keys(), part
        assert all(torch.equal(a[k], b[k]) for k in a), (part, [k for k in a if not torch.equal(a[k], b[k])][:3])
    assert (single.text_encoder is None) == refiner
    unet_got, unet_want = _plain(single.unet), _plain(reference.unet)
    # heads are not in the shapes (the tiny widths are not SDXL's); a level without attention has no depth to read
    skip = ("attention_head_dim", "sample_size", "transformer_layers_per_block")
    assert {k: v for k, v in unet_got.items() if k not in skip} == {k: v for k, v in unet_want.items()
                                                                    if k not in skip}

    def depths(cfg):
        d = cfg["transformer_layers_per_block"]
        d = d if isinstance(d, list) else [d] * len(cfg["down_block_types"])
        return [n for n, kind in zip(d, cfg["down_block_types"]) if kind.startswith("CrossAttn")]

    assert depths(unet_got) == depths(unet_want)
    assert single.vae.config.scaling_factor == pytest.approx(0.13025) and single.vae.config.force_upcast
    assert single.details["single_file"]["family"] == ("sdxl-refiner" if refiner else "sdxl")
    assert single.pipeline_config.get("requires_aesthetics_score", False) == refiner
    pad = json.loads((single.tokenizer_2_dir / "special_tokens_map.json").read_text())["pad_token"]
    assert pad == "!"


@pytest.mark.parametrize("refiner", [False, True])
def test_full_size_sdxl_configs_come_back_from_shapes_alone(refiner):
    """The real SDXL base / refiner architectures built on the meta device from the shipped configs, written in the
    original layout: detection from names and shapes gives back every config value."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from edgediff.model.single_file import detect
    from edgediff.model.single_file_sdxl import read_config
    from edgediff.model.tensor_file import TensorFile
    from tests.ldm_layout_sdxl import to_ldm_sdxl

    configs = {"unet": read_config("unet_refiner.json" if refiner else "unet.json"), "vae": read_config("vae.json"),
               "text_encoder_2": read_config("text_encoder_2.json")}
    if not refiner:
        configs["text_encoder"] = read_config("text_encoder.json")
    with torch.device("meta"):
        pipe = type("Pipe", (), {})()
        pipe.unet = UNet2DConditionModel.from_config(configs["unet"])
        pipe.vae = AutoencoderKL.from_config(configs["vae"])
        pipe.text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(configs["text_encoder_2"]))
        pipe.text_encoder = None if refiner else CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
    shapes = {k: tuple(v.shape) for k, v in to_ldm_sdxl(pipe).items()}
    found = detect(TensorFile(Path("sd_xl.safetensors"), shapes))
    assert sum(p.numel() for p in pipe.unet.parameters()) > (2.5e9 if not refiner else 2.2e9)
    for part, real in configs.items():
        differ = {k: (found.configs[part].get(k), v) for k, v in real.items()
                  if not k.startswith("_") and k != "architectures" and found.configs[part].get(k) != v}
        assert not differ, (part, differ)


@pytest.mark.parametrize("granularity", ["block", "layer"])
def test_split_unet_carries_the_added_conditioning(granularity):
    """Chunked SDXL UNets (LiteRT over 2 GB, Core ML) feed text_embeds and time_ids to the prelude: chained chunks
    give the whole UNet's output exactly."""
    from edgediff.model.split import run_chunks, split_unet
    from tests.sdxl_tiny import build_tiny_sdxl

    unet = build_tiny_sdxl().unet.eval()
    gen = torch.Generator().manual_seed(0)
    feed = {"sample": torch.randn(2, 4, 8, 8, generator=gen), "timestep": torch.tensor([500.0, 500.0]),
            "encoder_hidden_states": torch.randn(2, 77, 64, generator=gen),
            "text_embeds": torch.randn(2, 32, generator=gen), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    chunks = split_unet(unet, parts=3, granularity=granularity)
    assert {"text_embeds", "time_ids"} <= set(chunks[0].input_names)
    with torch.no_grad():
        whole = unet(feed["sample"], feed["timestep"], feed["encoder_hidden_states"], return_dict=False,
                     added_cond_kwargs={"text_embeds": feed["text_embeds"], "time_ids": feed["time_ids"]})[0]
        chained = run_chunks(chunks, feed)["noise_pred"]
    assert torch.equal(whole, chained)


def test_refiner_converts_and_generates(tmp_path):
    """The refiner: text_encoder_2 alone, 5 time ids with the aesthetic score (the negative half gets the negative
    score), the empty negative prompt encoded (force_zeros_for_empty_prompt is off)."""
    model = write_tiny_sdxl(tmp_path / "tiny-refiner", refiner=True)
    bundle = convert(model, tmp_path / "out", "onnxruntime")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert list(manifest["components"]) == ["text_encoder_2", "unet", "vae_decoder"]
    assert manifest["components"]["unet"]["inputs"][4]["shape"] == [2, 5]
    sdxl = manifest["pipeline"]["sdxl"]
    assert sdxl["requires_aesthetics_score"] and not sdxl["force_zeros_for_empty_prompt"]
    assert manifest["verify"]["end_to_end"]["status"] == "passed"
    pipe = BundlePipeline.load(bundle)
    assert pipe.time_ids.tolist() == [[64, 64, 0, 0, 6.0]] and pipe.negative_time_ids.tolist() == [[64, 64, 0, 0, 2.5]]
    result = pipe.generate(PROMPT, seed=1, steps=2, keep_intermediates=True)
    assert result.image.shape == (64, 64, 3) and result.intermediates["negative_prompt_embeds"]["text_embeds"].any()
