"""Quality gates that look at what the model does, not only at tensors: the guidance check and prompt accuracy.

Per-component PSNR does not see a slimmed model that forgets the prompt: a quantized UNet can match its float
output to 30 dB while the difference between its conditional and unconditional predictions - what classifier-free
guidance amplifies, and all the prompt's influence on the image - shrinks many times over (a known failure of
quantized UNets on phones). The guidance check measures that difference through the lowered UNet and through
its float PyTorch module on the same latents, timesteps and prompts, and fails below `verify.min_guidance_ratio`
naming the stage that lost it. Prompt accuracy runs the finished bundle on the shapes task's judge (the default
model's world) when the recipe asks for it (`verify.accuracy_prompts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgediff.contract import Artifact
from edgediff.model import sampling
from edgediff.model.components import Component
from edgediff.phases import Pending, finish
from edgediff.runtime.sessions import SessionOptions

CHECK_TIMESTEPS = (999.0, 749.0, 499.0, 249.0)
PLAIN_UNET_INPUTS = {"sample", "timestep", "encoder_hidden_states", "timestep_cond"}
PROMPTS = ("a large red circle on a blue background, top left", "a small green square on a white background")


def _difference(unet_call, component: Component, conds: list[np.ndarray], uncond: np.ndarray,
                time_cond: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """eps(cond) - eps(uncond) stacked over prompts and timesteps, for one UNet (artifact or PyTorch)."""
    batch = component.inputs[0].dims[0]
    shape = (1,) + tuple(component.inputs[0].dims[1:])
    rng = np.random.default_rng(seed)
    diffs = []
    for t in CHECK_TIMESTEPS:
        sample = rng.standard_normal(shape).astype(np.float32)
        for cond in conds:
            u, c = sampling._unet_pair(unet_call, sample, t, uncond, cond, batch, time_cond)
            diffs.append(c - u)
    return np.stack(diffs)


def guidance_check(model: Any, components: list[Component], artifacts: Mapping[str, Artifact], backend: str,
                   session_options: SessionOptions, min_ratio: float, precision: str,
                   runnable: tuple[bool, str] = (True, "")) -> dict[str, Any]:
    """|eps_c - eps_u| of the lowered UNet over that of its float PyTorch module (ratio and direction)."""
    return finish(guidance_reference(model, components, artifacts, min_ratio, precision, backend, runnable),
                  artifacts, backend, session_options)


def guidance_reference(model: Any, components: list[Component], artifacts: Mapping[str, Artifact],
                       min_ratio: float, precision: str, backend: str,
                       runnable: tuple[bool, str] = (True, "")) -> Pending | dict[str, Any]:
    """The guidance check's float side (text states and the PyTorch UNet's differences), run while the weights
    are loaded; the lowered UNet's side is the returned Pending's `finish`. A skip record when it does not apply."""
    by_name = {c.name: c for c in components}
    if min_ratio <= 0:
        return {"status": "skipped", "reason": "disabled in the recipe (verify.min_guidance_ratio = 0)"}
    if "unet" not in by_name or "unet" not in artifacts or getattr(model, "tokenizer_dir", None) is None \
            or "text_encoder" not in by_name:
        return {"status": "skipped", "reason": "needs a text encoder, a tokenizer and a UNet"}
    if not runnable[0]:
        return {"status": "skipped", "reason": runnable[1]}
    unet = by_name["unet"]
    others = sorted({s.name for s in unet.inputs} - PLAIN_UNET_INPUTS)
    if others or "last_hidden_state" not in {s.name for s in by_name["text_encoder"].outputs}:
        return {"status": "skipped", "reason": "the guidance check drives SD 1.x / 2.x UNets (sample, timestep, "
                f"text states); this UNet also takes {', '.join(others) or 'other text states'} (SDXL conditioning "
                "or ControlNet residuals), which it does not feed yet"}
    ids = sampling.tokenize(model.tokenizer_dir, [*PROMPTS, ""])
    states = [by_name["text_encoder"].run_torch({"input_ids": ids[i:i + 1]})["last_hidden_state"]
              for i in range(len(ids))]
    time_cond_dim = next((s.shape[1] for s in unet.inputs if s.name == "timestep_cond"), 0)
    guidance = float((getattr(model, "defaults", None) or {}).get("guidance", 5.0))
    extra = ({"timestep_cond": sampling.guidance_scale_embedding(guidance - 1.0, int(time_cond_dim),
                                                                 unet.inputs[0].dims[0])} if time_cond_dim else {})
    ref = _difference(unet.run_torch, unet, states[:-1], states[-1], extra, seed=7)

    def lowered(calls: Mapping[str, Any]) -> dict[str, Any]:
        got = _difference(calls["unet"], unet, states[:-1], states[-1], extra, seed=7)
        return _record(ref, got, min_ratio, precision, backend, guidance, bool(time_cond_dim))

    return Pending(("unet",), lowered)


def _record(ref: np.ndarray, got: np.ndarray, min_ratio: float, precision: str, backend: str, guidance: float,
            time_cond: bool) -> dict[str, Any]:
    ref_norm, got_norm = float(np.linalg.norm(ref)), float(np.linalg.norm(got))
    ratio = got_norm / ref_norm if ref_norm else float("nan")
    cosine = float(ref.ravel() @ got.ravel() / (ref_norm * got_norm)) if ref_norm and got_norm else 0.0
    stage = "quantize (the int8 plan as realised by " + backend + ")" if precision == "int8" else f"lower ({backend})"
    passed = bool(np.isfinite(ratio)) and min_ratio <= ratio
    return {"status": "passed" if passed else "failed", "ratio": round(ratio, 4), "cosine": round(cosine, 5),
            "min_ratio": min_ratio, "float_magnitude": round(ref_norm, 5), "lowered_magnitude": round(got_norm, 5),
            "timesteps": list(CHECK_TIMESTEPS), "prompts": len(PROMPTS), "stage": stage,
            "guidance_input": f"timestep_cond for guidance {guidance:g}" if time_cond else "none (CFG batch)"}


def guidance_failure(record: Mapping[str, Any]) -> list[str]:
    if record.get("status") != "failed":
        return []
    return [f"guidance check: the lowered UNet keeps {100 * record['ratio']:.0f}% of its float conditioning "
            f"|eps(cond) - eps(uncond)| (< {100 * record['min_ratio']:.0f}%, direction cosine {record['cosine']:.3f}); "
            f"caused by stage {record['stage']}: keep more layers float (quantize target_psnr_db) or use fp32"]


def prompt_accuracy(bundle_dir: Path, model_source: str, prompts: int, steps: int, guidance: float,
                    minimum: float) -> dict[str, Any]:
    """The bundle on the shapes task's judge (its model folder's judge/ or the default model's)."""
    from edgediff.errors import ModelLoadError
    from edgediff.evaluate import EvalSettings, evaluate

    try:
        result, _ = evaluate(bundle_dir, EvalSettings(steps=steps, guidance=guidance, prompts=prompts),
                             judge_dir=Path(model_source) / "judge" if model_source else None, progress=True)
    except ModelLoadError as exc:
        return {"status": "skipped", "reason": f"no judge for this model: {exc}"}
    passed = result.prompt_accuracy >= minimum
    return {"status": "passed" if passed else "failed", "prompt_accuracy": round(result.prompt_accuracy, 4),
            "frechet_distance": round(result.frechet_distance, 2), "prompts": prompts, "min_prompt_accuracy": minimum,
            "steps": steps, "guidance": guidance, "judge": result.judge}


def accuracy_failure(record: Mapping[str, Any]) -> list[str]:
    if record.get("status") != "failed":
        return []
    return [f"prompt accuracy {100 * record['prompt_accuracy']:.1f}% < {100 * record['min_prompt_accuracy']:.1f}% "
            f"over {record['prompts']} prompts of the judge's task"]


def report_lines(manifest: Mapping[str, Any]) -> list[str]:
    """report.md's section: the guidance check, prompt accuracy and which slim stages came from the cache."""
    lines: list[str] = []
    g = manifest.get("guidance_check") or {}
    a = manifest.get("prompt_accuracy") or {}
    stages = manifest.get("stage_cache") or []
    if not (g or a or stages):
        return lines
    lines += ["## Quality gates and slim stages", ""]
    lines += _gate_line("Guidance check", g, lambda: (
        f"Guidance check: the lowered UNet keeps **{100 * g['ratio']:.1f}%** of its float |eps(cond) - eps(uncond)| "
        f"(direction cosine {g['cosine']:.4f}; gate {100 * g['min_ratio']:.0f}%, {g['prompts']} prompts x "
        f"{len(g['timesteps'])} timesteps): {g['status']}."))
    lines += _gate_line("Prompt accuracy", a, lambda: (
        f"Prompt accuracy on the judge: **{100 * a['prompt_accuracy']:.1f}%** over {a['prompts']} prompts "
        f"(Frechet distance {a['frechet_distance']}; gate {100 * a['min_prompt_accuracy']:.1f}%): {a['status']}."))
    if stages:
        lines += ["", "| slim stage | stage cache | key |", "|---|---|---|"]
        lines += [f"| {s['stage']} | {s['cache']} | {s['key']} |" for s in stages]
    return lines + [""]


def _gate_line(name: str, record: Mapping[str, Any], measured: Callable[[], str]) -> list[str]:
    """A gate's report line: its reason when skipped, its figures when measured, nothing when absent."""
    if record.get("status") == "skipped":
        return [f"{name} skipped: {record.get('reason')}."]
    return [measured()] if record else []
