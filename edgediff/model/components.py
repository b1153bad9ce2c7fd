"""Split a loaded model into export-ready components with fixed input/output specs.

Every backend lowers `Component`s, never whole pipelines. A component's module takes its inputs positionally in
the order of `inputs` and returns a tensor (or a tuple in the order of `outputs`), so the same object feeds
torch.export, litert-torch and coremltools unchanged.
"""

from __future__ import annotations

from edgediff.contract import TensorSpec
from edgediff.errors import RecipeError, UnsupportedError
from edgediff.model.component import Component, ComponentShapes, vae_scale_factor, vae_scaling_factor
from edgediff.model.load import LoadedModel

COMPONENT_NAMES = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder", "controlnet")


def _torch_wrappers():
    """Wrapper modules are defined lazily so importing this module does not import torch."""
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, text_encoder):
            super().__init__()
            self.text_encoder = text_encoder

        def forward(self, input_ids):
            return self.text_encoder(input_ids, return_dict=False)[0]

    class UNet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
            return self.unet(
                sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond, return_dict=False
            )[0]

    class VaeDecoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent):
            return self.vae.decode(latent, return_dict=False)[0]

    class VaeEncoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, image):
            encoded = self.vae.encode(image, return_dict=False)[0]
            # AutoencoderKL gives a distribution: its parameters (mean, log-variance on channels), so the runtime
            # can sample it as diffusers' img2img does; AutoencoderTiny gives latents
            return getattr(encoded, "parameters", encoded)

    return TextEncoder, UNet, VaeDecoder, VaeEncoder



def native_resolution(model: LoadedModel) -> int:
    """The resolution the UNet was trained at: sample_size latents times the VAE's downscale."""
    if model.unet is None:
        raise RecipeError("this model has no UNet: give height and width in the recipe")
    size = model.unet.config.sample_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    return int(size) * vae_scale_factor(model.vae)


def build_components(model: LoadedModel, names: list[str], shapes: ComponentShapes) -> list[Component]:
    """Components of a diffusers model, in the order asked for. Unknown or absent ones are errors."""
    TextEncoder, UNet, VaeDecoder, VaeEncoder = _torch_wrappers()
    scale = vae_scale_factor(model.vae)
    if shapes.height % scale or shapes.width % scale:
        raise RecipeError(f"height and width must be multiples of {scale} (the VAE downscale), "
                          f"got {shapes.height}x{shapes.width}")
    h, w = shapes.height // scale, shapes.width // scale
    built = []
    from edgediff.model import sdxl

    for name in names:
        if name not in COMPONENT_NAMES:
            raise RecipeError(f"unknown component '{name}' (valid: {', '.join(COMPONENT_NAMES)})")
        if name == "controlnet":  # built with the unet it feeds, below
            continue
        if name in ("text_encoder", "text_encoder_2", "unet") and sdxl.is_sdxl(model):  # added conditioning
            built.append(sdxl.build_component(model, name, shapes, (h, w)))
        elif name == "text_encoder_2":
            raise UnsupportedError(f"text_encoder_2 is SDXL's second text encoder; {model.source} is not an SDXL "
                                   "model (its UNet has no text_time conditioning)")
        elif name == "text_encoder":
            te = _require(model.text_encoder, name, model)
            hidden = te.config.hidden_size
            built.append(Component(
                name, TextEncoder(te).eval(),
                inputs=(TensorSpec("input_ids", (1, shapes.text_length), "int64"),),
                outputs=(TensorSpec("last_hidden_state", (1, shapes.text_length, hidden)),),
                input_ranges={"input_ids": (0, te.config.vocab_size)},
            ))
        elif name == "unet":
            unet = _require(model.unet, name, model)
            cfg = unet.config
            batch = 2 if shapes.batched_cfg else 1
            channels = cfg.in_channels
            inputs = [
                TensorSpec("sample", (batch, channels, h, w)),
                TensorSpec("timestep", (batch,)),
                TensorSpec("encoder_hidden_states", (batch, shapes.text_length, _cross_attention_dim(cfg))),
            ]
            if cfg.time_cond_proj_dim:
                inputs.append(TensorSpec("timestep_cond", (batch, cfg.time_cond_proj_dim)))
            built.append(Component(
                name, UNet(unet).eval(), inputs=tuple(inputs),
                outputs=(TensorSpec("noise_pred", (batch, cfg.out_channels, h, w)),),
                input_ranges={"timestep": (0.0, 999.0)},
            ))
        elif name == "vae_decoder":
            vae = _require(model.vae, name, model)
            latent_channels = vae.config.latent_channels
            built.append(Component(
                name, VaeDecoder(vae).eval(),
                inputs=(TensorSpec("latent", (1, latent_channels, h, w)),),
                outputs=(TensorSpec("image", (1, vae.config.out_channels, shapes.height, shapes.width)),),
                input_scales={"latent": 1.0 / vae_scaling_factor(vae)},
            ))
        else:
            vae = _require(model.vae, name, model)
            moments = 1 if type(vae).__name__ == "AutoencoderTiny" else 2  # mean only, or mean and log-variance
            built.append(Component(
                name, VaeEncoder(vae).eval(),
                inputs=(TensorSpec("image", (1, vae.config.in_channels, shapes.height, shapes.width)),),
                outputs=(TensorSpec("latent", (1, moments * vae.config.latent_channels, h, w)),),
                input_ranges={"image": (-1.0, 1.0)},
            ))
    if "controlnet" in names or getattr(model, "controlnet", None) is not None:
        from edgediff.model.controlnet import attach_controlnet

        built = attach_controlnet(model, built, names, scale)
    return built


def custom_component(model: LoadedModel, name: str, inputs: list[TensorSpec]) -> Component:
    """A user network with the input specs the recipe gives; output specs come from one traced call."""
    import torch

    if not inputs:
        raise RecipeError("a custom network needs its inputs in the recipe: [[model.inputs]] name, shape, dtype")
    component = Component(name, model.custom, inputs=tuple(inputs), outputs=())
    args = component.example_args(0)
    with torch.inference_mode():
        result = model.custom(*args)
    result = result if isinstance(result, (tuple, list)) else (result,)
    names = ["output"] if len(result) == 1 else [f"output_{i}" for i in range(len(result))]
    component.outputs = tuple(
        TensorSpec(n, tuple(r.shape), str(r.dtype).replace("torch.", "")) for n, r in zip(names, result)
    )
    return component


def _cross_attention_dim(cfg) -> int:
    dim = cfg.cross_attention_dim
    return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


def _require(module, name: str, model: LoadedModel):
    if module is None:
        raise UnsupportedError(f"component '{name}' is not in {model.source} (a {model.kind} model); "
                               "remove it from the recipe's components")
    return module
