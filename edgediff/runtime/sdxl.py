"""SDXL text-to-image in the torch-free runtime: two tokenizers and text encoders, pooled text embeddings and
time ids as the UNet's added conditioning, as diffusers' StableDiffusionXLPipeline computes them.

What SDXL adds to the SD loop (pipeline.py), and why each piece is here rather than in the app:
- `text_encoder` (CLIP ViT-L) and `text_encoder_2` (OpenCLIP ViT-bigG with its projection) each give their
  penultimate hidden state; the two are concatenated on the last axis into `encoder_hidden_states`. The pooled,
  projected output of the last encoder is the UNet's `text_embeds`. The refiner has `text_encoder_2` only.
- `time_ids`: original size + crop top-left + target size (6 numbers), or for the refiner (which was trained
  with an aesthetic score) original size + crop + aesthetic score (5 numbers; the negative half of the guidance
  batch gets the negative aesthetic score).
- With guidance and no negative prompt, `force_zeros_for_empty_prompt` makes the negative conditioning zeros
  instead of the encoded empty prompt (the diffusers default for SDXL). An empty `negative_prompt` here means
  "no negative prompt", as the SD runtime treats it.

The manifest's `pipeline.sdxl` section carries all of it (written by edgediff/model/sdxl.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgediff.contract import Manifest, inside
from edgediff.errors import ModelLoadError
from edgediff.runtime.pipeline import FAMILY_PIPELINES, BundlePipeline, StageTimings
from edgediff.runtime.sessions import Session, SessionOptions, open_component
from edgediff.runtime.tokenizer import CLIPTokenizer, read_special_tokens

TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
HIDDEN = "hidden_states"  # each text encoder's penultimate hidden state
POOLED = "text_embeds"  # text_encoder_2's pooled, projected output
Conditioning = dict[str, np.ndarray]  # encoder_hidden_states, text_embeds, time_ids: one UNet half


def time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int],
             aesthetic_score: float | None = None) -> np.ndarray:
    """The UNet's `time_ids` row [1, 6] (base) or [1, 5] (refiner: the aesthetic score replaces the target size),
    float32 as diffusers' _get_add_time_ids builds it."""
    values: list[float] = [*original_size, *crop_top_left]
    values += [aesthetic_score] if aesthetic_score is not None else [*target_size]
    return np.array([values], dtype=np.float32)


def time_ids_pair(section: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) time ids from a manifest's `pipeline.sdxl.time_ids` settings."""
    ids = section["time_ids"]
    original, crop, target = (tuple(int(v) for v in ids[k]) for k in
                              ("original_size", "crops_coords_top_left", "target_size"))
    if section.get("requires_aesthetics_score"):
        return (time_ids(original, crop, target, float(ids["aesthetic_score"])),  # type: ignore[arg-type]
                time_ids(original, crop, target, float(ids["negative_aesthetic_score"])))  # type: ignore[arg-type]
    positive = time_ids(original, crop, target)  # type: ignore[arg-type]
    return positive, positive.copy()


def check_section(manifest: Manifest) -> dict[str, Any]:
    """`pipeline.sdxl` type-checked: each problem names the key and what was expected."""
    section = (manifest.pipeline or {}).get("sdxl")

    def need(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            raise ModelLoadError(f"{manifest.root / 'manifest.json'}: pipeline.sdxl.{key} must be {expected}, got "
                                 f"{repr(value)[:60]}; re-create the bundle")

    need(isinstance(section, dict), "", "an object", section)
    assert isinstance(section, dict)
    encoders = section.get("text_encoders")
    need(isinstance(encoders, list) and bool(encoders) and all(e in TEXT_ENCODERS for e in encoders)
         and len(set(encoders)) == len(encoders), "text_encoders", f"a list of {', '.join(TEXT_ENCODERS)}", encoders)
    tokenizers = section.get("tokenizers")
    need(isinstance(tokenizers, dict) and set(tokenizers) == set(encoders or ())
         and all(isinstance(t, dict) and isinstance(t.get("vocab"), str) and isinstance(t.get("merges"), str)
                 for t in tokenizers.values()),
         "tokenizers", "one {vocab, merges} object per text encoder", tokenizers)
    ids = section.get("time_ids")
    def pair(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(type(x) is int and 0 <= x <= 1 << 16 for x in v)

    need(isinstance(ids, dict) and all(pair(ids.get(k)) for k in ("original_size", "crops_coords_top_left",
                                                                   "target_size")),
         "time_ids", "an object with original_size, crops_coords_top_left and target_size as [int, int]", ids)
    if section.get("requires_aesthetics_score"):
        for key in ("aesthetic_score", "negative_aesthetic_score"):
            value = ids.get(key)  # type: ignore[union-attr]
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"time_ids.{key}", "a finite number", value)
    need(isinstance(section.get("force_zeros_for_empty_prompt", True), bool), "force_zeros_for_empty_prompt",
         "true or false", section.get("force_zeros_for_empty_prompt"))
    return section


class SDXLBundlePipeline(BundlePipeline):
    """A bundle converted from an SDXL pipeline (base, refiner, Turbo): the SD loop with SDXL's conditioning."""

    def __init__(self, manifest: Manifest, options: SessionOptions, load_ms: float = 0.0):
        section = check_section(manifest)
        self.sdxl = section
        self.text_encoder_names: list[str] = list(section["text_encoders"])
        self.TEXT_ENCODER = self.text_encoder_names[0]  # what the base class opens and tokenizes for
        self.tokenizers: dict[str, CLIPTokenizer] = {}
        for name in self.text_encoder_names:
            tok = section["tokenizers"][name]
            vocab, merges = (inside(manifest.root, tok[k], f"pipeline.sdxl.tokenizers.{name}.{k}")
                             for k in ("vocab", "merges"))
            for extra in ("tokenizer_config.json", "special_tokens_map.json"):
                inside(manifest.root, str(Path(tok["vocab"]).parent / extra), f"tokenizer {extra}")
            self.tokenizers[name] = CLIPTokenizer(vocab, merges, int(tok.get("max_length", 77)),
                                                  read_special_tokens(vocab.parent, overrides=tok))
        super().__init__(manifest, options, load_ms)
        self.tokenizer = self.tokenizers[self.TEXT_ENCODER]
        self.sessions: dict[str, Session] = {self.TEXT_ENCODER: self.text_encoder}
        for name in self.text_encoder_names[1:]:
            self.sessions[name] = open_component(manifest, name, options)
        last = manifest.component(self.text_encoder_names[-1])
        if POOLED not in [o.name for o in last.outputs]:
            raise ModelLoadError(f"manifest.json: {self.text_encoder_names[-1]} has no '{POOLED}' output (SDXL's "
                                 "pooled text embedding); re-create the bundle")
        self.force_zeros = bool(section.get("force_zeros_for_empty_prompt", True))
        self.time_ids, self.negative_time_ids = time_ids_pair(section)

    # ---- conditioning -------------------------------------------------------------------------------------

    def token_ids_per_encoder(self, prompt: str) -> dict[str, np.ndarray]:
        return {name: np.array([tok(prompt)], dtype=np.int64) for name, tok in self.tokenizers.items()}

    def encode_all(self, ids: Mapping[str, np.ndarray], negative: bool = False) -> Conditioning:
        """Both encoders' penultimate states concatenated, the last encoder's pooled output, the time ids."""
        states, pooled = [], None
        for name in self.text_encoder_names:
            spec = self.manifest.component(name)
            out = self.sessions[name].run({spec.inputs[0].name: ids[name]})
            states.append(out[HIDDEN])
            pooled = out.get(POOLED, pooled)
        assert pooled is not None
        return {"encoder_hidden_states": np.concatenate(states, axis=-1).astype(np.float32),
                "text_embeds": np.asarray(pooled, np.float32),
                "time_ids": self.negative_time_ids if negative else self.time_ids}

    def condition(self, prompt: str, negative_prompt: str, do_cfg: bool, timings: StageTimings
                  ) -> tuple[Any, Any, Any, Any]:
        t0 = time.perf_counter()
        ids = self.token_ids_per_encoder(prompt)
        zeros = do_cfg and not negative_prompt and self.force_zeros
        uncond_ids = self.token_ids_per_encoder(negative_prompt) if do_cfg and not zeros else None
        timings.tokenize_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        cond = self.encode_all(ids)
        uncond: Conditioning | None = None
        if zeros:
            uncond = {"encoder_hidden_states": np.zeros_like(cond["encoder_hidden_states"]),
                      "text_embeds": np.zeros_like(cond["text_embeds"]), "time_ids": self.negative_time_ids}
        elif uncond_ids is not None:
            uncond = self.encode_all(uncond_ids, negative=True)
        timings.text_encoder_ms = (time.perf_counter() - t0) * 1000
        return ids, uncond_ids, cond, uncond

    def _stack(self, parts: list[Any]) -> Any:
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _text_feeds(self, embeds: Any) -> dict[str, np.ndarray]:
        return dict(embeds)


FAMILY_PIPELINES["sdxl"] = SDXLBundlePipeline
