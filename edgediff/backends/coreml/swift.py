"""The resource layout of Apple's Swift StableDiffusion package (apple/ml-stable-diffusion), for Core ML bundles.

Everything below is read from that package's public source, not guessed:

- `StableDiffusionPipeline+Resources.swift`: one resources folder holding compiled models `TextEncoder.mlmodelc`,
  `Unet.mlmodelc` *or* `UnetChunk1.mlmodelc` + `UnetChunk2.mlmodelc` (the chunks win when both exist),
  `VAEDecoder.mlmodelc`, optional `VAEEncoder.mlmodelc` / `SafetyChecker.mlmodelc`, and the CLIP BPE files
  `vocab.json` + `merges.txt`.
- `TextEncoder.swift`: takes the model's *first* input, shape `[1, 77]`, and feeds token ids as **Float32**;
  reads the output named `last_hidden_state` (`[1, 77, D]`).
- `StableDiffusionPipeline.swift` (`toHiddenStates`): stacks uncond + cond embeddings and transposes
  `[2, 77, D]` to `[2, D, 1, 77]` before the UNet.
- `Unet.swift`: feeds `sample` `[2, C, h, w]`, `timestep` `[2]` (Float32, the same t twice) and
  `encoder_hidden_states` `[2, D, 1, 77]`; reads the first output (Apple's converter names it `noise_pred`).
  With chunks, chunk 2 gets chunk 1's outputs merged with the original inputs (so exactly two chunks).
- `Decoder.swift`: first input (Apple names it `z`) = latent already divided by the scaling factor, first output
  (`image`) `[1, 3, H, W]` in [-1, 1].
- `Encoder.swift`: input looked up by the name `z` (`[1, 3, H, W]` in [-1, 1]); the first output holds mean and
  log-variance (`[1, 2*C, h, w]`, Apple's converter returns `quant_conv(encoder(z))` as `latent`); Swift samples.

Swift loads compiled `.mlmodelc` folders. Compiling needs Xcode's `coremlcompiler` (macOS only), so on Linux the
bundle carries `.mlpackage`s named as Apple expects plus `compile_swift_resources.sh`; on a Mac with Xcode,
`finalize` compiles them into `Resources/` itself.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgediff.errors import RecipeError, UnsupportedError
from edgediff.model.components import Component, TensorSpec

RESOURCES_DIR = "Resources"
COMPILE_SCRIPT = "compile_swift_resources.sh"
LAYOUT_NOTE = "swift_layout.json"
RESOURCE_NAMES = {"text_encoder": "TextEncoder", "unet": "Unet", "vae_decoder": "VAEDecoder",
                  "vae_encoder": "VAEEncoder"}
UNET_CHUNK_NAMES = ("UnetChunk1", "UnetChunk2")
TOKENIZER_FILES = ("vocab.json", "merges.txt")
TEXT_LENGTH = 77
UNET_BATCH = 2  # Unet.swift always runs uncond + cond together
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states")
UNET_OUTPUT = "noise_pred"
TEXT_INPUT, TEXT_OUTPUT = "input_ids", "last_hidden_state"
DECODER_INPUT, DECODER_OUTPUT = "z", "image"
ENCODER_INPUT, ENCODER_OUTPUT = "z", "latent"


@dataclass
class SwiftComponent:
    """A component re-shaped for Apple's Swift pipeline plus the adapters that map edgediff's contract to it.

    `to_swift` turns contract inputs (e.g. int64 ids, [B, 77, D] context) into the package's inputs;
    `from_swift` turns package outputs back into contract outputs, so verification stays contract-based.
    """

    module: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    to_swift: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    from_swift: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    context_channels_first: bool = False  # the UNet's context input is [B, D, 1, S]


def package_stem(component: str, chunk: int | None = None, chunks: int = 1) -> str:
    """File stem Apple's Swift code looks for (chunk is 0-based)."""
    if component not in RESOURCE_NAMES:
        raise UnsupportedError(f"component '{component}' has no place in Apple's Swift layout "
                               f"(it loads {', '.join(RESOURCE_NAMES)})")
    if chunk is None:
        return RESOURCE_NAMES[component]
    if component != "unet" or chunks != len(UNET_CHUNK_NAMES):
        raise RecipeError(f"Apple's Swift pipeline loads a UNet in exactly {len(UNET_CHUNK_NAMES)} chunks "
                          f"(UnetChunk1/UnetChunk2), not {chunks}: set chunk_unet = 2 or 1")
    return UNET_CHUNK_NAMES[chunk]


def swift_component(component: Component, context_channels_first: bool = False) -> SwiftComponent:
    """Wrap a contract component so its package has the names, dtypes and layouts Swift feeds and reads.

    `context_channels_first`: the UNet inside already takes its context as [B, D, 1, S] (split-einsum rewrite),
    so the wrapper passes Swift's layout straight through instead of transposing it back.
    """
    import torch
    from torch import nn

    name = component.name
    if name == "text_encoder":
        (ids,), (hidden,) = component.inputs, component.outputs

        class FloatIds(nn.Module):
            """Swift feeds Float32 token ids; cast back to integers before the embedding lookup."""

            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids):
                return self.inner(input_ids.to(torch.int32))

        return SwiftComponent(
            FloatIds(component.module), (TensorSpec(TEXT_INPUT, ids.shape, "float32"),),
            (TensorSpec(TEXT_OUTPUT, hidden.shape, "float32"),),
            to_swift=lambda x: {TEXT_INPUT: np.asarray(x[ids.name]).astype(np.float32)},
            from_swift=lambda y: {hidden.name: y[TEXT_OUTPUT]},
        )
    if name == "unet":
        names = [s.name for s in component.inputs]
        if names != list(UNET_INPUTS):
            raise UnsupportedError(f"Apple's Swift Unet feeds exactly {', '.join(UNET_INPUTS)}; this UNet takes "
                                   f"{', '.join(names)} (e.g. timestep_cond of LCM models): turn swift_layout off")
        sample, timestep, context = component.inputs
        if sample.shape[0] != UNET_BATCH:
            raise UnsupportedError("Apple's Swift Unet runs uncond + cond as one batch of 2: set "
                                   "pipeline.batched_cfg = true and a guidance scale > 1")
        batch, length, dim = context.shape
        swift_context = TensorSpec("encoder_hidden_states", (batch, dim, 1, length), "float32")
        (noise,) = component.outputs

        class ChannelsFirstContext(nn.Module):
            """Takes the context as [B, D, 1, S]; the split-einsum UNet uses it as is, the original one gets it back
            as [B, S, D]."""

            def __init__(self, inner, channels_first: bool):
                super().__init__()
                self.inner = inner
                self.channels_first = channels_first

            def forward(self, sample, timestep, encoder_hidden_states):
                if not self.channels_first:
                    encoder_hidden_states = encoder_hidden_states.squeeze(2).transpose(1, 2)
                return self.inner(sample, timestep, encoder_hidden_states)

        def to_swift(x):
            feed = {k: np.asarray(x[k]).astype(np.float32) for k in ("sample", "timestep")}
            feed["encoder_hidden_states"] = np.ascontiguousarray(
                np.asarray(x["encoder_hidden_states"], dtype=np.float32).transpose(0, 2, 1)[:, :, None, :])
            return feed

        return SwiftComponent(
            ChannelsFirstContext(component.module, context_channels_first), (sample, timestep, swift_context),
            (TensorSpec(UNET_OUTPUT, noise.shape, "float32"),), to_swift=to_swift,
            from_swift=lambda y: {noise.name: y[UNET_OUTPUT]}, context_channels_first=True,
        )
    if name == "vae_decoder":
        (latent,), (image,) = component.inputs, component.outputs
        return SwiftComponent(
            component.module, (TensorSpec(DECODER_INPUT, latent.shape, "float32"),),
            (TensorSpec(DECODER_OUTPUT, image.shape, "float32"),),
            to_swift=lambda x: {DECODER_INPUT: np.asarray(x[latent.name], dtype=np.float32)},
            from_swift=lambda y: {image.name: y[DECODER_OUTPUT]},
        )
    if name == "vae_encoder":
        (image,), (latent,) = component.inputs, component.outputs
        vae = getattr(component.module, "vae", None)
        if vae is None or not hasattr(vae, "encoder"):
            raise UnsupportedError("Apple's Swift VAEEncoder needs an AutoencoderKL (mean + log-variance output)")

        class Moments(nn.Module):
            """quant_conv(encoder(z)): mean and log-variance stacked on channels, as Encoder.swift expects."""

            def __init__(self, vae):
                super().__init__()
                self.vae = vae

            def forward(self, z):
                moments = self.vae.encoder(z)
                return self.vae.quant_conv(moments) if getattr(self.vae, "quant_conv", None) is not None else moments

        channels = latent.shape[1]  # the contract's output is the moments already (mean, log-variance)
        moments_shape = tuple(latent.shape)
        return SwiftComponent(
            Moments(vae), (TensorSpec(ENCODER_INPUT, image.shape, "float32"),),
            (TensorSpec(ENCODER_OUTPUT, moments_shape, "float32"),),
            to_swift=lambda x: {ENCODER_INPUT: np.asarray(x[image.name], dtype=np.float32)},
            from_swift=lambda y: {latent.name: np.asarray(y[ENCODER_OUTPUT])[:, :channels]},
        )
    raise UnsupportedError(f"component '{name}' has no place in Apple's Swift layout "
                           f"(it loads {', '.join(RESOURCE_NAMES)})")


def finalize(bundle_dir: Path, packages: Mapping[str, list[Path]], tokenizer_dir: Path | None,
             compile_models: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write Resources/ (tokenizer files, compiled models when possible) and the compile script.

    `packages` maps component name -> its .mlpackage paths (two for a chunked UNet), already named as Apple
    expects. Returns the manifest's `swift` section.
    """
    bundle_dir = Path(bundle_dir)
    resources = bundle_dir / RESOURCES_DIR
    resources.mkdir(exist_ok=True)
    missing_tokenizer = []
    for name in TOKENIZER_FILES:
        source = (tokenizer_dir / name) if tokenizer_dir else None
        if source is None or not source.exists():
            fallback = bundle_dir / "tokenizer" / name
            source = fallback if fallback.exists() else None
        if source is None:
            missing_tokenizer.append(name)
        else:
            shutil.copy2(source, resources / name)
    ordered = [p for name in RESOURCE_NAMES if name in packages for p in packages[name]]
    script = bundle_dir / COMPILE_SCRIPT
    script.write_text(_compile_script(ordered, bundle_dir))
    script.chmod(0o755)
    section: dict[str, Any] = {
        "layout": "apple/ml-stable-diffusion StableDiffusionPipeline",
        "resources": RESOURCES_DIR,
        "packages": [p.name for p in ordered],
        "compiled_models": [f"{p.stem}.mlmodelc" for p in ordered],
        "compile_script": COMPILE_SCRIPT,
        "tokenizer": [n for n in TOKENIZER_FILES if n not in missing_tokenizer],
    }
    if missing_tokenizer:
        section["warning"] = (f"no {', '.join(missing_tokenizer)} in the model folder: copy the CLIP tokenizer "
                              f"files into {RESOURCES_DIR}/ before loading in Swift")
    compiler = coremlcompiler()
    if not compile_models:
        section.update(compiled=False, reason="compile_swift is off in the recipe")
    elif compiler is None:
        section.update(compiled=False, reason="compiling .mlpackage to .mlmodelc needs Xcode's coremlcompiler "
                                              f"(macOS); run {COMPILE_SCRIPT} on a Mac")
    else:
        for package in ordered:
            log(f"coreml: compiling {package.name} for Swift")
            subprocess.run(compiler + ["compile", str(package), str(resources)], check=True,
                           stdout=subprocess.DEVNULL)
        section["compiled"] = True
    (bundle_dir / LAYOUT_NOTE).write_text(json.dumps(section, indent=2) + "\n")
    return section


def coremlcompiler() -> list[str] | None:
    """The coremlcompiler command on a Mac with Xcode, else None."""
    if platform.system() != "Darwin" or shutil.which("xcrun") is None:
        return None
    found = subprocess.run(["xcrun", "--find", "coremlcompiler"], capture_output=True, text=True)
    return ["xcrun", "coremlcompiler"] if found.returncode == 0 else None


def _compile_script(packages: list[Path], bundle_dir: Path) -> str:
    lines = [
        "#!/bin/sh",
        "# Compile the Core ML packages into the .mlmodelc folders Apple's Swift StableDiffusionPipeline loads",
        "# (StableDiffusionPipeline(resourcesAt: <this folder>/Resources)). Needs macOS with Xcode.",
        "set -e",
        'cd "$(dirname "$0")"',
        f"mkdir -p {RESOURCES_DIR}",
    ]
    lines += [f"xcrun coremlcompiler compile {p.relative_to(bundle_dir)} {RESOURCES_DIR}" for p in packages]
    return "\n".join(lines) + "\n"


def check_layout(bundle_dir: Path, read_io: Callable[[Path], tuple[list[TensorSpec], list[TensorSpec]]]
                 ) -> list[dict[str, Any]]:
    """Check a bundle against what Apple's Swift code loads: names, dtypes, shapes and how they fit together.

    `read_io(package)` returns the package's real input and output specs (read from the saved model).
    Each check is {"name", "passed", "details"}.
    """
    bundle_dir = Path(bundle_dir)
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, details: str) -> None:
        checks.append({"name": name, "passed": bool(passed), "details": details})

    def package(stem: str) -> Path | None:
        for candidate in (bundle_dir / f"{stem}.mlpackage", bundle_dir / RESOURCES_DIR / f"{stem}.mlmodelc"):
            if candidate.exists():
                return candidate
        return None

    resources = bundle_dir / RESOURCES_DIR
    for name in TOKENIZER_FILES:
        check(f"swift: {RESOURCES_DIR}/{name}", (resources / name).is_file(), "BPETokenizer(mergesAt:vocabularyAt:)")
    text = package("TextEncoder")
    hidden_dim = None
    if text is None:
        check("swift: TextEncoder", False, "TextEncoder.mlpackage/.mlmodelc missing")
    else:
        ins, outs = read_io(text)
        first = ins[0] if ins else None
        out = {s.name: s for s in outs}.get(TEXT_OUTPUT)
        ok = (first is not None and tuple(first.shape) == (1, TEXT_LENGTH) and first.dtype == "float32"
              and out is not None and len(out.shape) == 3 and out.shape[:2] == (1, TEXT_LENGTH))
        hidden_dim = out.shape[2] if out is not None and len(out.shape) == 3 else None
        check("swift: TextEncoder I/O", ok, f"first input {_fmt(first)} (want float32 [1, 77]); "
              f"{TEXT_OUTPUT} {_fmt(out)} (want [1, 77, D])")
    chunks = [package(s) for s in UNET_CHUNK_NAMES]
    whole = package("Unet")
    sample_shape = None
    if all(chunks):
        (in1, out1), (in2, out2) = read_io(chunks[0]), read_io(chunks[1])
        ins = {s.name: s for s in in1}
        unet_inputs_ok = set(ins) <= set(UNET_INPUTS) and "sample" in ins
        pool = set(UNET_INPUTS) | {s.name for s in out1}
        chained = {s.name for s in in2} <= pool
        check("swift: UnetChunk1 inputs", unet_inputs_ok, f"{sorted(ins)} must be a subset of {list(UNET_INPUTS)}")
        check("swift: UnetChunk2 inputs", chained, f"{sorted(s.name for s in in2)} must come from the UNet inputs "
              "or UnetChunk1's outputs (Unet.swift merges them)")
        check("swift: UnetChunk2 output", len(out2) == 1, f"{[s.name for s in out2]} (Swift reads the first)")
        all_inputs = {**ins, **{s.name: s for s in in2 if s.name in UNET_INPUTS}}
        final_out = out2[0] if out2 else None
    elif whole is not None:
        i, o = read_io(whole)
        all_inputs = {s.name: s for s in i}
        check("swift: Unet inputs", set(all_inputs) == set(UNET_INPUTS), f"{sorted(all_inputs)} (want {list(UNET_INPUTS)})")
        final_out = o[0] if o else None
    else:
        check("swift: Unet", False, "neither Unet nor UnetChunk1 + UnetChunk2 present")
        all_inputs, final_out = {}, None
    if all_inputs:
        sample = all_inputs.get("sample")
        timestep = all_inputs.get("timestep")
        context = all_inputs.get("encoder_hidden_states")
        sample_shape = tuple(sample.shape) if sample else None
        ok = (sample is not None and len(sample.shape) == 4 and sample.shape[0] == UNET_BATCH
              and timestep is not None and tuple(timestep.shape) == (UNET_BATCH,)
              and context is not None and len(context.shape) == 4 and context.shape[0] == UNET_BATCH
              and context.shape[2] == 1 and context.shape[3] == TEXT_LENGTH
              and (hidden_dim is None or context.shape[1] == hidden_dim)
              and all(s.dtype == "float32" for s in (sample, timestep, context)))
        check("swift: Unet input shapes", ok, f"sample {_fmt(sample)}, timestep {_fmt(timestep)}, "
              f"encoder_hidden_states {_fmt(context)} (want [2, C, h, w], [2], [2, {hidden_dim or 'D'}, 1, 77], "
              "float32)")
        check("swift: Unet output", final_out is not None and tuple(final_out.shape) == sample_shape,
              f"{_fmt(final_out)} (want the sample's shape)")
    decoder = package("VAEDecoder")
    if decoder is None:
        check("swift: VAEDecoder", False, "VAEDecoder.mlpackage/.mlmodelc missing")
    else:
        i, o = read_io(decoder)
        latent = i[0] if i else None
        image = o[0] if o else None
        want_latent = (1,) + tuple(sample_shape[1:]) if sample_shape else None
        ok = (latent is not None and (want_latent is None or tuple(latent.shape) == want_latent)
              and image is not None and len(image.shape) == 4 and image.shape[:2] == (1, 3))
        check("swift: VAEDecoder I/O", ok, f"first input {_fmt(latent)} (want {list(want_latent or ['1,C,h,w'])}), "
              f"first output {_fmt(image)} (want [1, 3, H, W])")
    encoder = package("VAEEncoder")
    if encoder is not None:
        i, o = read_io(encoder)
        z = {s.name: s for s in i}.get(ENCODER_INPUT)
        moments = o[0] if o else None
        ok = (z is not None and len(z.shape) == 4 and z.shape[:2] == (1, 3) and moments is not None
              and (sample_shape is None or moments.shape[1] == 2 * sample_shape[1]))
        check("swift: VAEEncoder I/O", ok, f"input z {_fmt(z)} (want [1, 3, H, W]), first output {_fmt(moments)} "
              "(want mean and log-variance: [1, 2*C, h, w])")
    return checks


def _fmt(spec: TensorSpec | None) -> str:
    return "missing" if spec is None else f"{spec.name} {spec.dtype} {list(spec.shape)}"
