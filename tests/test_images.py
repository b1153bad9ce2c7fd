"""Images in: image-to-image and inpainting through the torch-free runtime against diffusers' own
StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline at the same seed, on real converted bundles
(ONNX Runtime and LiteRT, tiny pipelines built in code, the default model), plus every bad input's one error.

Parity at the same seed: the runtime draws its normals from np.random.default_rng(seed) in diffusers' call order
(edgediff/runtime/images.py); diffusers is given the same draws by replacing its `randn_tensor` (in the VAE's
distribution and in the pipeline) with a function that takes the next draw from the same generator.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgediff.errors import ImageInputError  # noqa: E402
from edgediff.runtime import BundlePipeline  # noqa: E402
from edgediff.runtime.images import ImageInputs, downsample_nearest, read_image, read_mask  # noqa: E402
from edgediff.runtime.schedulers import TableScheduler  # noqa: E402
from edgediff.runtime.schedulers.partial import partial_start  # noqa: E402
from tests.test_runtime import DEFAULT_MODEL, PROMPT, TOKENIZER, convert, default_model_present, psnr  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SD15_SCHEDULER = Path("/work/shared/architectures/stable-diffusion-v1-5/scheduler")
MIN_PSNR_DB = 30.0


# ---- the partial start of the schedule, against diffusers' schedulers --------------------------------------


@pytest.mark.parametrize("name, extra", [
    ("DDIMScheduler", {}), ("PNDMScheduler", {}), ("EulerDiscreteScheduler", {}),
    ("EulerDiscreteScheduler", {"use_karras_sigmas": True}), ("HeunDiscreteScheduler", {}),
    ("DPMSolverMultistepScheduler", {}), ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
])
@pytest.mark.parametrize("steps, strength", [(10, 0.6), (7, 0.3), (12, 1.0)])
def test_partial_start_matches_diffusers(name, extra, steps, strength):
    """get_timesteps + set_begin_index + add_noise + the sliced steps, with a stand-in model (a fixed function
    of the input), and add_noise at every later step (4-channel inpainting's blend)."""
    config = {**json.loads((SD15_SCHEDULER / "scheduler_config.json").read_text()), **extra}
    ref = getattr(diffusers, name).from_config(config)
    ref.set_timesteps(steps)
    t_start = max(steps - min(int(steps * strength), steps), 0)
    timesteps = ref.timesteps[t_start * ref.order:]
    if hasattr(ref, "set_begin_index"):
        ref.set_begin_index(t_start * ref.order)
    rng = np.random.default_rng(0)
    clean, noise = (rng.standard_normal((1, 4, 8, 8), dtype=np.float32) for _ in range(2))

    def model(x: np.ndarray, t: float) -> np.ndarray:
        return (np.float32(0.3) * x + np.float32(np.cos(t / 100.0))).astype(np.float32)

    part = partial_start(name, config, steps, strength)
    table = TableScheduler(part.tables)
    assert len(table) == len(timesteps) and part.steps == steps - t_start
    np.testing.assert_allclose(table.timesteps, timesteps.numpy(), rtol=0, atol=1e-3)
    x_ref = ref.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), timesteps[:1])
    x = part.add_noise(clean, noise, 0)
    np.testing.assert_allclose(x, x_ref.numpy(), rtol=1e-6, atol=1e-6)
    for i, t in enumerate(timesteps):
        out = model(ref.scale_model_input(x_ref, t).numpy(), float(t))
        x_ref = ref.step(torch.from_numpy(out), t, x_ref, return_dict=False)[0]
        x = table.step(model(table.scale_model_input(x, i), float(table.timesteps[i])), i, x)
        np.testing.assert_allclose(x, x_ref.numpy(), rtol=1e-4, atol=1e-4 * float(np.abs(x).max()))
        if i < len(timesteps) - 1:
            blend_ref = ref.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), timesteps[i + 1: i + 2])
            np.testing.assert_allclose(part.add_noise(clean, noise, i + 1), blend_ref.numpy(), rtol=1e-6, atol=1e-6)


def test_partial_start_refuses_what_it_cannot_do():
    from edgediff.errors import UnsupportedError

    config = json.loads((SD15_SCHEDULER / "scheduler_config.json").read_text())
    with pytest.raises(UnsupportedError, match="UniPCMultistepScheduler.*--scheduler"):
        partial_start("UniPCMultistepScheduler", config, 10, 0.5)
    with pytest.raises(ImageInputError, match=r"strength must be in \(0, 1\]"):
        partial_start("DDIMScheduler", config, 10, 1.5)
    with pytest.raises(ImageInputError, match="keeps 0 of 10 steps"):
        partial_start("DDIMScheduler", config, 10, 0.05)


# ---- image and mask preprocessing, against diffusers' processors -------------------------------------------


def _write(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_preprocessing_matches_diffusers(tmp_path):
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    mask = rng.integers(0, 256, (64, 48), dtype=np.uint8)
    image_file, mask_file = _write(tmp_path / "i.png", pixels), _write(tmp_path / "m.png", mask)
    ref_image = VaeImageProcessor(vae_scale_factor=8).preprocess(Image.open(image_file), height=64, width=48)
    np.testing.assert_array_equal(read_image(image_file, 64, 48), ref_image.numpy())
    mask_processor = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True,
                                       do_convert_grayscale=True)
    ref_mask = mask_processor.preprocess(Image.open(mask_file), height=64, width=48)
    ours = read_mask(mask_file, 64, 48)
    np.testing.assert_array_equal(ours, ref_mask.numpy())
    small = torch.nn.functional.interpolate(ref_mask, size=(8, 6)).numpy()
    np.testing.assert_array_equal(downsample_nearest(ours, 8, 6), small)
    # greyscale converts to RGB (the same picture), an opaque RGBA too
    grey = _write(tmp_path / "g.png", pixels[..., 0])
    np.testing.assert_array_equal(read_image(grey, 64, 48), read_image(_write(tmp_path / "g3.png", np.repeat(
        pixels[..., :1], 3, axis=2)), 64, 48))
    opaque = _write(tmp_path / "o.png", np.dstack([pixels, np.full((64, 48), 255, np.uint8)]))
    np.testing.assert_array_equal(read_image(opaque, 64, 48), read_image(image_file, 64, 48))


# ---- end to end against diffusers' pipelines ----------------------------------------------------------------

COMPONENTS = "text_encoder,unet,vae_decoder,vae_encoder"


def make_inpaint_pipeline(folder: Path) -> Path:
    """The tiny SD pipeline of tests/test_runtime.py with a 9-channel (inpainting) UNet, saved by diffusers'
    StableDiffusionInpaintPipeline."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    from tests.test_runtime import make_tiny_pipeline

    make_tiny_pipeline(folder)
    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=9, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(folder), unet=unet, safety_checker=None,
                                                          requires_safety_checker=False)
    shutil.rmtree(folder)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "tokenizer")
    shutil.copytree(TOKENIZER, folder / "tokenizer")
    return folder


@contextmanager
def same_draws(seed: int):
    """diffusers' randn_tensor (the VAE's sample, the pipelines' noise) returns the runtime's draws, in call order."""
    from unittest import mock

    rng = np.random.default_rng(seed)

    def draw(shape, generator=None, device=None, dtype=None, layout=None):
        return torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32))

    with mock.patch("diffusers.models.autoencoders.vae.randn_tensor", draw), \
            mock.patch("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img.randn_tensor", draw), \
            mock.patch("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint.randn_tensor", draw):
        yield


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A structured test picture: a gradient background with a filled circle and a rectangle (uint8 RGB)."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 96 + 40 * seed)], -1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([width // 8, height // 8, width // 2, height // 2], fill=(220, 30, 30))
    draw.rectangle([width // 2, height // 2, width - width // 8, height - height // 8], fill=(20, 40, 200))
    return np.asarray(image)


def centre_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    return mask


def reference(cls_name: str, model: Path, seed: int, result, scheduler: str | None = None, **kwargs) -> np.ndarray:
    cls = getattr(diffusers, cls_name)
    pipe = cls.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    with same_draws(seed):
        out = pipe(PROMPT, num_inference_steps=result.steps, guidance_scale=result.guidance, output_type="np",
                   **kwargs).images[0]
    assert len(calls) == len(result.timings.unet_step_ms), "the runtime ran a different number of UNet steps"
    return (out * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_img2img(tmp_path_factory):
    from tests.test_runtime import make_tiny_pipeline

    root = tmp_path_factory.mktemp("img2img")
    model = make_tiny_pipeline(root / "tiny-sd")
    return model, convert(model, root / "out", "onnxruntime", "--components", COMPONENTS,
                          "--set", "pipeline.num_inference_steps=10")


@pytest.fixture(scope="module")
def tiny_inpaint(tmp_path_factory):
    root = tmp_path_factory.mktemp("inpaint")
    model = make_inpaint_pipeline(root / "tiny-inpaint")
    return model, convert(model, root / "out", "onnxruntime", "--components", COMPONENTS,
                          "--set", "pipeline.num_inference_steps=10")


@pytest.mark.parametrize("scheduler, strength", [(None, 0.6), ("DPMSolverMultistepScheduler", 0.75),
                                                 ("EulerDiscreteScheduler", 1.0), ("DDIMScheduler", 0.3)])
def test_img2img_matches_diffusers(tiny_img2img, tmp_path, scheduler, strength):
    from PIL import Image

    model, bundle = tiny_img2img
    pipe = BundlePipeline.load(bundle)
    file = _write(tmp_path / "in.png", picture(64, 64))
    result = pipe.generate(PROMPT, seed=5, scheduler=scheduler,
                           images=ImageInputs.from_files(pipe, file, strength=strength))
    expected = reference("StableDiffusionImg2ImgPipeline", model, 5, result, scheduler, image=Image.open(file),
                         strength=strength)
    value = psnr(result.image, expected)
    print(f"\nimg2img {result.scheduler} strength {strength}: {len(result.timings.unet_step_ms)} UNet calls, "
          f"PSNR {value:.1f} dB vs diffusers")
    assert value >= MIN_PSNR_DB


@pytest.mark.parametrize("scheduler, strength", [(None, 1.0), ("DPMSolverMultistepScheduler", 0.7),
                                                 ("EulerDiscreteScheduler", 0.5)])
def test_inpainting_unet_matches_diffusers(tiny_inpaint, tmp_path, scheduler, strength):
    from PIL import Image

    model, bundle = tiny_inpaint
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["pipeline"]["latent_shape"] == [1, 4, 8, 8]  # the latents, not the UNet's 9 input channels
    assert manifest["components"]["unet"]["inputs"][0]["shape"][1] == 9
    pipe = BundlePipeline.load(bundle)
    image, mask = _write(tmp_path / "in.png", picture(64, 64)), _write(tmp_path / "m.png", centre_mask(64, 64))
    result = pipe.generate(PROMPT, seed=6, scheduler=scheduler,
                           images=ImageInputs.from_files(pipe, image, mask, strength=strength))
    expected = reference("StableDiffusionInpaintPipeline", model, 6, result, scheduler, image=Image.open(image),
                         mask_image=Image.open(mask), strength=strength, height=64, width=64)
    value = psnr(result.image, expected)
    print(f"\ninpainting (9-channel UNet) {result.scheduler} strength {strength}: PSNR {value:.1f} dB vs diffusers")
    assert value >= MIN_PSNR_DB


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_inpainting_with_a_text_to_image_unet_matches_diffusers(tiny_img2img, tmp_path, strength):
    """A 4-channel UNet inpaints by blending the known region back after every step, as diffusers does."""
    from PIL import Image

    model, bundle = tiny_img2img
    pipe = BundlePipeline.load(bundle)
    image, mask = _write(tmp_path / "in.png", picture(64, 64)), _write(tmp_path / "m.png", centre_mask(64, 64))
    result = pipe.generate(PROMPT, seed=7, images=ImageInputs.from_files(pipe, image, mask, strength=strength))
    expected = reference("StableDiffusionInpaintPipeline", model, 7, result, image=Image.open(image),
                         mask_image=Image.open(mask), strength=strength, height=64, width=64)
    value = psnr(result.image, expected)
    print(f"\ninpainting (4-channel UNet) strength {strength}: PSNR {value:.1f} dB vs diffusers")
    assert value >= MIN_PSNR_DB
    # the kept region really is the image's (decoded through the VAE): far closer there than in the repainted part
    keep = centre_mask(64, 64) == 0
    source = picture(64, 64).astype(np.float64)
    assert psnr(result.image[keep], source[keep]) > psnr(result.image[~keep], source[~keep])


@pytest.mark.skipif(not default_model_present(),
                    reason="models/shapes-sd is not trained yet (edgediff train-default writes it)")
@pytest.mark.parametrize("mask", [False, True])
def test_default_model_img2img_matches_diffusers(default_bundle, tmp_path_factory, mask):
    """The issue's acceptance check on the embedded default model: `edgediff generate --image` (and --mask, its
    4-channel UNet inpainting by blending) at the manifest's scheduler, steps and guidance."""
    from PIL import Image

    from edgediff.cli import main

    root = tmp_path_factory.mktemp("default-img2img")
    bundle = default_bundle
    image = _write(root / "in.png", picture(64, 64, seed=1))
    args = ["--mask", str(_write(root / "m.png", centre_mask(64, 64))), "--strength", "0.8"] if mask else []
    out = root / "out.png"
    assert main(["generate", str(bundle), "--prompt", PROMPT, "--seed", "2", "--image", str(image), *args,
                 "--output", str(out), "-q"]) == 0
    pipe = BundlePipeline.load(bundle)
    files = {"image": Image.open(image)}
    if mask:
        files.update(mask_image=Image.open(root / "m.png"), height=64, width=64)
    result = pipe.generate(PROMPT, seed=2, images=ImageInputs.from_files(pipe, image, root / "m.png" if mask else None,
                                                                         strength=0.8))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), result.image)  # the CLI is this call
    expected = reference("StableDiffusionInpaintPipeline" if mask else "StableDiffusionImg2ImgPipeline",
                         DEFAULT_MODEL, 2, result, strength=0.8, **files)
    value = psnr(result.image, expected)
    print(f"\nshapes-sd {'inpainting' if mask else 'img2img'} ({result.scheduler}, {result.steps} steps, strength 0.8): "
          f"PSNR {value:.1f} dB vs diffusers; {result.timings.describe()}")
    assert value >= MIN_PSNR_DB


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory) -> Path:
    """The default model converted once for both cases (img2img and inpainting read the same bundle)."""
    return convert(DEFAULT_MODEL, tmp_path_factory.mktemp("default-bundle"), "onnxruntime", "--components",
                   COMPONENTS)


@pytest.mark.slow
def test_litert_img2img_and_inpainting_match_diffusers(tmp_path):
    """The same parity through LiteRT bundles (XNNPACK interpreter): img2img on the tiny pipeline, inpainting with
    its 9-channel UNet."""
    pytest.importorskip("ai_edge_litert")
    from PIL import Image

    from tests.test_runtime import make_tiny_pipeline

    image, mask = _write(tmp_path / "in.png", picture(64, 64)), _write(tmp_path / "m.png", centre_mask(64, 64))
    for kind, model in (("img2img", make_tiny_pipeline(tmp_path / "tiny-sd")),
                        ("inpainting", make_inpaint_pipeline(tmp_path / "tiny-inpaint"))):
        bundle = convert(model, tmp_path / f"out-{kind}", "litert", "--components", COMPONENTS,
                         "--set", "pipeline.num_inference_steps=8")
        pipe = BundlePipeline.load(bundle)
        assert pipe.manifest.backend == "litert"
        inputs = ImageInputs.from_files(pipe, image, mask if kind == "inpainting" else None, strength=0.7)
        result = pipe.generate(PROMPT, seed=8, images=inputs)
        extra = {"mask_image": Image.open(mask), "height": 64, "width": 64} if kind == "inpainting" else {}
        expected = reference("StableDiffusionInpaintPipeline" if kind == "inpainting" else
                             "StableDiffusionImg2ImgPipeline", model, 8, result, image=Image.open(image),
                             strength=0.7, **extra)
        value = psnr(result.image, expected)
        print(f"\nlitert {kind} strength 0.7: PSNR {value:.1f} dB vs diffusers; {result.timings.describe()}")
        assert value >= MIN_PSNR_DB


# ---- bad inputs: one clear error each, exit code 2 -----------------------------------------------------------


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith(("note: ", "loaded "))]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _generate(bundle: Path, tmp_path: Path, *args: str) -> int:
    from edgediff.cli import main

    return main(["generate", str(bundle), "--prompt", PROMPT, "-q", "--output", str(tmp_path / "o.png"), *args])


def test_bad_inputs_get_one_clear_error(tiny_img2img, tiny_inpaint, tmp_path, capsys):
    from PIL import Image

    _, bundle = tiny_img2img
    good = _write(tmp_path / "good.png", picture(64, 64))
    cases = {
        "wrong size": ([_write(tmp_path / "small.png", picture(32, 48))], r"is 48x32 \(width x height\) but the "
                                                                          r"bundle makes 64x64 \(width x height\); "
                                                                          "resize or crop"),
        "transparent": ([_write(tmp_path / "rgba.png", np.dstack([picture(64, 64), np.full((64, 64), 7, np.uint8)]))],
                        "has transparent pixels .* flatten it onto a background"),
        "cmyk": ([str(tmp_path / "cmyk.jpg")], "has mode CMYK; save it as 8-bit RGB"),
        "not an image": ([str(tmp_path / "notes.png")], "is not an image PIL can read"),
        "truncated": ([str(tmp_path / "cut.png")], "cannot be decoded .* is the file complete"),
        "missing": ([str(tmp_path / "nope.png")], "does not exist"),
        "mask size": ([good, "--mask", str(_write(tmp_path / "m.png", centre_mask(32, 32)))],
                      "--mask .* is 32x32 but the image is 64x64"),
    }
    Image.fromarray(picture(64, 64)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    png = (tmp_path / "full.png")
    Image.fromarray(picture(64, 64)).save(png)
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    import re

    for name, (args, pattern) in cases.items():
        assert _generate(bundle, tmp_path, "--image", *map(str, args)) == 2, name
        line = _error(capsys)
        assert re.search(pattern, line), (name, line)
    for strength in ("0", "1.5", "-0.2", "nan"):
        assert _generate(bundle, tmp_path, "--image", str(good), "--strength", strength) == 2
        assert "strength in (0, 1]" in _error(capsys)
    assert _generate(bundle, tmp_path, "--mask", str(good)) == 2
    assert "--mask and --strength need --image" in _error(capsys)
    # a strength that keeps no step at this step count
    assert _generate(bundle, tmp_path, "--image", str(good), "--strength", "0.01", "--steps", "10") == 2
    assert "keeps 0 of 10 steps" in _error(capsys)
    # an inpainting bundle needs a mask, and text to image does not apply
    _, inpaint = tiny_inpaint
    assert _generate(inpaint, tmp_path, "--image", str(good)) == 2
    assert "inpainting UNet (9 input channels): give --mask" in _error(capsys)
    assert _generate(inpaint, tmp_path) == 2
    assert "give --image and --mask" in _error(capsys)
    # sizes: not a multiple of the latent factor, absent, half given; each names the bundle's sizes
    for args, message in ((["--height", "60", "--width", "64"], "64x60 is not a multiple of 8 (the latent factor); "
                                                                 "this bundle makes 64x64"),
                          (["--height", "64", "--width", "128"], "has no 128x64 artifacts; it makes 64x64"),
                          (["--height", "64"], "give both --height and --width (this bundle makes 64x64")):
        assert _generate(bundle, tmp_path, *args) == 2
        assert message in _error(capsys)
    assert _generate(bundle, tmp_path, "--height", "64", "--width", "64", "--steps", "2") == 0
    capsys.readouterr()
    (tmp_path / "o.png").unlink()
    assert not (tmp_path / "o.png").exists()


def test_a_bundle_without_an_encoder_says_how_to_get_one(tmp_path_factory, tmp_path, capsys):
    from tests.shared_bundle import tiny_ort_bundle

    bundle = tiny_ort_bundle(tmp_path_factory)  # the run's shared bundle: the default components, no vae_encoder
    assert _generate(bundle, tmp_path, "--image", str(_write(tmp_path / "in.png", picture(64, 64)))) == 2
    assert "no vae_encoder" in (line := _error(capsys)) and "--components text_encoder,unet,vae_decoder,vae_encoder" in line


def test_greyscale_and_palette_images_are_converted(tiny_img2img, tmp_path):
    """Greyscale and palette images are RGB pictures in another encoding: converted, the same image results."""
    from PIL import Image

    _, bundle = tiny_img2img
    pipe = BundlePipeline.load(bundle)
    grey = picture(64, 64)[..., 0]
    as_l = _write(tmp_path / "l.png", grey)
    as_rgb = _write(tmp_path / "rgb.png", np.repeat(grey[..., None], 3, axis=2))
    Image.fromarray(picture(64, 64)).convert("P").save(tmp_path / "p.png")
    Image.open(tmp_path / "p.png").convert("RGB").save(tmp_path / "p-rgb.png")
    images = [pipe.generate(PROMPT, seed=1, steps=4, images=ImageInputs.from_files(pipe, f, strength=0.5)).image
              for f in (as_l, as_rgb, tmp_path / "p.png", tmp_path / "p-rgb.png")]
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[2], images[3])


# ---- slimming: int8 calibration sees what an inpainting UNet sees -------------------------------------------


def test_calibration_of_an_inpainting_unet(tmp_path):
    """The 9-channel UNet is calibrated on [latents, a real 0/1 mask, masked-picture latents], not on noise."""
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.slim import calibration as calib

    model = load_model(str(make_inpaint_pipeline(tmp_path / "tiny-inpaint")))
    components = build_components(model, ["text_encoder", "unet", "vae_decoder"], ComponentShapes(64, 64))
    settings = calib.CalibrationSettings(prompts=["a red circle", "a dog"], guidance_scales=[5.0],
                                         scheduler="DDIMScheduler", num_inference_steps=3, spread=1)
    data = calib.capture(model, components, settings,
                         lambda: diffusers.DDIMScheduler.from_config(model.scheduler_config))
    assert data.count("unet") == 2 * (3 + 1) and data.count("vae_decoder") == 2
    samples = [s["sample"] for s in data.samples["unet"]]
    assert all(s.shape == (2, 9, 8, 8) for s in samples)
    first, second = samples[0], samples[4]  # the first step of each run
    mask = first[:, 4:5]
    assert set(np.unique(mask)) == {0.0, 1.0} and 0.2 < mask.mean() < 0.8  # a real mask: keep and repaint parts
    np.testing.assert_array_equal(first[0, 4:], first[1, 4:])  # uncond and cond halves share the conditions
    np.testing.assert_array_equal(samples[1][:, 4:], first[:, 4:])  # and every step of a run
    assert not np.array_equal(first[:, 4:], second[:, 4:])  # each run its own picture and mask
    assert data.samples["vae_decoder"][0]["latent"].shape == (1, 4, 8, 8)
    unet = next(c for c in components if c.name == "unet")
    out = unet.run_torch(data.samples["unet"][0])["noise_pred"]
    assert out.shape == (2, 4, 8, 8) and np.isfinite(out).all()


def test_training_steps_refuse_an_inpainting_unet(tmp_path):
    """Distillation, the pruning search and recovery load their teacher through one door, which says plainly
    that an inpainting UNet is not something they can train."""
    from edgediff.errors import UnsupportedError
    from edgediff.slim.distill import load_teacher

    with pytest.raises(UnsupportedError, match="9 input channels for 4 latent ones .* inpainting UNet"):
        load_teacher(make_inpaint_pipeline(tmp_path / "tiny-inpaint"))


@pytest.mark.slow
def test_int8_inpainting_unet_converts_and_verifies(tiny_inpaint, tmp_path):
    """--precision int8 on a 9-channel UNet: calibrated on real masks, quantized, verified against PyTorch (the
    tiny random VAE decoder does not survive int8 itself, so the UNet is converted alone)."""
    model, _ = tiny_inpaint
    bundle = convert(model, tmp_path / "int8", "onnxruntime", "--components", "unet", "--precision", "int8",
                     "--set", "pipeline.num_inference_steps=6")
    manifest = json.loads((bundle / "manifest.json").read_text())
    unet = manifest["components"]["unet"]
    assert unet["inputs"][0]["shape"][1] == 9 and unet["verify"]["status"] == "passed"
    print(f"\nint8 inpainting UNet: PSNR {unet['verify']['psnr_db']} dB vs PyTorch")
