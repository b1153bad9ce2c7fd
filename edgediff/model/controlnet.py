"""ControlNet: a diffusers ControlNetModel folder checked at the door, its family checked against the base UNet,
and the two components it adds to a bundle.

- `controlnet`: (sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale) -> the down-block
  residuals `down_residual_<k>` and the `mid_residual`, already multiplied by the scale as diffusers does.
- the `unet` gains those residuals as inputs (same names). One UNet with residual inputs, not a second UNet
  variant: a second variant would store the UNet's weights twice (the largest file of the bundle), while feeding
  zeros when no control image is given costs one add per skip connection (measured on the tiny model: see the
  report of the controlnet branch). Bundles converted without --controlnet keep the plain UNet.

Why the family check matters: the residuals are added to the UNet's skip connections one to one, so a ControlNet
of another family (an SDXL ControlNet on SD 1.5) would fail deep inside an exporter with a shape error. The
config-level check runs before torch is imported; the structural check after loading compares the residual
shapes with the UNet's actual down path, which also catches pruned UNets whose skip connections changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgediff.contract import TensorSpec
from edgediff.errors import ModelLoadError, UnsupportedError
from edgediff.model.folder import (
    UNET_FIELDS,
    _ints,
    _optional,
    _pos_int,
    _short,
    _string,
    check_block_widths,
    check_links,
    expect,
    find_weights,
    read_json_object,
    safetensors_header,
)

CLASS_NAME = "ControlNetModel"
COMPONENT = "controlnet"
SCALE_INPUT = "conditioning_scale"
COND_INPUT = "controlnet_cond"
MID_RESIDUAL = "mid_residual"

CONTROLNET_FIELDS = {
    **{k: v for k, v in UNET_FIELDS.items() if k not in ("out_channels", "up_block_types", "sample_size")},
    "conditioning_channels": _pos_int(16),
    "conditioning_embedding_out_channels": _optional(_ints()),
    "controlnet_conditioning_channel_order": _string(("rgb", "bgr")),
    "global_pool_conditions": ((lambda v: isinstance(v, bool)), "true or false"),
    "addition_embed_type": _optional(_string()),
}
# Keys that decide the residuals' number and shapes, or the inputs the ControlNet needs, compared with the UNet's.
FAMILY_KEYS = ("in_channels", "cross_attention_dim", "block_out_channels", "layers_per_block", "down_block_types",
               "transformer_layers_per_block", "addition_embed_type")
DEFAULTS = {"in_channels": 4, "layers_per_block": 2, "transformer_layers_per_block": 1, "addition_embed_type": None,
            "cross_attention_dim": 1280}


def down_residual(k: int) -> str:
    return f"down_residual_{k}"


# ---- at the door (no torch) ----------------------------------------------------------------------------------------


def check_controlnet_folder(path: Path) -> dict[str, Any]:
    """The folder's config.json, type-checked, and its weights' headers against it. Raises ModelLoadError or
    UnsupportedError naming the file and key."""
    path = Path(path)
    if path.is_file():
        raise ModelLoadError(f"--controlnet {path} is a file; give the ControlNetModel folder (config.json + "
                             "diffusion_pytorch_model.safetensors)")
    if not path.is_dir():
        raise ModelLoadError(f"--controlnet folder {path} does not exist")
    check_links(path)
    if (path / "model_index.json").exists() and (path / "controlnet" / "config.json").exists():
        raise ModelLoadError(f"{path} is a pipeline folder; pass its controlnet/ folder: {path / 'controlnet'}")
    config_path = path / "config.json"
    if not config_path.exists():
        raise ModelLoadError(f"{path} is not a ControlNet folder: config.json is missing")
    config = read_json_object(config_path)
    if config.get("_class_name") != CLASS_NAME:
        raise UnsupportedError(f"{config_path}: '_class_name' is {_short(config.get('_class_name'))}, expected "
                               f"{CLASS_NAME!r} (edgediff builds only diffusers' ControlNetModel for --controlnet)")
    expect(config, config_path, CONTROLNET_FIELDS, ("block_out_channels",))
    check_block_widths(config, config_path)
    widths = config["block_out_channels"]
    embedding = config.get("conditioning_embedding_out_channels") or [16, 32, 96, 256]
    expected = {"conv_in.weight": [widths[0], config.get("in_channels", 4)],
                "controlnet_cond_embedding.conv_in.weight": [embedding[0], config.get("conditioning_channels", 3)]}
    for weights in find_weights(path):
        if weights.suffix != ".safetensors":
            continue
        for name, (dtype, shape) in safetensors_header(weights).items():
            if not dtype.startswith(("F", "BF")):
                raise ModelLoadError(f"{weights}: tensor {name!r} is {dtype}; model weights are floating point")
            if name in expected and shape[:2] != expected[name]:
                raise ModelLoadError(f"{weights}: tensor {name!r} has shape {shape}, but {config_path} says "
                                     f"{expected[name]}; the weights belong to another model")
    return config


def _value(config: dict[str, Any], key: str) -> Any:
    value = config.get(key, DEFAULTS.get(key))
    if key == "layers_per_block" and isinstance(value, list) and len(set(value)) == 1:
        return value[0]
    if key == "transformer_layers_per_block" and isinstance(value, list) and len(set(value)) == 1:
        return value[0]
    if key == "cross_attention_dim" and isinstance(value, list) and len(set(value)) == 1:
        return value[0]
    return value


def check_family(controlnet: dict[str, Any], unet: dict[str, Any], vae_scale: int, where: str = "--controlnet") -> None:
    """Refuse a ControlNet whose residuals cannot feed this UNet, naming every mismatching key."""
    mismatches = []
    for key in FAMILY_KEYS:
        a, b = _value(controlnet, key), _value(unet, key)
        if key == "down_block_types" and (a is None or b is None):
            continue
        if a != b:
            mismatches.append(f"{key}: ControlNet {_short(a)}, UNet {_short(b)}")
    if mismatches:
        family = " (an SDXL ControlNet)" if controlnet.get("addition_embed_type") == "text_time" else ""
        raise UnsupportedError(f"{where}: this ControlNet{family} does not fit the model's UNet: "
                               + "; ".join(mismatches) + ". Use a ControlNet trained for this base model's family")
    embedding = controlnet.get("conditioning_embedding_out_channels") or [16, 32, 96, 256]
    if 2 ** (len(embedding) - 1) != vae_scale:
        raise UnsupportedError(f"{where}: the ControlNet's conditioning embedding downscales by "
                               f"{2 ** (len(embedding) - 1)} but the VAE by {vae_scale}; the control image could "
                               "not line up with the latents")
    if unet.get("addition_embed_type") == "text_time":
        raise UnsupportedError(f"{where}: SDXL ControlNets need the SDXL UNet component (text_embeds and time_ids "
                               "inputs), which this edgediff does not convert yet; use an SD 1.x / 2.x model")


# ---- loading and the components (torch) ----------------------------------------------------------------------------


def load_controlnet(path: Path, random_weights: bool = False):
    """A diffusers ControlNetModel from a checked folder (weights through edgediff.model.load's safe readers)."""
    from diffusers import ControlNetModel

    from edgediff.model.load import build_with_weights
    from edgediff.model.loaded import RANDOM_WEIGHTS_SEED

    config = check_controlnet_folder(path)
    weights = find_weights(Path(path))
    if not weights and not random_weights:
        raise ModelLoadError(f"{path} has a config but no weights (looked for *.safetensors / *.bin); pass "
                             "--random-weights to build the architecture with random weights")
    return build_with_weights(Path(path), CLASS_NAME, lambda: ControlNetModel.from_config(config),
                              [] if random_weights else weights, RANDOM_WEIGHTS_SEED + 1)


def unet_skip_shapes(unet, h: int, w: int) -> list[tuple[int, int, int]]:
    """(channels, height, width) of every skip connection of the UNet's down path, read from its modules (so a
    pruned UNet reports what it really has)."""
    shapes = [(int(unet.conv_in.out_channels), h, w)]
    for block in unet.down_blocks:
        for resnet in block.resnets:
            shapes.append((int(resnet.out_channels), h, w))
        for sampler in getattr(block, "downsamplers", None) or []:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((int(sampler.out_channels), h, w))
    return shapes


def _wrappers():
    """Defined lazily so importing this module does not import torch."""
    import torch

    class ControlNet(torch.nn.Module):
        """The ControlNet with a tensor conditioning scale (diffusers multiplies every residual by it)."""

        def __init__(self, controlnet):
            super().__init__()
            self.controlnet = controlnet

        def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale):
            down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                        controlnet_cond=controlnet_cond, conditioning_scale=1.0, guess_mode=False,
                                        return_dict=False)
            scale = conditioning_scale.reshape(-1, 1, 1, 1)  # one scale per batch row (int8 calibration stacks rows)
            return tuple(r * scale for r in down) + (mid * scale,)

    class ControlledUNet(torch.nn.Module):
        """The UNet with the residuals as inputs. The UNet is held as `net`, not `unet`: backends that split a
        plain UNet into chunks (LiteRT, Core ML) must not split this one without its residuals."""

        def __init__(self, unet, base_inputs: int):
            super().__init__()
            self.net = unet
            self.base_inputs = base_inputs

        def forward(self, *inputs):
            sample, timestep, states = inputs[:3]
            cond = inputs[3] if self.base_inputs == 4 else None
            residuals = inputs[self.base_inputs:]
            return self.net(sample, timestep, states, timestep_cond=cond,
                            down_block_additional_residuals=tuple(residuals[:-1]),
                            mid_block_additional_residual=residuals[-1], return_dict=False)[0]

    return ControlNet, ControlledUNet


def controlnet_components(model, unet_component, vae_scale: int):
    """(the controlnet component, the unet component with residual inputs), at the plain UNet's shapes."""
    import torch

    from edgediff.model.component import Component

    ControlNet, ControlledUNet = _wrappers()
    cn = model.controlnet
    sample, timestep, states = unet_component.inputs[:3]
    batch, _, h, w = sample.dims
    cn_sample = TensorSpec("sample", (batch, int(cn.config.in_channels), h, w))
    inputs = (cn_sample, timestep, states,
              TensorSpec(COND_INPUT, (batch, int(cn.config.conditioning_channels), h * vae_scale, w * vae_scale)),
              TensorSpec(SCALE_INPUT, (batch,)))
    module = ControlNet(cn).eval()
    probe = Component(COMPONENT, module, inputs, ())
    with torch.inference_mode():
        result = module(*probe.example_args(0))
    outputs = tuple(TensorSpec(down_residual(k), tuple(r.shape)) for k, r in enumerate(result[:-1])) + \
        (TensorSpec(MID_RESIDUAL, tuple(result[-1].shape)),)
    check_residuals(outputs, model.unet, batch, h, w)
    controlnet = Component(COMPONENT, module, inputs, outputs,
                           input_ranges={"timestep": (0.0, 999.0), COND_INPUT: (0.0, 1.0), SCALE_INPUT: (0.5, 1.5)})
    base = len(unet_component.inputs)
    unet = Component(unet_component.name, ControlledUNet(model.unet, base).eval(),
                     tuple(unet_component.inputs) + outputs, unet_component.outputs,
                     input_ranges=dict(unet_component.input_ranges), input_scales=dict(unet_component.input_scales))
    return controlnet, unet


def check_residuals(outputs, unet, batch: int, h: int, w: int) -> None:
    """The ControlNet's residuals against the UNet's skip connections, one to one (pruned UNets included)."""
    skips = unet_skip_shapes(unet, h, w)
    got = [tuple(s.shape[1:]) for s in outputs[:-1]]
    if len(got) != len(skips) or any(tuple(a) != tuple(b) for a, b in zip(got, skips)):
        raise UnsupportedError(
            f"the ControlNet gives {len(got)} down-block residuals {got} but the UNet has {len(skips)} skip "
            f"connections {skips}: they must match one to one. A pruned UNet whose down blocks lost layers cannot "
            "take this ControlNet's residuals: prune only up blocks, or convert without --controlnet")


def attach_controlnet(model, built: list, names: list[str], vae_scale: int) -> list:
    """`built` with the unet replaced by its residual-input form and the controlnet component where `names`
    puts it (after the unet when the recipe did not name it)."""
    from edgediff.errors import RecipeError

    if getattr(model, "controlnet", None) is None:
        raise RecipeError("the controlnet component needs a ControlNet: give --controlnet FOLDER "
                          "(model.controlnet in the recipe)")
    index = next((i for i, c in enumerate(built) if c.name == "unet"), None)
    if index is None:
        raise RecipeError("a ControlNet feeds the UNet: keep unet in pipeline.components")
    controlnet, unet = controlnet_components(model, built[index], vae_scale)
    built = list(built)
    built[index] = unet
    order = list(names) if COMPONENT in names else list(names) + [COMPONENT]
    built.append(controlnet)
    return sorted(built, key=lambda c: order.index(c.name) if c.name in order else len(order))


def resolve_controlnet(recipe, unet_config: dict[str, Any], vae_config: dict[str, Any]) -> None:
    """At the door (no torch): model.controlnet made absolute, its folder and family checked, and the controlnet
    component added to pipeline.components."""
    from edgediff.errors import RecipeError

    m, p = recipe.model, recipe.pipeline
    if not m.controlnet:
        if COMPONENT in p.components:
            raise RecipeError("pipeline.components names controlnet but no ControlNet is given: pass "
                              "--controlnet FOLDER (model.controlnet) or remove it")
        return
    if m.module:
        raise RecipeError("a ControlNet feeds a diffusion UNet, not a custom --module network")
    folder = Path(m.controlnet).expanduser().resolve()
    config = check_controlnet_folder(folder)
    m.controlnet = str(folder)
    channels = vae_config.get("block_out_channels") or vae_config.get("encoder_block_out_channels") or [0] * 4
    check_family(config, unet_config, 2 ** (len(channels) - 1))
    if "unet" not in p.components:
        raise RecipeError("a ControlNet feeds the UNet: keep unet in pipeline.components")
    if COMPONENT not in p.components:
        p.components = [*p.components, COMPONENT]


def controlled_call(controlnet_component, controlnet_call, unet_call):
    """The end-to-end check's UNet call for a ControlNet bundle: the ControlNet on a fixed canny hint (scale 1)
    first, as the runtime runs it (edgediff.runtime.control.controlled)."""
    from edgediff.runtime.control import controlled, synthetic_hint

    cond = next(s for s in controlnet_component.inputs if s.name == COND_INPUT)
    hint = synthetic_hint(int(cond.shape[2]), int(cond.shape[3]))
    return controlled(controlnet_call, unet_call, hint, 1.0, tuple(s.name for s in controlnet_component.outputs))


def manifest_entry(component) -> dict[str, Any]:
    """The manifest's pipeline.controlnet: how an app feeds the ControlNet and chains its residuals."""
    cond = next(s for s in component.inputs if s.name == COND_INPUT)
    return {"image_size": [int(cond.shape[2]), int(cond.shape[3])], "conditioning_channels": int(cond.shape[1]),
            "image_range": [0.0, 1.0], "channel_order": "rgb", "default_scale": 1.0,
            "residuals": [s.name for s in component.outputs],
            "without_image": "feed the unet zeros for every residual input",
            "hint_kinds": ["canny", "depth", "raw"]}


class CalibrationControl:
    """int8 calibration with a ControlNet: at every UNet call the calibration capture records, the ControlNet runs
    on the same inputs and a fixed canny hint, its inputs are recorded for the controlnet component and its real
    residuals are added to the UNet's sample (edgediff.slim.calibration.capture)."""

    def __init__(self, model, by_name: dict[str, Any], scale: float = 1.0):
        from edgediff.model.component import vae_scale_factor
        from edgediff.runtime.control import synthetic_hint

        self.model, self.scale = model, float(scale)
        unet = by_name.get("unet")
        if unet is None:
            raise UnsupportedError("int8 calibration of a ControlNet needs the unet component it feeds")
        _, _, h, w = unet.inputs[0].dims
        factor = vae_scale_factor(model.vae)
        self.hint = synthetic_hint(h * factor, w * factor)
        self.names = [s.name for s in unet.inputs if s.name.startswith("down_residual_")] + [MID_RESIDUAL]

    def add(self, feed: dict[str, Any], samples: dict[str, list]) -> None:
        """Run the ControlNet for one UNet feed: record its inputs, add the residuals to `feed`."""
        import numpy as np
        import torch

        batch = feed["sample"].shape[0]
        inputs = {"sample": feed["sample"], "timestep": feed["timestep"],
                  "encoder_hidden_states": feed["encoder_hidden_states"],
                  COND_INPUT: np.repeat(self.hint, batch, axis=0), SCALE_INPUT: np.full((batch,), self.scale, np.float32)}
        if COMPONENT in samples:
            samples[COMPONENT].append(inputs)
        down, mid = self.model.controlnet(
            torch.from_numpy(inputs["sample"]), torch.from_numpy(inputs["timestep"]),
            encoder_hidden_states=torch.from_numpy(inputs["encoder_hidden_states"]),
            controlnet_cond=torch.from_numpy(inputs[COND_INPUT]), conditioning_scale=1.0, return_dict=False)
        values = [(r * self.scale).numpy().astype(np.float32) for r in (*down, mid)]
        feed.update(zip(self.names, values))

    def unet(self, feed: dict[str, Any]):
        """The raw UNet with the feed's residuals (what the calibration trajectory follows)."""
        import torch

        t = {k: torch.from_numpy(v) for k, v in feed.items()}
        return self.model.unet(t["sample"], t["timestep"], t["encoder_hidden_states"],
                               timestep_cond=t.get("timestep_cond"),
                               down_block_additional_residuals=tuple(t[n] for n in self.names[:-1]),
                               mid_block_additional_residual=t[MID_RESIDUAL], return_dict=False)[0].numpy()
