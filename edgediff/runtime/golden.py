"""Golden files: what the iOS and Android apps compare themselves against.

For one prompt and seed the runtime records token ids, the scheduler tables it ran, and the tensors at each
stage boundary (text embeddings, initial latent, first UNet input and guided output, then for every step the
guided noise prediction, the noise the scheduler injected (LCM) and the latent after the step, the decoded
image). With every step's model output and noise on file, an app can test its scheduler alone, step by step,
and a drifting run names the first step that left its tolerance. Tensors are raw little-endian files (`.f32`
float32, `.i32` int32) so Swift and Kotlin read them without a parser; golden.json gives each one's shape,
sha256 and summary statistics. For a 64x64 model the whole folder is well under 200 KB.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgediff.runtime.golden_sizes import write_every_size
from edgediff.runtime.pipeline import BundlePipeline, GenerationResult
from edgediff.runtime.schedulers import TableScheduler
from edgediff.runtime.sizes import bundle_sizes

GOLDEN_FORMAT = "edgediff-golden/1"
DEFAULT_PROMPT = "a red circle on a blue background"
# Prompts that exercise the tokenizer's edge cases (case, punctuation, unicode, special tokens, truncation).
TOKENIZER_CASES = (
    "",
    "A Photo of a CAT, sitting on a mat!!",
    "don't stop: it's 3.14159 (roughly) & 100% fine; OK?",
    "naïve café — “quotes” 日本語 🐱",
    "tabs\tand\nnewlines   collapse",
    "<|endoftext|> typed as text",
    "<|STARTOFTEXT|> and <|ENDOFTEXT|> in capitals",
    "x<|endoftext|>y<|startoftext|>z",
    "Cafe\u0301 (combining accent) ΣΟΦΟΣ İstanbul",
    "full-width １２３ and ½ ⅓ digits, x²",
    "it's they're we've I'm you'll he'd isn't",
    "  leading and trailing spaces  ",
    "a very long prompt " * 30,
    # special tokens in mixed case: HF lower-cases first, so a token matched after normalisation (normalized: true,
    # <|startoftext|> here) still matches; one matched verbatim (<|endoftext|>: the pad role's plain string) does
    # not, and the byte-level pre-tokenizer then cuts its lower-cased text into "<|", "endoftext", "|>"
    "<|EndOfText|> mixed <|StartOfText|> case",
    "!!<|ENDOFTEXT|>?? <<|startoftext|>> a<|ENDOFTEXT|>b",
    "<|endoftext|><|ENDOFTEXT|>'S <| endoftext |> <|endoftext <|startoftext|endoftext|>",
    "CAT'S DON'T THEY'RE I'M x'sy 'LL",
    "İSTANBUL ΣΑΣ Straße ǅemal",
    "\u00a0nbsp\u2003em\u3000ideo\u200bzw\u0085nel tab\x0bvt\x1cfs",
    "👩🏽\u200d💻 🏳️\u200d🌈 ﬁ ①②③ Ⅻ Ａ－Ｚ ＡＢＣ １２",
)


def _write_tensor(folder: Path, name: str, value: np.ndarray) -> dict[str, Any]:
    value = np.asarray(value)
    if value.dtype.kind in "iu":
        data, ext, dtype = value.astype("<i4"), "i32", "int32"
    else:
        data, ext, dtype = value.astype("<f4"), "f32", "float32"
    raw = np.ascontiguousarray(data).tobytes()
    path = folder / f"{name}.{ext}"
    path.write_bytes(raw)
    flat = data.astype(np.float64).ravel()
    return {
        "file": path.name,
        "dtype": dtype,
        "shape": list(value.shape),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "mean": float(flat.mean()),
        "std": float(flat.std()),
        "min": float(flat.min()),
        "max": float(flat.max()),
        "head": [float(v) for v in flat[:8]],
    }


def write_golden(
    pipe: BundlePipeline,
    out_dir: Path,
    prompt: str = DEFAULT_PROMPT,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    negative_prompt: str = "",
    one_size: bool = False,
) -> Path:
    """Run one generation with every intermediate kept and write it to `out_dir`; returns golden.json's path.
    A bundle with several sizes gets one such folder per size (runtime/golden_sizes.py) unless `one_size`."""
    from PIL import Image

    if not one_size and len(bundle_sizes(pipe.manifest)) > 1:
        return write_every_size(pipe, out_dir, lambda p, folder: write_golden(
            p, folder, prompt, seed, steps, guidance, negative_prompt, one_size=True))

    out_dir = Path(out_dir)
    tensors_dir = out_dir / "tensors"
    tensors_dir.mkdir(parents=True, exist_ok=True)
    result, per_step = _generate_recording_steps(pipe, prompt, seed, steps, guidance, negative_prompt)
    keep = result.intermediates
    tensors: dict[str, Any] = {}
    for name in (
        "initial_noise", "initial_latents", "prompt_embeds", "negative_prompt_embeds", "timestep_cond",
        "step0_model_input", "step0_noise_pred", "final_latents", "decoded",
    ):
        for key, value in _flat(name, keep.get(name)):
            tensors[key] = _write_tensor(tensors_dir, key, value)
    for i, latents in enumerate(keep["latents_per_step"]):
        tensors[f"latents_after_step_{i:03d}"] = _write_tensor(tensors_dir, f"latents_after_step_{i:03d}", latents)
    for i, (noise_pred, step_noise) in enumerate(per_step):
        tensors[f"noise_pred_step_{i:03d}"] = _write_tensor(tensors_dir, f"noise_pred_step_{i:03d}", noise_pred)
        if step_noise is not None:
            tensors[f"step_noise_{i:03d}"] = _write_tensor(tensors_dir, f"step_noise_{i:03d}", step_noise)
    Image.fromarray(result.image).save(out_dir / "image.png")
    sched = pipe.scheduler(result.steps, result.scheduler)
    (out_dir / "scheduler_tables.json").write_text(json.dumps(sched.tables, indent=1) + "\n")
    tok_cases = [{"text": text, "ids": pipe.tokenizer(text)} for text in TOKENIZER_CASES]
    second = getattr(pipe, "tokenizers", {}).get("text_encoder_2") if len(getattr(pipe, "tokenizers", {})) > 1 else None
    golden = {
        "format": GOLDEN_FORMAT,
        "bundle": {
            "backend": pipe.manifest.backend,
            "precision": pipe.manifest.precision,
            "component_sha256": {name: [part.sha256 for part in c.parts] for name, c in pipe.manifest.components.items()},
        },
        "seed_convention": "initial_noise = np.random.default_rng(seed).standard_normal(latent_shape, dtype=float32); "
        "initial_latents = initial_noise * init_noise_sigma; schedulers that inject noise draw standard_normal("
        "latent_shape, dtype=float32) from the same generator, in step order",
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": result.seed,
        "steps": result.steps,
        "guidance": result.guidance,
        "scheduler": result.scheduler,
        "latent_shape": list(pipe.latent_shape),
        "vae_scaling_factor": pipe.vae_scaling_factor,
        "step0_timestep": keep.get("step0_timestep"),
        "tokens": {
            **_token_rows("input_ids", keep["input_ids"]),
            **_token_rows("negative_input_ids", keep.get("uncond_input_ids")),
            "cases": tok_cases,
            **({"cases_2": [{"text": text, "ids": second(text)} for text in TOKENIZER_CASES]} if second else {}),
        },
        "scheduler_tables": "scheduler_tables.json",
        "tensors": tensors,
        "image": "image.png",
        "timings": result.timings.summary(),
    }
    path = out_dir / "golden.json"
    path.write_text(json.dumps(golden, indent=1) + "\n")
    return path


def _flat(name: str, value: Any) -> list[tuple[str, np.ndarray]]:
    """One tensor, or SDXL's conditioning (a dict: encoder_hidden_states, text_embeds, time_ids) as
    `<name>`, `<stem>_text_embeds`, `<stem>_time_ids` (stem: the name without `_embeds`)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(name, value)]
    stem = name.removesuffix("_embeds")
    return [(name if key == "encoder_hidden_states" else f"{stem}_{key}", v) for key, v in value.items()]


def _token_rows(key: str, ids: Any) -> dict[str, Any]:
    """Token ids per tokenizer: `key` for the first, `key_2` for SDXL's second."""
    if ids is None:
        return {key: None}
    rows = list(ids.values()) if isinstance(ids, dict) else [ids]
    return {(key if i == 0 else f"{key}_{i + 1}"): [int(v) for v in row[0]] for i, row in enumerate(rows)}


def _generate_recording_steps(
    pipe: BundlePipeline, prompt: str, seed: int, steps: int | None, guidance: float | None, negative_prompt: str,
) -> tuple[GenerationResult, list[tuple[np.ndarray, np.ndarray | None]]]:
    """`pipe.generate` with intermediates, plus each step's guided model output and injected noise.

    The scheduler's `step` sees exactly both (the guided noise prediction and the draw from the seed's generator),
    so it is wrapped on the one scheduler instance this run uses; nothing of the pipeline changes.
    """
    recorded: list[tuple[np.ndarray, np.ndarray | None]] = []
    make_scheduler = pipe.scheduler

    def recording_scheduler(*args: Any, **kwargs: Any) -> TableScheduler:
        sched = make_scheduler(*args, **kwargs)
        step = sched.step

        def recording_step(model_output, index, sample, noise=None):
            recorded.append((np.array(model_output, dtype=np.float32),
                             None if noise is None else np.array(noise, dtype=np.float32)))
            return step(model_output, index, sample, noise=noise)

        sched.step = recording_step  # type: ignore[method-assign]
        return sched

    with _patched(pipe, "scheduler", recording_scheduler):
        result = pipe.generate(
            prompt, seed=seed, steps=steps, guidance=guidance, negative_prompt=negative_prompt, keep_intermediates=True
        )
    return result, recorded


@contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    setattr(obj, name, value)
    try:
        yield
    finally:
        delattr(obj, name)  # back to the class's method


def read_tensor(golden_dir: Path, entry: dict[str, Any]) -> np.ndarray:
    """Load one tensor written by `write_golden` (the same decoding an app does)."""
    dtype = "<i4" if entry["dtype"] == "int32" else "<f4"
    data = np.frombuffer((Path(golden_dir) / "tensors" / entry["file"]).read_bytes(), dtype=dtype)
    return data.reshape(entry["shape"])
