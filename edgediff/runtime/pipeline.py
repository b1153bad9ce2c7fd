"""Text-to-image from a bundle with numpy and the bundle's runtime only (no torch, no diffusers).

Tokenize -> text encoder -> UNet loop under a table-driven scheduler with classifier-free guidance ->
VAE decoder, as diffusers' StableDiffusionPipeline does it, so the image matches diffusers at the same seed.

Seed convention (torch's RNG is not available here, and devices have their own): the initial latent is
`np.random.default_rng(seed).standard_normal(latent_shape, dtype=np.float32) * init_noise_sigma` (`initial_noise`,
shared with `edgediff eval` and the verification loop, so a bundle and its diffusers folder start from the same
latents), and
schedulers that inject noise between steps (LCM, TCD, Euler ancestral, SDE solvers) draw `standard_normal(latent_shape)` from the
same generator, in step order. To reproduce an image with diffusers, pass that unscaled draw as `latents=`
(diffusers multiplies by init_noise_sigma itself).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgediff import defaults
from edgediff.contract import Manifest, inside, restore_nonfinite
from edgediff.errors import ModelLoadError, RecipeError
from edgediff.runtime.control import ControlInput, ControlStage
from edgediff.runtime.images import ImageInputs, check_bundle
from edgediff.runtime.schedulers import TableScheduler, resolve_class_name, scheduler_tables
from edgediff.runtime.schedulers.config import preset_overrides
from edgediff.runtime.sessions import Session, SessionOptions, open_component
from edgediff.runtime.tokenizer import CLIPTokenizer, read_special_tokens

StepCallback = Callable[[int, int, float], None]

# Model families whose bundles need a pipeline subclass, by the key of their `pipeline` manifest section; each
# family module registers itself (runtime/sdxl.py), so this module never imports them.
FAMILY_PIPELINES: dict[str, type[BundlePipeline]] = {}


def initial_noise(seed: int | np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The unscaled initial latent of image `seed`: one float32 standard-normal draw (numpy's float32 sampler, not
    a float64 draw cast down: the two give different values for the same seed)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32)


@dataclass
class StageTimings:
    """Wall-clock milliseconds per stage of one image (load_ms is the one-off session creation).

    `unet_step_ms` has one entry per scheduler step, i.e. per guided UNet evaluation (both CFG halves);
    PNDM evaluates the UNet once more than its num_inference_steps.
    """

    load_ms: float = 0.0
    tokenize_ms: float = 0.0
    text_encoder_ms: float = 0.0
    unet_step_ms: list[float] = field(default_factory=list)
    scheduler_ms: float = 0.0
    vae_decoder_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def unet_ms(self) -> float:
        return float(sum(self.unet_step_ms))

    def summary(self) -> dict[str, Any]:
        steps = np.array(self.unet_step_ms) if self.unet_step_ms else np.zeros(1)
        return {
            "load_ms": round(self.load_ms, 2),
            "tokenize_ms": round(self.tokenize_ms, 3),
            "text_encoder_ms": round(self.text_encoder_ms, 2),
            "unet_total_ms": round(self.unet_ms, 2),
            "unet_calls": len(self.unet_step_ms),
            "unet_step_median_ms": round(float(np.median(steps)), 2),
            "unet_step_min_ms": round(float(steps.min()), 2),
            "unet_step_max_ms": round(float(steps.max()), 2),
            "scheduler_ms": round(self.scheduler_ms, 3),
            "vae_decoder_ms": round(self.vae_decoder_ms, 2),
            "total_ms": round(self.total_ms, 2),
        }

    def describe(self) -> str:
        s = self.summary()
        return (
            f"tokenize {s['tokenize_ms']:.1f} ms | text encoder {s['text_encoder_ms']:.1f} ms | "
            f"unet {s['unet_calls']} calls, {s['unet_total_ms']:.0f} ms (median {s['unet_step_median_ms']:.1f} ms/call) | "
            f"scheduler {s['scheduler_ms']:.1f} ms | vae decoder {s['vae_decoder_ms']:.1f} ms | total {s['total_ms']:.0f} ms"
        )


@dataclass
class GenerationResult:
    """An image plus what produced it; `intermediates` is filled when asked for (golden files)."""

    image: np.ndarray
    seed: int
    steps: int
    guidance: float
    scheduler: str
    timings: StageTimings
    intermediates: dict[str, Any] = field(default_factory=dict)


def guidance_scale_embedding(w: float, dim: int, batch: int = 1) -> np.ndarray:
    """LCM's guidance embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding), float32 [batch, dim].

    Arguments reach ~1e4 radians, so float32 rounding shows in the result: the exponent is formed in float32
    as diffusers does, exp/sin/cos are evaluated in float64 and rounded once (matching torch to ~1 ulp).
    """
    half = dim // 2
    step = np.float32(np.log(np.float32(10000.0))) / np.float32(half - 1)
    freq = np.exp((np.arange(half, dtype=np.float32) * -step).astype(np.float64)).astype(np.float32)
    emb = (np.float32(w * 1000.0) * freq).astype(np.float64)
    out = np.concatenate([np.sin(emb), np.cos(emb)]).astype(np.float32)
    if dim % 2 == 1:
        out = np.concatenate([out, np.zeros(1, np.float32)])
    return np.tile(out[None, :], (batch, 1))


def latents_to_image(decoded: np.ndarray) -> np.ndarray:
    """VAE output [1,3,H,W] in [-1, 1] -> uint8 HxWx3, rounding as diffusers' image processor does."""
    img = np.clip(decoded[0].astype(np.float32) / 2 + 0.5, 0.0, 1.0)
    return np.round(img.transpose(1, 2, 0) * 255).astype(np.uint8)


def _is_number(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def check_pipeline_section(manifest: Manifest) -> dict[str, Any]:
    """The manifest's `pipeline` and `tokenizer` sections type-checked (manifest.json carries the checksums, so
    nothing else vouches for it): each problem names the key and what was expected."""
    pipe = manifest.require_pipeline()

    def need(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            text = repr(value)
            raise ModelLoadError(f"{manifest.root / 'manifest.json'}: {key} must be {expected}, got "
                                 f"{text if len(text) <= 60 else text[:57] + '...'}; re-create the bundle")

    shape = pipe.get("latent_shape")
    need(isinstance(shape, list) and len(shape) == 4 and all(type(d) is int and 0 < d <= 4096 for d in shape),
         "pipeline.latent_shape", "[1, channels, height, width] (positive integers)", shape)
    need(_is_number(pipe.get("vae_scaling_factor", 1.0), 1e-6, 1e6), "pipeline.vae_scaling_factor",
         "a finite positive number", pipe.get("vae_scaling_factor"))
    need(pipe.get("vae_shift_factor") is None or _is_number(pipe.get("vae_shift_factor")), "pipeline.vae_shift_factor",
         "a finite number or null", pipe.get("vae_shift_factor"))
    guidance = pipe.get("guidance", {})
    need(isinstance(guidance, dict), "pipeline.guidance", "an object", guidance)
    need(_is_number(guidance.get("scale", 7.5), 0, 100), "pipeline.guidance.scale", "a finite number in [0, 100]",
         guidance.get("scale"))
    sched: dict[str, Any] = pipe.get("scheduler")  # type: ignore[assignment]
    need(isinstance(sched, dict), "pipeline.scheduler", "an object", sched)
    need(isinstance(sched.get("class_name"), str), "pipeline.scheduler.class_name", "a scheduler class name",
         sched.get("class_name"))
    need(isinstance(sched.get("config", {}), dict), "pipeline.scheduler.config", "an object", sched.get("config"))
    steps = sched.get("num_inference_steps")
    need(steps is None or (type(steps) is int and 1 <= steps <= 1000), "pipeline.scheduler.num_inference_steps",
         "an integer in [1, 1000]", steps)
    need(sched.get("tables") is None or isinstance(sched["tables"], dict), "pipeline.scheduler.tables", "an object",
         sched.get("tables"))
    length = (manifest.tokenizer or {}).get("max_length", 77)
    need(type(length) is int and 3 <= length <= 4096, "tokenizer.max_length", "an integer in [3, 4096]", length)
    return pipe


def _tables_or_error(tables: dict[str, Any], where: str) -> TableScheduler:
    try:
        scheduler = TableScheduler(tables)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelLoadError(f"{where} are malformed ({type(exc).__name__}: {exc}); re-create the bundle") from None
    if not len(scheduler) or not all(np.isfinite(row.update).all() and np.isfinite(row.convert).all()
                                     for row in scheduler.steps):
        raise ModelLoadError(f"{where} hold no steps or non-finite coefficients; re-create the bundle")
    return scheduler


class BundlePipeline:
    """A converted bundle, ready to turn prompts into images. Build it with `BundlePipeline.load(dir)`."""

    TEXT_ENCODER = "text_encoder"  # the component tokenized for and opened here (SDXL's refiner: text_encoder_2)

    def __init__(self, manifest: Manifest, options: SessionOptions, load_ms: float = 0.0):
        self.manifest = manifest
        self.options = options
        start = time.perf_counter()
        pipe = check_pipeline_section(manifest)
        tok = manifest.tokenizer or {}
        vocab, merges = (inside(manifest.root, tok[k], f"tokenizer.{k}") for k in ("vocab", "merges"))
        for name in ("tokenizer_config.json", "special_tokens_map.json"):  # read beside vocab.json: inside too
            inside(manifest.root, str(Path(tok["vocab"]).parent / name), f"tokenizer {name}")
        special = read_special_tokens(vocab.parent, overrides=tok)
        self.tokenizer = CLIPTokenizer(vocab, merges, int(tok.get("max_length", 77)), special)
        self.latent_shape = manifest.latent_shape
        self.vae_scaling_factor = float(pipe.get("vae_scaling_factor", 0.18215))
        self.vae_shift_factor = float(pipe.get("vae_shift_factor") or 0.0)
        guidance = pipe.get("guidance") or {}
        self.default_guidance = float(guidance.get("scale", defaults.GUIDANCE))
        sched = manifest.scheduler
        self.scheduler_class = resolve_class_name(sched["class_name"])
        self.scheduler_config = restore_nonfinite(dict(sched.get("config") or {}))  # strict JSON wrote -inf as null
        self.default_steps = int(sched.get("num_inference_steps") or (sched.get("tables") or {}).get("num_inference_steps") or defaults.STEPS)
        self._manifest_tables = sched.get("tables")
        if self._manifest_tables is not None:
            _tables_or_error(self._manifest_tables, "manifest.json: pipeline.scheduler.tables")
        unet_spec = manifest.component("unet")
        sample = unet_spec.input("sample")
        if sample is None:
            raise ModelLoadError("the unet component has no `sample` input; the bundle does not follow the edgediff bundle contract")
        text_encoder, vae_decoder = manifest.component(self.TEXT_ENCODER), manifest.component("vae_decoder")
        if not (text_encoder.inputs and text_encoder.outputs and unet_spec.outputs and vae_decoder.inputs
                and vae_decoder.outputs):
            raise ModelLoadError("manifest.json: the text_encoder, unet and vae_decoder must each list their inputs "
                                 "and outputs; the bundle does not follow the edgediff bundle contract")
        for spec, first in ((sample, 2), (vae_decoder.inputs[0], 1)):  # an inpainting UNet's sample has more channels
            dims = list(spec.shape[first:])
            if len(spec.shape) == 4 and all(isinstance(d, int) for d in dims) and dims != list(self.latent_shape[first:]):
                raise ModelLoadError(f"manifest.json: pipeline.latent_shape {list(self.latent_shape)} disagrees with "
                                     f"the {spec.name} input {list(spec.shape)}; the manifest was altered")
        self._unet_batch = sample.fixed_dim(0)
        self._batched_cfg = bool(guidance.get("batched_cfg", True)) if self._unet_batch is None else self._unet_batch == 2
        cond = unet_spec.input("timestep_cond")
        self._time_cond_dim = int(cond.shape[-1]) if cond is not None else None
        self._text_input = text_encoder.inputs[0].name
        self._text_output = text_encoder.outputs[0].name
        self._unet_output = unet_spec.outputs[0].name
        self._vae_input = vae_decoder.inputs[0].name
        self._vae_output = vae_decoder.outputs[0].name
        self.text_encoder: Session = open_component(manifest, self.TEXT_ENCODER, options)
        self.unet: Session = open_component(manifest, "unet", options)
        self.vae_decoder: Session = open_component(manifest, "vae_decoder", options)
        self.unet_channels = int(sample.shape[1]) if len(sample.shape) == 4 else int(self.latent_shape[1])
        self.vae_encoder: Session | None = None  # opened by the first image in (edgediff/runtime/images.py)
        # A ControlNet bundle: its residuals feed the UNet (zeros without a control image); runtime/control.py
        self.control = ControlStage(manifest, options) if "controlnet" in manifest.components else None
        self.load_ms = load_ms + (time.perf_counter() - start) * 1000
        self.last_timings: StageTimings | None = None

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        backend: str | None = None,
        options: SessionOptions | None = None,
        verify_checksums: bool = True,
    ) -> "BundlePipeline":
        """Read manifest.json (checking every file's sha256) and open the sessions on the bundle's backend."""
        start = time.perf_counter()
        manifest = Manifest.read(Path(bundle_dir), backend=backend, verify_checksums=verify_checksums)
        return cls.for_manifest(manifest, options or SessionOptions(), load_ms=(time.perf_counter() - start) * 1000)

    @classmethod
    def for_manifest(cls, manifest: Manifest, options: SessionOptions, load_ms: float = 0.0) -> "BundlePipeline":
        """The pipeline class the manifest needs: a bundle whose `pipeline` section has a registered family key
        (`pipeline.sdxl`: runtime/sdxl.py, registered when edgediff.runtime is imported) gets that family's class."""
        if cls is BundlePipeline:
            section = manifest.pipeline or {}
            for key, family in FAMILY_PIPELINES.items():
                if section.get(key) is not None:
                    return family(manifest, options, load_ms)
        return cls(manifest, options, load_ms)

    # ---- stages -------------------------------------------------------------------------------------

    def scheduler(self, steps: int | None = None, class_name: str | None = None) -> TableScheduler:
        """The manifest's precomputed tables when they fit the request, else tables computed here."""
        steps = int(steps or self.default_steps)
        name = resolve_class_name(class_name) if class_name else self.scheduler_class
        tables = self._manifest_tables
        if class_name and preset_overrides(class_name):  # a preset changes the config: never the manifest's tables
            return TableScheduler(scheduler_tables(class_name, self.scheduler_config, steps))
        if tables and tables.get("num_inference_steps") == steps and tables.get("class_name") == name:
            return _tables_or_error(tables, "manifest.json: pipeline.scheduler.tables")
        try:
            return TableScheduler(scheduler_tables(name, self.scheduler_config, steps))
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError) as exc:
            raise ModelLoadError(f"{self.manifest.root / 'manifest.json'}: pipeline.scheduler.config cannot make "
                                 f"{name} tables for {steps} steps ({type(exc).__name__}: {exc})") from None

    def token_ids(self, prompt: str) -> np.ndarray:
        return np.array([self.tokenizer(prompt)], dtype=np.int64)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        return self.text_encoder.run({self._text_input: ids})[self._text_output]

    def condition(self, prompt: str, negative_prompt: str, do_cfg: bool, timings: StageTimings
                  ) -> tuple[Any, Any, Any, Any]:
        """(ids, uncond ids, cond, uncond) text conditioning; a hook SDXL overrides (runtime/sdxl.py)."""
        t0 = time.perf_counter()
        ids = self.token_ids(prompt)
        uncond_ids = self.token_ids(negative_prompt or "") if do_cfg else None
        timings.tokenize_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        cond_embeds = self.encode(ids)
        uncond_embeds = self.encode(uncond_ids) if uncond_ids is not None else None
        timings.text_encoder_ms = (time.perf_counter() - t0) * 1000
        return ids, uncond_ids, cond_embeds, uncond_embeds

    def _stack(self, parts: list[Any]) -> Any:
        """Conditioning halves batched for one UNet call (SDXL's are dicts of tensors)."""
        return np.concatenate(parts)

    def _text_feeds(self, embeds: Any) -> dict[str, np.ndarray]:
        return {"encoder_hidden_states": embeds}

    def _unet(self, latents: np.ndarray, t: float, embeds: Any, cond: np.ndarray | None,
              control: ControlInput | None = None) -> np.ndarray:
        batch = latents.shape[0]
        feeds = {
            "sample": latents,
            "timestep": np.full((batch,), t, dtype=np.float32),
            **self._text_feeds(embeds),
        }
        if cond is not None:
            feeds["timestep_cond"] = np.repeat(cond, batch, axis=0) if cond.shape[0] != batch else cond
        if self.control is not None:
            feeds.update(self.control.feeds(feeds, control))
        return self.unet.run(feeds)[self._unet_output]

    def predict_noise(
        self, latent_input: np.ndarray, t: float, cond_embeds: Any, uncond_embeds: Any,
        guidance: float, time_cond: np.ndarray | None, control: ControlInput | None = None,
    ) -> np.ndarray:
        """The guided model output for one step (uncond first, then cond, as diffusers batches them)."""
        if uncond_embeds is None:
            if self._unet_batch == 2:  # a UNet exported for batched CFG, run without guidance
                out = self._unet(np.concatenate([latent_input] * 2), t, self._stack([cond_embeds] * 2), time_cond,
                                 control)
                return out[:1]
            return self._unet(latent_input, t, cond_embeds, time_cond, control)
        if self._batched_cfg:
            out = self._unet(
                np.concatenate([latent_input, latent_input]), t, self._stack([uncond_embeds, cond_embeds]), time_cond,
                control,
            )
            uncond, cond = out[:1], out[1:2]
        else:
            uncond = self._unet(latent_input, t, uncond_embeds, time_cond, control)
            cond = self._unet(latent_input, t, cond_embeds, time_cond, control)
        return (uncond + np.float32(guidance) * (cond - uncond)).astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        scaled = (latents / np.float32(self.vae_scaling_factor) + np.float32(self.vae_shift_factor)).astype(np.float32)
        return self.vae_decoder.run({self._vae_input: scaled})[self._vae_output]

    # ---- the whole pipeline -----------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        negative_prompt: str = "",
        scheduler: str | None = None,
        latents: np.ndarray | None = None,
        callback: StepCallback | None = None,
        progress: bool = False,
        keep_intermediates: bool = False,
        images: ImageInputs | None = None,
        control: ControlInput | None = None,
    ) -> GenerationResult:
        """One image. `latents` (unscaled, shape latent_shape) replaces the seeded initial draw; `images` makes it
        image-to-image or inpainting (edgediff/runtime/images.py); `control` is a prepared control image for a
        ControlNet bundle (edgediff.runtime.control.read_control)."""
        if control is not None and self.control is None:
            raise RecipeError(f"bundle {self.manifest.root} has no ControlNet; convert with --controlnet FOLDER "
                              "to use a control image")
        if control is not None:
            self.control.check(control)  # type: ignore[union-attr]
        t_total = time.perf_counter()
        timings = StageTimings(load_ms=self.load_ms)
        guidance = self.default_guidance if guidance is None else float(guidance)
        sched = self.scheduler(steps, scheduler)
        check_bundle(self, images)
        n_steps = int(sched.tables["num_inference_steps"])
        keep: dict[str, Any] = {}

        do_cfg = guidance > 1.0 and self._time_cond_dim is None
        ids, uncond_ids, cond_embeds, uncond_embeds = self.condition(prompt, negative_prompt, do_cfg, timings)

        rng = np.random.default_rng(seed)
        if images is not None:  # image-to-image / inpainting: a later start, the image's latents
            sched, noise, x = images.start(self, sched, rng, latents)
        else:
            if latents is None:
                noise = initial_noise(rng, self.latent_shape)
            else:
                noise = np.asarray(latents, dtype=np.float32).reshape(self.latent_shape)
            x = (noise * sched.init_noise_sigma).astype(np.float32)
        time_cond = guidance_scale_embedding(guidance - 1.0, self._time_cond_dim) if self._time_cond_dim else None
        if keep_intermediates:
            keep.update(
                input_ids=ids, uncond_input_ids=uncond_ids, prompt_embeds=cond_embeds,
                negative_prompt_embeds=uncond_embeds, initial_noise=noise, initial_latents=x,
                timestep_cond=time_cond, latents_per_step=[],
            )

        sched.reset()
        indices = range(len(sched))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(sched), desc="denoising", unit="step", leave=False)
        for i in indices:
            t = float(sched.timesteps[i])
            t_s = time.perf_counter()
            model_in = sched.scale_model_input(x, i)
            if images is not None:
                model_in = images.unet_sample(model_in)
            timings.scheduler_ms += (time.perf_counter() - t_s) * 1000
            t_u = time.perf_counter()
            noise_pred = self.predict_noise(model_in, t, cond_embeds, uncond_embeds, guidance, time_cond, control)
            step_ms = (time.perf_counter() - t_u) * 1000
            timings.unet_step_ms.append(step_ms)
            t_s = time.perf_counter()
            step_noise = rng.standard_normal(self.latent_shape, dtype=np.float32) if sched.step_needs_noise(i) else None
            x_next = sched.step(noise_pred, i, x, noise=step_noise)
            if images is not None:
                x_next = images.after_step(i, len(sched), x_next)
            timings.scheduler_ms += (time.perf_counter() - t_s) * 1000
            if keep_intermediates:
                if i == 0:
                    keep.update(step0_model_input=model_in, step0_noise_pred=noise_pred, step0_timestep=t)
                keep["latents_per_step"].append(x_next)
            x = x_next
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{step_ms:.0f} ms/step")
            if callback is not None:
                callback(i, len(sched), step_ms)
        if bar is not None:
            bar.close()

        t0 = time.perf_counter()
        decoded = self.decode(x)
        image = latents_to_image(decoded)
        timings.vae_decoder_ms = (time.perf_counter() - t0) * 1000
        timings.total_ms = (time.perf_counter() - t_total) * 1000
        if keep_intermediates:
            keep.update(final_latents=x, decoded=decoded)
        self.last_timings = timings
        return GenerationResult(
            image=image, seed=int(seed), steps=n_steps, guidance=guidance, scheduler=sched.name,
            timings=timings, intermediates=keep,
        )

    def __call__(
        self,
        prompt: str,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        negative_prompt: str = "",
        **kwargs: Any,
    ) -> np.ndarray:
        """uint8 HxWx3 image; per-stage timings are in `self.last_timings`."""
        return self.generate(prompt, seed=seed, steps=steps, guidance=guidance, negative_prompt=negative_prompt, **kwargs).image

