"""Calibration data recorded from the real pipeline, stored once and reused by every backend.

int8 activation ranges must be measured on what the components really see. For a diffusion UNet that means the
latents, timesteps and text embeddings of the sampler the bundle ships with: ranges drift strongly across
timesteps (Q-Diffusion, TFMQ-DM), so one timestep or random noise is not enough. `capture` runs the PyTorch
pipeline with the recipe's scheduler and step count over a set of prompts, with and without guidance, and records
every component's inputs on the way:

- text_encoder: the token ids of each prompt and of the empty (unconditional) prompt,
- unet: its inputs at every timestep the sampler visits, in the component's batch layout (uncond + cond when
  CFG is batched), plus optionally `spread` extra timesteps evenly over the training range (the final latent
  re-noised the DDPM way, which is what any epsilon-UNet sees at that timestep),
- vae_decoder: the final latents (already divided by the scaling factor),
- vae_encoder: the decoded images.

Custom networks (no pipeline) take their calibration inputs from an .npz file (one array per input name, samples
stacked on a leading axis), e.g. TAEF2 decoder latents made by running the encoder over real photos.

A `CalibrationSet` is saved as one .npz (arrays stacked per component input, plus a JSON description) in the
quantize cache, keyed by the weights and settings, so converting the same model for a second backend reuses it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgediff.errors import RecipeError
from edgediff.slim.image_inputs import InpaintConditions, is_inpainting

# Prompts used when neither the recipe nor the model folder (edgediff.json "calibration_prompts") gives any:
# short captions in the embedded shapes model's grammar plus generic scenes, so any text encoder sees varied text.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "a large red circle on a blue background, top left",
    "a small yellow star on a black background, in the center",
    "a medium green triangle on a white background, bottom right",
    "a large purple square on an orange background, top right",
    "a photograph of a dog running on a beach at sunset",
    "a watercolor painting of a mountain village in winter",
    "a close-up portrait of an old man, studio lighting",
    "a city street at night with neon signs, rain",
)
FORMAT = "edgediff-calibration/1"


@dataclass
class CalibrationSettings:
    """What to record. `guidance_scales` are separate trajectories: 1.0 is "without guidance"."""

    prompts: list[str] = field(default_factory=list)
    guidance_scales: list[float] = field(default_factory=list)
    scheduler: str = ""
    num_inference_steps: int = 0
    spread: int = 0  # extra UNet timesteps evenly over [0, num_train_timesteps)
    seed: int = 0
    file: str = ""  # .npz of inputs for custom networks (or to override capture)


@dataclass
class CalibrationSet:
    """Input samples per component plus, for the UNet, the timestep of each sample."""

    samples: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    timesteps: dict[str, list[float]] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)

    def count(self, component: str) -> int:
        return len(self.samples.get(component, []))

    def save(self, path: Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for component, samples in self.samples.items():
            if not samples:
                continue
            for name in samples[0]:
                arrays[f"{component}/{name}"] = np.stack([s[name] for s in samples])
        meta = {"format": FORMAT, "timesteps": self.timesteps, "description": self.description,
                "components": {c: len(s) for c, s in self.samples.items()}}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "CalibrationSet":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            if meta.get("format") != FORMAT:
                raise RecipeError(f"{path} is not an edgediff calibration file (format {meta.get('format')})")
            result = cls(timesteps=meta["timesteps"], description=meta["description"])
            for component, count in meta["components"].items():
                names = [k.split("/", 1)[1] for k in data.files if k.startswith(component + "/")]
                stacks = {n: data[f"{component}/{n}"] for n in names}
                result.samples[component] = [{n: stacks[n][i] for n in names} for i in range(count)]
        return result


def load_input_file(path: Path, component) -> list[dict[str, np.ndarray]]:
    """Samples for `component` from an .npz with one array per input name (leading axis = samples). A file with
    exactly one array feeds a single-input component whatever the array is called."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"calibration file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    names = [s.name for s in component.inputs]
    if len(names) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise RecipeError(f"calibration file {path} lacks {', '.join(missing)} for {component.name} "
                          f"(has {', '.join(arrays)}; store one array per input, samples on axis 0)")
    count = min(len(arrays[n]) for n in names)
    samples = []
    for i in range(count):
        sample = {}
        for spec in component.inputs:
            value = np.asarray(arrays[spec.name][i]).astype(spec.dtype)
            if tuple(value.shape) != tuple(spec.shape):
                raise RecipeError(f"calibration file {path}: {spec.name} sample {i} has shape {list(value.shape)}, "
                                  f"{component.name} takes {list(spec.shape)}")
            sample[spec.name] = value
        samples.append(sample)
    if not samples:
        raise RecipeError(f"calibration file {path} holds no samples")
    return samples


def capture(model, components: list, settings: CalibrationSettings, make_scheduler) -> CalibrationSet:
    """Run the PyTorch pipeline and record each component's inputs (see the module docstring).

    `make_scheduler()` returns a fresh diffusers scheduler of the class the bundle ships with.
    """
    import torch

    by_name = {c.name: c for c in components}
    result = CalibrationSet(description={"source": "pipeline", **asdict(settings)})
    for name in by_name:
        result.samples[name] = []
    if settings.file:
        for name, component in by_name.items():
            result.samples[name] = load_input_file(Path(settings.file), component)
        result.description["source"] = f"file {settings.file}"
        return result
    if model.kind != "pipeline" or model.tokenizer_dir is None:
        raise RecipeError(f"calibration capture needs a full diffusers pipeline; for a {model.kind} model give "
                          "the quantize step a calibration_file (.npz, one array per input name)")
    from edgediff.model import sampling
    from edgediff.model.components import vae_scaling_factor

    te, unet, dec = _torch_parts(model)
    control: Any = None
    if getattr(model, "controlnet", None) is not None:  # real ControlNet residuals into the UNet's samples
        from edgediff.model.controlnet import CalibrationControl

        control = CalibrationControl(model, by_name)
    unet_comp = by_name.get("unet")
    batch = unet_comp.inputs[0].shape[0] if unet_comp else 2
    time_cond_dim = next((s.shape[1] for s in unet_comp.inputs if s.name == "timestep_cond"), 0) if unet_comp else 0
    text_length = by_name["text_encoder"].inputs[0].shape[1] if "text_encoder" in by_name else 77
    latent_shape = _latent_shape(model, by_name)
    inpainting = is_inpainting(unet_comp)  # its sample also holds a mask and masked-image latents (image_inputs.py)
    scaling = vae_scaling_factor(model.vae)
    ids = sampling.tokenize(model.tokenizer_dir, list(settings.prompts) + [""], length=text_length)
    uncond_ids = ids[-1:]
    if "text_encoder" in by_name:
        result.samples["text_encoder"] = [{"input_ids": ids[i:i + 1]} for i in range(len(ids))]
    with torch.inference_mode():
        uncond = te(torch.from_numpy(uncond_ids)).numpy()
        runs = [(p, g) for p in range(len(settings.prompts)) for g in settings.guidance_scales]
        result.timesteps["unet"] = []
        for run, (p, guidance) in enumerate(tqdm(runs, desc="calibration (pipeline runs)", unit="run")):
            cond = te(torch.from_numpy(ids[p:p + 1])).numpy()
            scheduler = make_scheduler()
            scheduler.set_timesteps(settings.num_inference_steps)
            seed = settings.seed + run
            latents = torch.from_numpy(sampling.initial_noise(seed, latent_shape)) * scheduler.init_noise_sigma
            conditions = (InpaintConditions(model, latent_shape, unet_comp.inputs[0].shape[1], seed)
                          if inpainting and unet_comp is not None else None)
            extra = {}
            if time_cond_dim:
                extra["timestep_cond"] = sampling.guidance_scale_embedding(guidance - 1.0, time_cond_dim, batch)
            use_cfg = guidance > 1.0 and not time_cond_dim
            for t in scheduler.timesteps:
                model_in = scheduler.scale_model_input(latents, t).numpy()
                if conditions is not None:
                    model_in = conditions.extend(model_in)
                feeds = _unet_feeds(model_in, float(t), uncond, cond, batch, extra, use_cfg)
                preds = []
                for feed in feeds:
                    if control is not None:
                        control.add(feed, result.samples)
                    if unet_comp is not None:
                        result.samples["unet"].append(feed)
                        result.timesteps["unet"].append(float(t))
                    preds.append(control.unet(feed) if control is not None else
                                 unet(*[torch.from_numpy(feed[s]) for s in _unet_input_names(feed)]).numpy())
                noise = _combine(preds, batch, guidance, use_cfg)
                latents = scheduler.step(torch.from_numpy(noise), t, latents, return_dict=False)[0]
            final = (latents / scaling).numpy().astype(np.float32)
            if "vae_decoder" in by_name:
                result.samples["vae_decoder"].append({"latent": final})
            if "vae_encoder" in by_name:
                result.samples["vae_encoder"].append({"image": np.clip(dec(torch.from_numpy(final)).numpy(), -1, 1)})
            if unet_comp is not None and settings.spread:
                _spread(result, model, latents.numpy(), uncond, cond, batch, extra, use_cfg, settings, seed, control,
                        conditions.extend if conditions is not None else None)
    return result


def _torch_parts(model):
    """Plain callables of the pipeline's modules (not the fixed-batch component wrappers)."""
    def te(input_ids):
        return model.text_encoder(input_ids, return_dict=False)[0]

    def unet(sample, timestep, states, timestep_cond=None):
        return model.unet(sample, timestep, states, timestep_cond=timestep_cond, return_dict=False)[0]

    def dec(latent):
        return model.vae.decode(latent, return_dict=False)[0]

    return te, unet, dec


def _unet_input_names(feed: dict) -> list[str]:
    names = ["sample", "timestep", "encoder_hidden_states"]
    return names + (["timestep_cond"] if "timestep_cond" in feed else [])


def _unet_feeds(sample, t, uncond, cond, batch, extra, use_cfg) -> list[dict[str, np.ndarray]]:
    """The UNet inputs of one step in the component's layout: one batch-2 call (uncond, cond) when CFG is batched,
    else one batch-1 call per branch the sampler runs."""
    def feed(x, states):
        n = x.shape[0]
        out = {"sample": x.astype(np.float32), "timestep": np.full((n,), t, np.float32),
               "encoder_hidden_states": states.astype(np.float32)}
        out.update({k: v[:n].astype(np.float32) for k, v in extra.items()})
        return out

    if batch == 2:
        return [feed(np.concatenate([sample, sample]), np.concatenate([uncond, cond]))]
    if use_cfg:
        return [feed(sample, uncond), feed(sample, cond)]
    return [feed(sample, cond)]


def _combine(preds: list[np.ndarray], batch: int, guidance: float, use_cfg: bool) -> np.ndarray:
    if batch == 2:
        pred_uncond, pred_cond = preds[0][:1], preds[0][1:]
    elif use_cfg:
        pred_uncond, pred_cond = preds
    else:
        return preds[0]
    if not use_cfg:
        return pred_cond
    return pred_uncond + guidance * (pred_cond - pred_uncond)


def _spread(result, model, latents, uncond, cond, batch, extra, use_cfg, settings, seed, control=None,
            extend=None) -> None:
    """UNet inputs at `spread` timesteps evenly over the training range: x_t = sqrt(a) x0 + sqrt(1 - a) eps."""
    config = model.scheduler_config
    train_steps = int(config.get("num_train_timesteps", 1000))
    betas = _betas(config, train_steps)
    alphas = np.cumprod(1.0 - betas)
    rng = np.random.default_rng(seed + 10_000)
    for t in np.linspace(0, train_steps - 1, settings.spread).round().astype(int):
        eps = rng.standard_normal(latents.shape).astype(np.float32)
        x_t = (np.sqrt(alphas[t]) * latents + np.sqrt(1.0 - alphas[t]) * eps).astype(np.float32)
        for feed in _unet_feeds(extend(x_t) if extend else x_t, float(t), uncond, cond, batch, extra, use_cfg):
            if control is not None:
                control.add(feed, result.samples)
            result.samples["unet"].append(feed)
            result.timesteps["unet"].append(float(t))


def _betas(config: dict, steps: int) -> np.ndarray:
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "linear":
        return np.linspace(start, end, steps)
    if schedule == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, steps) ** 2
    raise RecipeError(f"calibration spread supports linear and scaled_linear beta schedules, not {schedule}; "
                      "set spread = 0")


def _latent_shape(model, by_name) -> tuple[int, ...]:
    if "unet" in by_name:  # the latents: an inpainting UNet's sample has more channels than its output
        return (1,) + tuple(by_name["unet"].outputs[0].shape[1:])
    if "vae_decoder" in by_name:
        return tuple(by_name["vae_decoder"].inputs[0].shape)
    raise RecipeError("calibration capture needs the unet or vae_decoder component to know the latent shape")


def split_holdout(samples: list, every: int = 4) -> tuple[list, list]:
    """(calibration, evaluation): every `every`-th sample is held out so plan figures are not measured on the
    samples the ranges came from. With fewer than `every` samples both lists are the whole set."""
    if len(samples) < every:
        return list(samples), list(samples)
    held = [s for i, s in enumerate(samples) if i % every == every - 1]
    kept = [s for i, s in enumerate(samples) if i % every != every - 1]
    return kept, held


def evenly(items: list, count: int) -> list:
    """At most `count` items spread evenly over the list (keeps every timestep region represented)."""
    if count <= 0 or len(items) <= count:
        return list(items)
    index = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in index]
