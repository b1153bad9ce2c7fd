"""`convert`'s lower and verify stages, ordered for memory: every PyTorch reference first (the end-to-end
PyTorch image and the guidance check's float side before lowering, each component's outputs on its seeded
inputs right after it is lowered), each component's weights released as soon as nothing later needs them, and
only then the artifacts' sessions, one open at a time.

Why: a full-size SDXL pipeline takes 13.6 GB in PyTorch and its UNet's ONNX Runtime session another ~10 GB; run
side by side they went over 20 GB. Releasing the text encoders (3.3 GB) once lowered also lowers the peak while
the UNet converts. Nothing after verify runs the PyTorch modules (the manifest reads configs, profiling
workers load their own copies), so the plan's modules end on the meta device (edgediff.phases).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tqdm import tqdm

from edgediff import phases, quality, verify
from edgediff.contract import Artifact
from edgediff.plan import Plan
from edgediff.runtime.sessions import SessionOptions


@dataclass
class Prepared:
    """Phase one's results: the artifacts and every PyTorch side, the PyTorch weights released."""

    artifacts: dict[str, Artifact]
    references: dict[str, list] = field(default_factory=dict)
    end_to_end: phases.Pending | dict[str, Any] = field(default_factory=dict)
    guidance: phases.Pending | dict[str, Any] = field(default_factory=dict)
    released_bytes: int = 0  # PyTorch weights released before the first session opened


@dataclass
class Verified:
    results: list[verify.ComponentResult]
    end_to_end: dict[str, Any]
    guidance: dict[str, Any]
    released_bytes: int


def _whole_model_references(plan: Plan, names: Mapping[str, Any], runnable: tuple[bool, str]) -> Prepared:
    """The checks that run several components together in PyTorch (end-to-end image, guidance float side)."""
    recipe = plan.recipe
    e2e: phases.Pending | dict[str, Any] = {"status": "skipped", "reason": "disabled in the recipe"}
    if recipe.verify.end_to_end:
        e2e = verify.end_to_end_reference(plan.model, plan.components, names,  # type: ignore[arg-type]
                                          verify.end_to_end_settings(recipe, plan.precision), runnable)
    guidance = quality.guidance_reference(plan.model, plan.components, names,  # type: ignore[arg-type]
                                          recipe.verify.min_guidance_ratio, plan.precision, plan.backend.name,
                                          runnable)
    return Prepared({}, end_to_end=e2e, guidance=guidance)


def lower_and_reference(plan: Plan, out_dir: Path, seconds: dict[str, float] | None = None,
                        keep_weights: bool = False) -> Prepared:
    """Lower every component; compute its PyTorch references right after, and release its weights when no
    later component shares them. Ends with every module of the plan on the meta device, unless `keep_weights`
    (a bundle with several sizes verifies its other sizes against PyTorch afterwards)."""
    runnable = plan.backend.can_run_here()
    seconds = seconds if seconds is not None else {}
    start = time.perf_counter()
    prepared = _whole_model_references(plan, {c.name: None for c in plan.components}, runnable)
    seconds["verify (PyTorch side)"] = time.perf_counter() - start
    released = 0
    for index, component in enumerate(tqdm(plan.components, desc=f"lower ({plan.backend.name})", unit="component")):
        start = time.perf_counter()
        prepared.artifacts[component.name] = plan.backend.lower(component, plan.options, plan.precision, out_dir)
        seconds[f"lower {component.name}"] = time.perf_counter() - start
        phases.release_memory()  # the exporter's copies
        start = time.perf_counter()
        if runnable[0]:
            prepared.references.update(verify.component_references([component], plan.recipe.verify.samples))
        if not keep_weights:
            released += phases.release_component(component, plan.components[index + 1:])
        seconds["verify (PyTorch side)"] += time.perf_counter() - start
    if not keep_weights:
        prepared.released_bytes = released + phases.release_weights(plan.model, plan.components)
    return prepared


def check(plan: Plan, prepared: Prepared, session_options: SessionOptions, runnable: tuple[bool, str],
          structural_check: Callable[[Artifact], "dict[str, Any] | None"] | None = None) -> Verified:
    """Phase two: the artifacts against the references, one session open at a time."""
    backend, artifacts = plan.backend.name, prepared.artifacts
    results = verify.verify_artifacts(plan.components, artifacts, backend, session_options, plan.limits,
                                      plan.recipe.verify.samples, runnable, structural_check=structural_check,
                                      references=prepared.references)
    return Verified(results, phases.finish(prepared.end_to_end, artifacts, backend, session_options),
                    phases.finish(prepared.guidance, artifacts, backend, session_options), prepared.released_bytes)


def run(plan: Plan, artifacts: dict[str, Artifact], session_options: SessionOptions, runnable: tuple[bool, str],
        structural_check: Callable[[Artifact], "dict[str, Any] | None"] | None = None) -> Verified:
    """Verify artifacts lowered elsewhere in two phases (every reference, release, then the sessions)."""
    prepared = _whole_model_references(plan, artifacts, runnable)
    prepared.artifacts = dict(artifacts)
    if runnable[0]:
        prepared.references = verify.component_references(plan.components, plan.recipe.verify.samples)
    prepared.released_bytes = phases.release_weights(plan.model, plan.components)
    return check(plan, prepared, session_options, runnable, structural_check)
