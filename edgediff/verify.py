"""The verify stage: every artifact against its PyTorch component on seeded inputs, and one full text -> image
run through the artifacts against the same run in PyTorch.

Artifacts run through the runtime's sessions (`edgediff.runtime.sessions.open_session`), the code `generate`, the
Jetson runner and the apps' JVM tests use, so the gate checks what ships. PSNR uses the reference's own dynamic
range as the peak (max - min of the PyTorch output), so the figure means the same for a latent, a noise
prediction or an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from tqdm import tqdm

from edgediff import defaults
from edgediff.contract import Artifact, Precision
from edgediff.errors import ParityError
from edgediff.model import sampling
from edgediff.model.components import Component, vae_scaling_factor
from edgediff.model.sampling import image_psnr_record, make_scheduler
from edgediff.phases import Pending, finish, one_chunk_at_a_time
from edgediff.runtime.sessions import SessionOptions, open_session


@dataclass(frozen=True)
class Metrics:
    psnr_db: float
    cosine: float
    max_abs_error: float

    def to_dict(self) -> dict[str, float]:
        """Rounded figures; an infinite PSNR (identical outputs) stays inf here and becomes null with its reason
        when written as JSON (edgediff.contract.strict_json_value)."""
        return {"psnr_db": round(self.psnr_db, 3) if math.isfinite(self.psnr_db) else self.psnr_db,
                "cosine": round(self.cosine, 7) if math.isfinite(self.cosine) else self.cosine,
                "max_abs_error": float(f"{self.max_abs_error:.4g}")}


def compare(reference: np.ndarray, candidate: np.ndarray) -> Metrics:
    """PSNR (dB, peak = reference range), cosine similarity and max-abs error of two same-shaped arrays."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    got = np.asarray(candidate, dtype=np.float64).ravel()
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {np.shape(reference)} vs candidate {np.shape(candidate)}")
    if not np.all(np.isfinite(got)):
        return Metrics(float("-inf"), float("nan"), float("inf"))
    err = ref - got
    mse = float(np.mean(err**2))
    peak = float(ref.max() - ref.min()) or 1.0
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)
    denom = float(np.linalg.norm(ref) * np.linalg.norm(got))
    cosine = float(ref @ got / denom) if denom else (1.0 if not ref.any() and not got.any() else 0.0)
    return Metrics(psnr, cosine, float(np.max(np.abs(err))))


def worst(metrics: list[Metrics]) -> Metrics:
    """The gate judges the worst sample, not the mean: one bad input is a bug."""
    return Metrics(
        min(m.psnr_db for m in metrics), min(m.cosine for m in metrics), max(m.max_abs_error for m in metrics)
    )


@dataclass(frozen=True)
class Thresholds:
    min_psnr_db: float
    min_cosine: float


@dataclass
class ComponentResult:
    component: str
    status: str  # "passed", "failed" or "skipped"
    metrics: Metrics | None = None
    samples: int = 0
    reason: str = ""
    per_output: dict[str, Metrics] = field(default_factory=dict)
    structural: dict[str, Any] | None = None  # backends that cannot run here report structural checks

    def shortfall(self, limits: Thresholds) -> str:
        m = self.metrics
        if m is None:
            return f"{self.component}: not measured"
        parts = []
        if m.psnr_db < limits.min_psnr_db:
            parts.append(f"PSNR {m.psnr_db:.1f} dB < {limits.min_psnr_db:g} dB")
        if m.cosine < limits.min_cosine:
            parts.append(f"cosine {m.cosine:.5f} < {limits.min_cosine:g}")
        return f"{self.component}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "samples": self.samples}
        if self.metrics is not None:
            data.update(self.metrics.to_dict())
        if self.reason:
            data["reason"] = self.reason
        return data


def check_component(name: str, reference_fn, candidate_fn, inputs_list: list[Mapping[str, np.ndarray]],
                    limits: Thresholds) -> ComponentResult:
    """Run both sides on every input set; judge the worst sample of every output."""
    pairs = [(inputs, reference_fn(inputs)) for inputs in inputs_list]
    return check_references(name, pairs, candidate_fn, limits)


def check_references(name: str, pairs: list, candidate_fn, limits: Thresholds) -> ComponentResult:
    """The artifact on each sample's inputs against the PyTorch outputs computed earlier (two-phase verify)."""
    per_output: dict[str, list[Metrics]] = {}
    for inputs, ref in pairs:
        got = candidate_fn(inputs)
        for key, value in ref.items():
            if key not in got:
                raise ParityError([f"{name}: artifact produced no output '{key}' (got {', '.join(got)})"])
            per_output.setdefault(key, []).append(compare(value, got[key]))
    worst_per_output = {k: worst(v) for k, v in per_output.items()}
    overall = worst(list(worst_per_output.values()))
    ok = overall.psnr_db >= limits.min_psnr_db and overall.cosine >= limits.min_cosine
    return ComponentResult(name, "passed" if ok else "failed", overall, len(pairs), per_output=worst_per_output)


def component_references(components: list[Component], samples: int) -> dict[str, list]:
    """Every component's PyTorch outputs on its `samples` seeded inputs: the first phase of verify, run while the
    weights are loaded, so the artifacts' sessions can open after the PyTorch model is released."""
    refs = {}
    for component in tqdm(components, desc="verify (PyTorch side)", unit="component"):
        inputs = [component.example_inputs(seed) for seed in range(1, samples + 1)]
        refs[component.name] = [(x, component.run_torch(x)) for x in inputs]
    return refs


def gate(results: list[ComponentResult], limits: Mapping[str, Thresholds]) -> None:
    """Raise ParityError naming every failing component and its shortfall."""
    found = failures(results, limits, {})
    if found:
        raise ParityError(found)


# ---- the stage ---------------------------------------------------------------------------------------------------

StructuralCheck = Callable[[Artifact], "dict[str, Any] | None"]


def verify_artifacts(components: list[Component], artifacts: Mapping[str, Artifact], backend: str,
                     session_options: SessionOptions, limits: Mapping[str, Thresholds], samples: int,
                     runnable: tuple[bool, str] = (True, ""),
                     structural_check: StructuralCheck | None = None,
                     references: Mapping[str, list] | None = None) -> list[ComponentResult]:
    """Each artifact, opened as the runtime opens it, against its PyTorch component on `samples` seeded inputs;
    skipped (with the reason) where the backend cannot run here, plus the backend's structural checks. With
    `references` (component_references, computed before the PyTorch weights were released) no module runs
    here; one session is open at a time either way, and a chunked one holds one chunk at a time."""
    can_run, why = runnable
    results = []
    for component in tqdm(components, desc="verify", unit="component"):
        artifact = artifacts[component.name]
        if not can_run:
            result = ComponentResult(component.name, "skipped", reason=why)
        else:
            pairs = references[component.name] if references is not None else \
                component_references([component], samples)[component.name]
            session = open_session(artifact, backend, one_chunk_at_a_time(session_options))
            result = check_references(component.name, pairs, session.run, limits[component.name])
            del session  # closed before the next opens: at full size each holds gigabytes
        if structural_check is not None:
            result.structural = structural_check(artifact)
        results.append(result)
    return results


@dataclass(frozen=True)
class EndToEndSettings:
    """The one image the end-to-end gate compares: prompt, seed, sampler and the threshold."""

    prompt: str
    seed: int
    steps: int
    guidance_scale: float
    scheduler_class: str
    min_image_psnr_db: float


def end_to_end_settings(recipe, precision: Precision) -> EndToEndSettings:
    v, p = recipe.verify, recipe.pipeline
    threshold = v.min_image_psnr_db if v.min_image_psnr_db >= 0 else defaults.MIN_IMAGE_PSNR_DB[precision]
    return EndToEndSettings(v.prompt, v.seed, p.num_inference_steps, p.guidance_scale, p.scheduler, threshold)


def end_to_end(model, components: list[Component], artifacts: Mapping[str, Artifact], backend: str,
               session_options: SessionOptions, settings: EndToEndSettings,
               runnable: tuple[bool, str] = (True, "")) -> dict[str, Any]:
    """Full text -> image through the artifacts vs. through PyTorch, same tokens, scheduler and noise."""
    return finish(end_to_end_reference(model, components, artifacts, settings, runnable), artifacts, backend,
                  session_options)


def end_to_end_reference(model, components: list[Component], artifacts: Mapping[str, Artifact],
                         settings: EndToEndSettings, runnable: tuple[bool, str] = (True, "")) -> Pending | dict:
    """The end-to-end check's PyTorch image (phase one); the artifacts' image is its Pending's `finish`. A skip
    record (dict) when the check does not apply."""
    if getattr(model, "text_encoder_2", None) is not None and model.kind == "pipeline":  # SDXL: model/sdxl.py
        from edgediff.model.sdxl import end_to_end_reference as sdxl_reference

        return sdxl_reference(model, components, artifacts, settings, runnable)
    needed = ("text_encoder", "unet", "vae_decoder")
    if model.kind != "pipeline" or model.tokenizer_dir is None or not set(needed) <= set(artifacts):
        return {"status": "skipped", "reason": "needs a full pipeline (tokenizer, text_encoder, unet, vae_decoder)"}
    if not runnable[0]:
        return {"status": "skipped", "reason": runnable[1]}
    by_name = {c.name: c for c in components}
    unet_spec = by_name["unet"].inputs[0]
    if unet_spec.dims[1] != by_name["unet"].outputs[0].dims[1]:  # inpainting: latent + mask + masked image in
        return {"status": "skipped", "reason": f"the UNet takes {unet_spec.dims[1]} input channels for "
                f"{by_name['unet'].outputs[0].dims[1]} latent ones (an inpainting model): text to image does not apply"}
    time_cond = next((s.shape[1] for s in by_name["unet"].inputs if s.name == "timestep_cond"), 0)
    ids = sampling.tokenize(model.tokenizer_dir, [settings.prompt, ""])
    sampler = sampling.SamplingSettings(settings.prompt, settings.seed, settings.steps, settings.guidance_scale)
    scheduler_config, scaling = dict(model.scheduler_config), vae_scaling_factor(model.vae)
    cn = by_name.get("controlnet")
    names = needed + (("controlnet",) if cn is not None else ())

    def image(calls: Mapping[str, Any], side: str) -> np.ndarray:
        unet = calls["unet"]
        if cn is not None:  # every step runs the ControlNet on a fixed hint first (model/controlnet.py)
            from edgediff.model.controlnet import controlled_call

            unet = controlled_call(cn, calls["controlnet"], unet)
        return sampling.generate(
            calls["text_encoder"], unet, calls["vae_decoder"], input_ids=ids[:1], uncond_ids=ids[1:],
            scheduler=make_scheduler(settings.scheduler_class, scheduler_config), settings=sampler,
            latent_shape=(1,) + unet_spec.dims[1:], scaling_factor=scaling,
            unet_batch=unet_spec.dims[0], time_cond_dim=int(time_cond),
            progress=lambda steps: tqdm(steps, desc=f"end-to-end ({side})", unit="step", leave=False))

    reference = image({n: by_name[n].run_torch for n in names}, "pytorch")
    return Pending(names, lambda calls: image_psnr_record({"pytorch": reference, "artifact": image(calls, "artifact")},
                                                          settings), keep_open=2 if cn is not None else 1)


def failures(results: list[ComponentResult], limits: Mapping[str, Thresholds],
             end_to_end_record: Mapping[str, Any]) -> list[str]:
    """One line per failed check: components below their thresholds, and the end-to-end image."""
    found = [r.shortfall(limits[r.component]) for r in results if r.status == "failed"]
    if end_to_end_record.get("status") == "failed":
        found.append(f"end-to-end image: PSNR {end_to_end_record['psnr_db']:.1f} dB < "
                     f"{end_to_end_record['min_psnr_db']:g} dB")
    return found
