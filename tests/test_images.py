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
