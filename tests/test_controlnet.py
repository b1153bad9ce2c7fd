"""ControlNet: a tiny SD 1.x pipeline (tests/tiny.py) plus a tiny ControlNetModel built from its UNet, converted to
ONNX Runtime and LiteRT and run by the torch-free runtime against diffusers' StableDiffusionControlNetPipeline at
the same latents; Core ML converts with structural checks; bad inputs get one clear error each; canny matches
cv2.Canny where OpenCV is installed."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgediff.cli import main
from edgediff.errors import RecipeError, UnsupportedError
from edgediff.runtime import BundlePipeline
from edgediff.runtime import control as ctl
from edgediff.runtime.pipeline import initial_noise
from tests.tiny import write_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a large red circle on a blue background, top left"
STEPS = 6
MIN_PSNR_DB = 30.0


def make_controlnet(unet, folder: Path, seed: int = 1) -> Path:
    """ControlNetModel.from_unet with its zero-initialised output convolutions given random weights, so the
    residuals are not zero (a test of zeros could not fail)."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0.0, 0.3)
            module.bias.normal_(0.0, 0.1)
    controlnet.save_pretrained(folder, safe_serialization=True)
    return folder


def make_sdxl_like_controlnet(folder: Path) -> Path:
    """A config-only ControlNet of another family (SDXL's cross-attention width, 3 blocks, text_time)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "ControlNetModel", "in_channels": 4, "block_out_channels": [32, 64, 64],
              "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
              "layers_per_block": 2, "cross_attention_dim": 2048, "addition_embed_type": "text_time",
              "norm_num_groups": 8, "conditioning_embedding_out_channels": [8, 16, 16, 16]}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(pipeline folder, controlnet folder)."""
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("controlnet")
    model = write_tiny_pipeline(root / "tiny-sd")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    return model, make_controlnet(unet, root / "tiny-controlnet")


def convert(model: Path, controlnet: Path | None, output: Path, target: str, *extra: str) -> Path:
    args = ["convert", str(model), "--target", target, "--output", str(output), "--no-profile",
            "--set", f"pipeline.num_inference_steps={STEPS}", "--set", "verify.samples=2", *extra]
    if controlnet is not None:
        args += ["--controlnet", str(controlnet)]
    assert main(args) == 0
    return output / target


@pytest.fixture(scope="module")
def onnx_bundle(models, tmp_path_factory):
    return convert(*models, tmp_path_factory.mktemp("cn-onnx"), "onnxruntime")


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A synthetic photo: discs and bars of colour on a gradient, with noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                      np.full_like(xx, 80)], axis=2).astype(np.float64)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, height / 3)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def diffusers_controlnet_image(model: Path, controlnet: Path, control_image: np.ndarray, seed: int, steps: int,
                               guidance: float, scale: float, latent_shape) -> np.ndarray:
    """The reference: diffusers' StableDiffusionControlNetPipeline with the runtime's numpy initial noise; the
    control image given as a PIL image, as users give it."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline
    from PIL import Image

    base = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionControlNetPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        controlnet=ControlNetModel.from_pretrained(str(controlnet)), scheduler=base.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    height, width = control_image.shape[:2]
    out = pipe(PROMPT, image=Image.fromarray(control_image), num_inference_steps=steps, guidance_scale=guidance,
               controlnet_conditioning_scale=scale, latents=torch.from_numpy(initial_noise(seed, latent_shape)),
               height=height, width=width, output_type="np").images[0]
    return (out * 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---- conversion and end-to-end parity ---------------------------------------------------------------------------


def test_onnx_bundle_has_controlnet_and_residual_inputs(onnx_bundle):
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    components = manifest["components"]
    assert set(components) == {"text_encoder", "unet", "vae_decoder", "controlnet"}
    cn_outputs = [o["name"] for o in components["controlnet"]["outputs"]]
    assert cn_outputs == [f"down_residual_{k}" for k in range(12)] + ["mid_residual"]  # SD 1.x: 12 skips + mid
    unet_inputs = [i["name"] for i in components["unet"]["inputs"]]
    assert unet_inputs == ["sample", "timestep", "encoder_hidden_states", *cn_outputs]
    cond = next(i for i in components["controlnet"]["inputs"] if i["name"] == "controlnet_cond")
    assert cond["shape"] == [2, 3, 64, 64]  # the UNet's CFG batch, at the pixel size
    assert manifest["pipeline"]["controlnet"]["image_size"] == [64, 64]
    for name in ("unet", "controlnet"):
        assert components[name]["verify"]["status"] == "passed", components[name]["verify"]
    assert manifest["verify"]["end_to_end"]["status"] == "passed"


@pytest.mark.parametrize("kind, scale", [("raw", 1.0), ("canny", 0.7)])
def test_onnx_matches_diffusers_controlnet_pipeline(models, onnx_bundle, kind, scale):
    model, controlnet = models
    pipe = BundlePipeline.load(onnx_bundle)
    picture = photo(64, 64, seed=2)
    hint = ctl.ControlInput(ctl.prepare(picture, kind, 64, 64), scale, kind)
    result = pipe.generate(PROMPT, seed=3, control=hint)
    # diffusers gets the hint image itself (for canny: the edge map, as its docs make it with cv2.Canny)
    given = picture if kind == "raw" else np.repeat(ctl.canny(picture)[..., None], 3, axis=2)
    expected = diffusers_controlnet_image(model, controlnet, given, 3, result.steps, result.guidance, scale,
                                          pipe.latent_shape)
    value = psnr(result.image, expected)
    print(f"\nonnxruntime controlnet ({kind}, scale {scale}): PSNR {value:.1f} dB vs diffusers")
    assert value >= MIN_PSNR_DB
    plain = pipe.generate(PROMPT, seed=3)  # zeros for the residuals: the control image must matter
    assert psnr(plain.image, result.image) < value


@pytest.mark.slow  # a full conversion beside the fast suite's own; `python -m pytest -m slow`
def test_zero_residuals_are_the_plain_unet(models, onnx_bundle, tmp_path):
    """Without a control image a ControlNet bundle gives the plain pipeline's image (same weights)."""
    plain_bundle = convert(models[0], None, tmp_path / "plain", "onnxruntime", "--set", "verify.end_to_end=false")
    with_cn = BundlePipeline.load(onnx_bundle).generate(PROMPT, seed=5).image
    without = BundlePipeline.load(plain_bundle).generate(PROMPT, seed=5).image
    assert psnr(with_cn, without) >= 45.0


@pytest.mark.slow
def test_litert_matches_diffusers_controlnet_pipeline(models, tmp_path):
    pytest.importorskip("ai_edge_litert")
    model, controlnet = models
    bundle = convert(model, controlnet, tmp_path / "litert", "litert")
    pipe = BundlePipeline.load(bundle)
    assert pipe.manifest.backend == "litert" and pipe.control is not None
    picture = photo(64, 64, seed=4)
    result = pipe.generate(PROMPT, seed=7, control=ctl.ControlInput(ctl.prepare(picture, "raw", 64, 64), 1.0))
    expected = diffusers_controlnet_image(model, controlnet, picture, 7, result.steps, result.guidance, 1.0,
                                          pipe.latent_shape)
    value = psnr(result.image, expected)
    print(f"\nlitert controlnet: PSNR {value:.1f} dB vs diffusers")
    assert value >= MIN_PSNR_DB


@pytest.mark.slow  # a full conversion beside the fast suite's own; `python -m pytest -m slow`
def test_coreml_converts_with_structural_checks(models, tmp_path):
    pytest.importorskip("coremltools")
    model, controlnet = models
    bundle = convert(model, controlnet, tmp_path / "coreml", "coreml", "--components", "unet,controlnet",
                     "--set", "verify.end_to_end=false")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ("unet", "controlnet"):
        record = manifest["components"][name]["verify"]
        assert record["status"] == "skipped" and "macOS" in record["reason"]
        checks = record["structural"]
        assert checks and all(c["passed"] for c in checks["checks"]), checks
    residuals = [o["name"] for o in manifest["components"]["controlnet"]["outputs"]]
    assert set(residuals) <= {i["name"] for i in manifest["components"]["unet"]["inputs"]}


# ---- bad inputs -----------------------------------------------------------------------------------------------


def test_controlnet_of_another_family_is_refused_at_the_door(models, tmp_path, capsys):
    model, _ = models
    other = make_sdxl_like_controlnet(tmp_path / "sdxl-controlnet")
    code = main(["convert", str(model), "--controlnet", str(other), "--output", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "SDXL ControlNet" in err and "cross_attention_dim: ControlNet 2048, UNet 32" in err
    assert "block_out_channels" in err


def test_controlnet_folder_is_checked_like_model_folders(models, tmp_path):
    from edgediff.errors import ModelLoadError
    from edgediff.model.controlnet import check_controlnet_folder

    _, controlnet = models
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_controlnet_folder(tmp_path / "missing")
    copy = tmp_path / "copy"
    shutil.copytree(controlnet, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "cross_attention_dim": "wide"}))
    with pytest.raises(ModelLoadError, match="cross_attention_dim"):
        check_controlnet_folder(copy)
    (copy / "config.json").write_text(json.dumps({**config, "_class_name": "Evil"}))
    with pytest.raises(UnsupportedError, match="ControlNetModel"):
        check_controlnet_folder(copy)
    (copy / "config.json").write_text(json.dumps(config))
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x")
    (copy / "diffusion_pytorch_model.safetensors").unlink()
    (copy / "diffusion_pytorch_model.safetensors").symlink_to(outside)
    with pytest.raises(ModelLoadError, match="outside"):
        check_controlnet_folder(copy)


def test_control_image_of_wrong_size_or_mode(tmp_path, onnx_bundle, capsys):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.fromarray(photo(32, 48)).save(small)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 7).astype(np.uint16)).save(sixteen)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo(64, 64)).convert("CMYK").save(cmyk)
    colour = tmp_path / "colour.png"
    Image.fromarray(photo(64, 64)).save(colour)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    cases = [(small, "raw", "is 48x32"), (sixteen, "raw", "mode I;16"), (cmyk, "canny", "mode CMYK"),
             (colour, "depth", "not a depth map"), (not_image, "raw", "not a readable image")]
    for path, kind, message in cases:
        code = main(["generate", str(onnx_bundle), "--prompt", "x", "-o", str(tmp_path / "o.png"), "-q",
                     "--control-image", str(path), "--control-kind", kind])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (path, err)
    # a 16-bit depth map is what --control-kind depth is for: min-max normalised to [0, 1], three channels
    with Image.open(sixteen) as img:
        depth = ctl.prepare(img, "depth", 64, 64)
    assert depth.shape == (1, 3, 64, 64) and depth.min() == 0.0 and depth.max() == 1.0
    np.testing.assert_array_equal(depth[0, 0], depth[0, 2])


def test_control_scale_must_be_finite(tmp_path, onnx_bundle, capsys):
    for value in ("nan", "inf", "-1", "1e9"):
        code = main(["generate", str(onnx_bundle), "--prompt", "x", "-o", str(tmp_path / "o.png"),
                     "--control-image", "missing.png", "--control-scale", value])
        assert code == 2 and "control scale" in capsys.readouterr().err
    for value in (math.nan, math.inf, -0.5):
        with pytest.raises(RecipeError, match="control scale"):
            ctl.check_scale(value)
    pipe = BundlePipeline.load(onnx_bundle)
    with pytest.raises(RecipeError, match="control scale"):
        pipe.generate("x", control=ctl.ControlInput(np.zeros((1, 3, 64, 64), np.float32), math.nan))


def test_control_image_for_a_bundle_without_controlnet(tmp_path_factory, tmp_path, capsys):
    from PIL import Image

    from tests.shared_bundle import tiny_ort_bundle

    bundle = tiny_ort_bundle(tmp_path_factory)  # the run's shared tiny bundle: converted without a ControlNet
    image = tmp_path / "c.png"
    Image.fromarray(photo(64, 64)).save(image)
    code = main(["generate", str(bundle), "--prompt", "x", "-o", str(tmp_path / "o.png"), "--control-image",
                 str(image)])
    assert code == 2 and "has no ControlNet" in capsys.readouterr().err


def test_generate_cli_with_canny(tmp_path, onnx_bundle):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(photo(64, 64, seed=9)).save(image)
    out = tmp_path / "out.png"
    assert main(["generate", str(onnx_bundle), "--prompt", PROMPT, "-o", str(out), "-q", "--control-image",
                 str(image), "--control-kind", "canny", "--control-scale", "0.8"]) == 0
    pipe = BundlePipeline.load(onnx_bundle)
    hint = ctl.read_control(image, "canny", 64, 64, 0.8)
    with Image.open(out) as written:
        np.testing.assert_array_equal(np.asarray(written), pipe.generate(PROMPT, seed=0, control=hint).image)


# ---- canny and depth hints --------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholds", [(100, 200), (30, 90), (150.5, 60)])
def test_canny_matches_opencv(thresholds):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (test extra) not installed")
    for seed in range(3):
        picture = photo(96, 80, seed)
        np.testing.assert_array_equal(ctl.canny(picture, *thresholds), cv2.Canny(picture, *thresholds))
        gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(ctl.canny(gray, *thresholds), cv2.Canny(gray, *thresholds))
    blurred = ctl.gaussian_blur(photo(96, 80), 1.4).astype(int)
    assert np.abs(blurred - cv2.GaussianBlur(photo(96, 80), (0, 0), 1.4).astype(int)).max() <= 1


def test_canny_properties():
    """What holds without OpenCV: a step edge gives one thin line, a flat image none, higher thresholds fewer."""
    step = np.zeros((32, 32), np.uint8)
    step[:, 16:] = 200
    edges = ctl.canny(step)
    assert set(np.unique(edges)) == {0, 255}
    assert (edges[:, 15:17] == 255).any(axis=1).all() and (edges[:, :14] == 0).all() and (edges[:, 18:] == 0).all()
    assert (edges == 255).sum(axis=1).max() == 1  # non-maximum suppression: one pixel wide
    assert not ctl.canny(np.full((16, 16), 77, np.uint8)).any()
    picture = photo(64, 64, 1)
    assert (ctl.canny(picture, 200, 400) > 0).sum() <= (ctl.canny(picture, 50, 100) > 0).sum()
    with pytest.raises(RecipeError):
        ctl.canny(picture, -1, 10)


def test_depth_hint_from_8_bit_grayscale():
    from PIL import Image

    plane = (np.arange(64)[None, :] * 4).repeat(64, 0).astype(np.uint8)
    hint = ctl.prepare(Image.fromarray(plane), "depth", 64, 64)
    np.testing.assert_allclose(hint[0, 1], plane / 255.0, atol=1e-7)


# ---- slimming: int8 calibration and pruning ------------------------------------------------------------------


def _resolved(model: Path, controlnet: Path, steps: list | None = None, precision: str = "fp32"):
    from edgediff.plan import resolve
    from edgediff.recipe import Recipe, SlimStep

    recipe = Recipe()
    recipe.model.source, recipe.model.controlnet = str(model), str(controlnet)
    recipe.backend.precision = precision
    recipe.pipeline.num_inference_steps = 3
    recipe.slim.steps = [SlimStep(kind, dict(options)) for kind, options in (steps or [])]
    return resolve(recipe)


def test_calibration_feeds_the_unet_real_controlnet_residuals(models):
    import diffusers
    import torch

    from edgediff.slim import calibration as calib

    plan = _resolved(*models)
    model, by_name = plan.model, {c.name: c for c in plan.components}
    settings = calib.CalibrationSettings(prompts=["a red circle"], guidance_scales=[5.0],
                                         scheduler="EulerDiscreteScheduler", num_inference_steps=3, spread=1)
    data = calib.capture(model, plan.components, settings,
                         lambda: diffusers.EulerDiscreteScheduler.from_config(model.scheduler_config))
    assert data.count("unet") == data.count("controlnet") == 3 + 1
    names = [s.name for s in by_name["unet"].inputs]
    for unet_feed, cn_feed in zip(data.samples["unet"], data.samples["controlnet"]):
        assert set(unet_feed) == set(names)
        residuals = by_name["controlnet"].run_torch(cn_feed)  # the component the bundle ships, on what was recorded
        for name, value in residuals.items():
            np.testing.assert_allclose(unet_feed[name], value, rtol=1e-4, atol=1e-5)
        assert np.abs(unet_feed["mid_residual"]).max() > 1e-3  # real residuals, not zeros
    with torch.inference_mode():  # and the recorded trajectory is the controlled one: the UNet sees the residuals
        out = by_name["unet"].run_torch(data.samples["unet"][0])["noise_pred"]
        plain = model.unet(*(torch.from_numpy(data.samples["unet"][0][k]) for k in names[:3])).sample.numpy()
    assert not np.allclose(out, plain, atol=1e-4)


@pytest.mark.slow
def test_int8_bundle_with_controlnet(models, tmp_path):
    model, controlnet = models
    recipe = tmp_path / "int8.toml"
    recipe.write_text('version = 1\n[[slim.steps]]\nkind = "quantize"\ncalibration_samples = 8\neval_samples = 4\n'
                      'prompts = ["a red circle", "a dog"]\nguidance_scales = [7.5]\ntarget_psnr_db = 25.0\n'
                      'components = ["unet"]\n'
                      f'cache_dir = "{tmp_path / "cache"}"\n')
    bundle = convert(model, controlnet, tmp_path / "int8", "onnxruntime", "--precision", "int8", "--recipe",
                     str(recipe))
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the UNet's plan was searched on samples carrying real ControlNet residuals (calibration.capture); only the
    # UNet is quantized here: with 8 samples the tiny random controlnet / vae_decoder miss the default int8 gate
    assert set(manifest["precision_plan"]["components"]) == {"unet"}
    pipe = BundlePipeline.load(bundle)
    hint = ctl.ControlInput(ctl.prepare(photo(64, 64, 2), "raw", 64, 64), 1.0)
    expected = diffusers_controlnet_image(model, controlnet, photo(64, 64, 2), 3, STEPS, 7.5, 1.0, pipe.latent_shape)
    value = psnr(pipe.generate(PROMPT, seed=3, control=hint).image, expected)
    print(f"\nint8 onnxruntime controlnet: PSNR {value:.1f} dB vs diffusers fp32")
    assert value >= 15.0


def test_pruned_unet_with_controlnet_is_refused_plainly(models):
    with pytest.raises(UnsupportedError, match="prune only up blocks, or convert without --controlnet"):
        _resolved(*models, steps=[("prune", {"preset": "bk-small"})])


def test_pruned_up_path_keeps_the_controlnet(models):
    """Dropping up-block attention and the mid block leaves the skip connections the residuals feed: the pair still
    builds and the pruned UNet takes the real residuals."""
    plan = _resolved(*models, steps=[("prune", {"spec": {"drop_attention_up": [1], "drop_mid": True}})])
    by_name = {c.name: c for c in plan.components}
    assert plan.model.unet.mid_block is None
    residuals = by_name["controlnet"].run_torch(by_name["controlnet"].example_inputs(0))
    feed = {**by_name["unet"].example_inputs(0), **residuals}
    assert np.isfinite(by_name["unet"].run_torch(feed)["noise_pred"]).all()
