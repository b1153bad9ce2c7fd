"""SDXL (base, refiner, Turbo / Lightning) as components: the two text encoders, the UNet with its added
conditioning, and what the manifest records so the torch-free runtime (runtime/sdxl.py) runs it.

Why SDXL needs its own wrappers: its UNet (addition_embed_type="text_time") takes `added_cond_kwargs`
(`text_embeds`: the second text encoder's pooled projection; `time_ids`: original size, crop and target size, or an
aesthetic score for the refiner) that the SD wrapper never passes, and its text conditioning is the penultimate
hidden state of *both* encoders, concatenated, not the last one of one encoder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgediff.contract import TensorSpec
from edgediff.errors import ModelLoadError, RecipeError, UnsupportedError
from edgediff.model.loaded import LoadedModel
from edgediff.runtime.sdxl import HIDDEN, POOLED, TEXT_ENCODERS, time_ids_pair

TOKENIZER_DIRS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
SDXL_POOLED_DIM = 1280  # OpenCLIP ViT-bigG's projection, in the base and the refiner
AESTHETIC_SCORE, NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5  # diffusers' img2img defaults (the refiner)


def is_sdxl_config(unet_config: Mapping[str, Any]) -> bool:
    return unet_config.get("addition_embed_type") == "text_time"


def is_sdxl(model: LoadedModel) -> bool:
    return model.unet is not None and getattr(model.unet.config, "addition_embed_type", None) == "text_time"


def added_dims(unet, text_encoder_2=None) -> tuple[int, int]:
    """(width of text_embeds, number of time ids) the UNet's add_embedding expects."""
    cfg = unet.config
    total, per = int(cfg.projection_class_embeddings_input_dim), int(cfg.addition_time_embed_dim)
    pooled = int(text_encoder_2.config.projection_dim) if text_encoder_2 is not None else SDXL_POOLED_DIM
    if (total - pooled) % per or total <= pooled:  # a UNet-only folder of an unusual SDXL: assume 6 time ids
        pooled = total - 6 * per
    if pooled <= 0:
        raise UnsupportedError(f"the UNet's projection_class_embeddings_input_dim ({total}) leaves no room for "
                               f"the pooled text embedding with addition_time_embed_dim {per}")
    return pooled, (total - pooled) // per


def resolve_components(components: list[str], has_text_encoder: bool) -> list[str]:
    """SDXL conditions on both text encoders: asking for the text encoder brings text_encoder_2; a refiner (no
    text_encoder) uses text_encoder_2 alone."""
    out = list(components)
    if "text_encoder" in out and "text_encoder_2" not in out:
        out.insert(out.index("text_encoder") + 1, "text_encoder_2")
    if not has_text_encoder and "text_encoder" in out:
        out.remove("text_encoder")
    return out


def _wrappers():
    """Defined lazily so importing this module does not import torch."""
    import torch

    class SDXLTextEncoder(torch.nn.Module):
        """input_ids -> penultimate hidden state (and the pooled projection for text_encoder_2), as diffusers'
        StableDiffusionXLPipeline.encode_prompt reads them (clip_skip None)."""

        def __init__(self, text_encoder, pooled: bool):
            super().__init__()
            self.text_encoder, self.pooled = text_encoder, pooled

        def forward(self, input_ids):
            out = self.text_encoder(input_ids, output_hidden_states=True, return_dict=True)
            hidden = out.hidden_states[-2]
            return (hidden, out.text_embeds) if self.pooled else hidden

    class SDXLUNet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids, timestep_cond=None):
            return self.unet(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond,
                             added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
                             return_dict=False)[0]

    return SDXLTextEncoder, SDXLUNet


def build_component(model: LoadedModel, name: str, shapes, latent_hw: tuple[int, int]):
    """The SDXL variant of text_encoder / text_encoder_2 / unet (edgediff.model.components' hook)."""
    from edgediff.model.component import Component

    SDXLTextEncoder, SDXLUNet = _wrappers()
    length = shapes.text_length
    if name in TEXT_ENCODERS:
        te = getattr(model, name)
        if te is None:
            raise UnsupportedError(f"component '{name}' is not in {model.source}; remove it from the recipe's "
                                   "components")
        pooled = hasattr(te, "text_projection")
        if name == "text_encoder_2" and not pooled:
            raise ModelLoadError(f"{model.source}: text_encoder_2 is {type(te).__name__}; SDXL's second text "
                                 "encoder is a CLIPTextModelWithProjection (its pooled output conditions the UNet)")
        outputs = [TensorSpec(HIDDEN, (1, length, te.config.hidden_size))]
        if pooled:
            outputs.append(TensorSpec(POOLED, (1, te.config.projection_dim)))
        return Component(name, SDXLTextEncoder(te, pooled).eval(),
                         inputs=(TensorSpec("input_ids", (1, length), "int64"),), outputs=tuple(outputs),
                         input_ranges={"input_ids": (0, te.config.vocab_size)})
    unet = model.unet
    cfg = unet.config
    pooled_dim, n_ids = added_dims(unet, model.text_encoder_2)
    batch = 2 if shapes.batched_cfg else 1
    h, w = latent_hw
    cross = cfg.cross_attention_dim
    inputs = [TensorSpec("sample", (batch, cfg.in_channels, h, w)), TensorSpec("timestep", (batch,)),
              TensorSpec("encoder_hidden_states", (batch, length, int(cross[0] if isinstance(cross, (list, tuple))
                                                                      else cross))),
              TensorSpec("text_embeds", (batch, pooled_dim)), TensorSpec("time_ids", (batch, n_ids))]
    if cfg.time_cond_proj_dim:
        inputs.append(TensorSpec("timestep_cond", (batch, cfg.time_cond_proj_dim)))
    return Component("unet", SDXLUNet(unet).eval(), inputs=tuple(inputs),
                     outputs=(TensorSpec("noise_pred", (batch, cfg.out_channels, h, w)),),
                     input_ranges={"timestep": (0.0, 999.0), "time_ids": (0.0, float(max(shapes.height,
                                                                                         shapes.width)))})


# ---- the manifest -------------------------------------------------------------------------------------------


def manifest_section(model: LoadedModel, height: int, width: int, components: list[str], precision: str,
                     bundle_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """`pipeline.sdxl` and the side files it adds (the second tokenizer), copying each tokenizer into the bundle."""
    encoders = [n for n in TEXT_ENCODERS if n in components]
    if not encoders:
        raise RecipeError("an SDXL bundle for text to image needs text_encoder_2 (and text_encoder for the base "
                          "model) in pipeline.components")
    tokenizers, side_files = {}, []
    for name in encoders:
        source = model.tokenizer_dir if name == "text_encoder" else model.tokenizer_2_dir
        if source is None:
            raise ModelLoadError(f"{model.source}: {TOKENIZER_DIRS[name]}/ (vocab.json, merges.txt) is missing; "
                                 f"{name} cannot be fed without it")
        folder = bundle_dir / TOKENIZER_DIRS[name]
        folder.mkdir(exist_ok=True)
        for file in TOKENIZER_FILES:
            if (source / file).exists():
                if source / file != folder / file:
                    shutil.copy2(source / file, folder / file)
                side_files.append(f"{TOKENIZER_DIRS[name]}/{file}")
        tokenizers[name] = {"vocab": f"{TOKENIZER_DIRS[name]}/vocab.json",
                            "merges": f"{TOKENIZER_DIRS[name]}/merges.txt", "max_length": 77}
    options = model.pipeline_config
    settings = _time_settings(model, height, width)
    vae = model.vae
    force_upcast = bool(getattr(vae.config, "force_upcast", False)) if vae is not None else False
    section = {
        "text_encoders": encoders, "tokenizers": tokenizers, **settings,
        "force_zeros_for_empty_prompt": bool(options.get("force_zeros_for_empty_prompt", True)),
        "vae_force_upcast": force_upcast,
    }
    if force_upcast and precision == "fp16":
        section["vae_note"] = ("the VAE config sets force_upcast (SDXL's VAE overflows in fp16): diffusers decodes "
                               "in fp32; this bundle's vae_decoder is fp16, check its verify PSNR, or convert the "
                               "decoder at fp32 (or use an fp16-fixed VAE)")
    return section, side_files


def _time_settings(model: LoadedModel, height: int, width: int) -> dict[str, Any]:
    """What the time ids are made of, as diffusers' defaults make them: no crop, original = target = the image
    size; the refiner (requires_aesthetics_score) uses the aesthetic scores instead of the target size."""
    aesthetic = bool(model.pipeline_config.get("requires_aesthetics_score", False))
    ids: dict[str, Any] = {"original_size": [height, width], "crops_coords_top_left": [0, 0],
                           "target_size": [height, width]}
    if aesthetic:
        ids.update(aesthetic_score=AESTHETIC_SCORE, negative_aesthetic_score=NEGATIVE_AESTHETIC_SCORE)
    return {"time_ids": ids, "requires_aesthetics_score": aesthetic}


# ---- end to end (verify) ------------------------------------------------------------------------------------


def end_to_end_reference(model: LoadedModel, components, artifacts, settings, runnable: tuple[bool, str]):
    """verify.end_to_end for SDXL: one image through the artifacts vs through PyTorch, same tokens, scheduler,
    noise and conditioning (zeros for an empty negative prompt, time ids as in the manifest). Returns the PyTorch
    side done and the artifacts' to run (edgediff.phases.Pending), or a skip record."""
    from tqdm import tqdm

    from edgediff.model import sampling
    from edgediff.model.component import vae_scaling_factor
    from edgediff.model.sampling import image_psnr_record, make_scheduler
    from edgediff.phases import Pending

    encoders = [n for n in TEXT_ENCODERS if n in artifacts]
    needed = (*encoders, "unet", "vae_decoder")
    if not set(needed) <= set(artifacts) or (model.text_encoder is not None and "text_encoder" not in artifacts):
        return {"status": "skipped", "reason": "needs both text encoders, the unet and the vae_decoder"}
    if not runnable[0]:
        return {"status": "skipped", "reason": runnable[1]}
    by_name = {c.name: c for c in components}
    unet = by_name["unet"]
    unet_batch = unet.inputs[0].dims[0]
    h, w = by_name["vae_decoder"].outputs[0].dims[2:]
    positive_ids, negative_ids = time_ids_pair(_time_settings(model, h, w))
    force_zeros = bool(model.pipeline_config.get("force_zeros_for_empty_prompt", True))
    tokens = {n: sampling.tokenize(model.tokenizer_dir if n == "text_encoder" else model.tokenizer_2_dir,
                                   [settings.prompt, ""]) for n in encoders}
    scheduler_config, scaling = dict(model.scheduler_config), vae_scaling_factor(model.vae)

    def image(calls, side: str) -> np.ndarray:
        return generate(
            calls, encoders, tokens, make_scheduler(settings.scheduler_class, scheduler_config), settings,
            latent_shape=(1,) + unet.inputs[0].dims[1:], scaling_factor=scaling,
            unet_batch=unet_batch, time_ids=(positive_ids, negative_ids), force_zeros=force_zeros,
            progress=lambda steps: tqdm(steps, desc=f"end-to-end ({side})", unit="step", leave=False))

    reference = image({n: by_name[n].run_torch for n in needed}, "pytorch")
    return Pending(needed, lambda calls: image_psnr_record({"pytorch": reference, "artifact": image(calls, "artifact")},
                                                           settings))


def generate(calls, encoders: list[str], tokens: Mapping[str, np.ndarray], scheduler, settings, *,
             latent_shape: tuple[int, ...], scaling_factor: float, unet_batch: int,
             time_ids: tuple[np.ndarray, np.ndarray], force_zeros: bool, progress=None) -> np.ndarray:
    """The SDXL loop over pluggable components with a diffusers scheduler; returns the decoded image [1,3,H,W]."""
    import inspect

    import torch

    from edgediff.runtime.pipeline import initial_noise

    def condition(row: int, negative: bool) -> dict[str, np.ndarray]:
        states, pooled = [], None
        for name in encoders:
            out = calls[name]({"input_ids": tokens[name][row:row + 1]})
            states.append(out[HIDDEN])
            pooled = out.get(POOLED, pooled)
        assert pooled is not None, "text_encoder_2 gives text_embeds"
        return {"encoder_hidden_states": np.concatenate(states, axis=-1), "text_embeds": pooled,
                "time_ids": time_ids[1 if negative else 0]}

    cond = condition(0, False)
    use_cfg = settings.guidance_scale > 1.0
    uncond = None
    if use_cfg:
        uncond = ({k: np.zeros_like(v) for k, v in cond.items() if k != "time_ids"} | {"time_ids": time_ids[1]}
                  if force_zeros else condition(1, True))
    scheduler.set_timesteps(settings.steps)
    latents = torch.from_numpy(initial_noise(settings.seed, latent_shape)) * scheduler.init_noise_sigma
    kwargs = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        kwargs["generator"] = torch.Generator().manual_seed(settings.seed)

    def unet(sample: np.ndarray, t: float, halves: list[dict[str, np.ndarray]]) -> np.ndarray:
        feeds = {k: np.concatenate([h[k] for h in halves]).astype(np.float32) for k in halves[0]}
        feeds.update(sample=np.concatenate([sample] * len(halves)),
                     timestep=np.full((len(halves),), t, np.float32))
        return calls["unet"](feeds)["noise_pred"]

    steps = scheduler.timesteps
    for t in (progress(steps) if progress else steps):
        model_in = scheduler.scale_model_input(latents, t).numpy()
        if uncond is not None:
            if unet_batch == 2:
                both = unet(model_in, float(t), [uncond, cond])
                pred_uncond, pred_cond = both[:1], both[1:]
            else:
                pred_uncond, pred_cond = unet(model_in, float(t), [uncond]), unet(model_in, float(t), [cond])
            noise = pred_uncond + settings.guidance_scale * (pred_cond - pred_uncond)
        else:
            noise = unet(model_in, float(t), [cond] * unet_batch)[:1]
        latents = scheduler.step(torch.from_numpy(noise), t, latents, return_dict=False, **kwargs)[0]
    return calls["vae_decoder"]({"latent": (latents / scaling_factor).numpy().astype(np.float32)})["image"]
