"""`edgediff convert`, stage by stage: plan (load + slim) -> lower -> verify -> profile -> bundle -> report.

Each stage is one call into its own module and hands the next one typed results; nothing reaches into another
stage's internals. Work happens in a hidden staging folder (edgediff.bundle.staged_output), so a run that fails
or is interrupted never leaves a folder that looks complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgediff import bundle, phases, quality, report, verify, verify_stage
from edgediff.contract import MANIFEST_FILE, read_strict_json
from edgediff.errors import ParityError
from edgediff.plan import Plan
from edgediff.profile.host import profile_bundle
from edgediff.profile.record import write_records
from edgediff.targets import load_target
from edgediff.verify_sizes import several_sizes, verify_sizes


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def convert(plan: Plan, output_dir: Path, log=print) -> Path:
    """Lower, verify, profile and bundle. Returns the finished bundle folder."""
    recipe, backend = plan.recipe, plan.backend
    final_dir = Path(output_dir) / backend.name
    session_options = backend.session_options(plan.options)
    runnable = backend.can_run_here()
    times = StageTimes()
    with bundle.staged_output(final_dir) as staging:
        # lower, each component's PyTorch references right after it, weights released as soon as unneeded
        prepared = verify_stage.lower_and_reference(plan, staging, times.seconds,
                                                    keep_weights=bool(several_sizes(plan.components)))
        artifacts = prepared.artifacts
        start = time.perf_counter()
        checked = verify_stage.check(  # then the artifacts' sessions, one open at a time
            plan, prepared, session_options, runnable,
            structural_check=lambda a: backend.structural_check(a, plan.options, plan.precision))
        results, e2e, guidance = checked.results, checked.end_to_end, checked.guidance
        # a bundle with several sizes: the other sizes against PyTorch (whose weights were kept for them)
        sized = verify_sizes(plan, artifacts, backend.name, session_options, runnable, (results, e2e))
        times.add("verify", start)

        manifest = bundle.build_manifest(recipe, plan.model, backend.name, backend.version(), plan.components,
                                         artifacts, results, plan.limits, e2e, staging)
        swift = backend.finalize_bundle(staging, artifacts, plan.model.tokenizer_dir, plan.options, log)
        if swift is not None:
            manifest.extra["swift"] = swift
        if plan.stage_records:  # which slim stages this run reused from the stage cache and which it computed
            manifest.extra["stage_cache"] = plan.stage_records
        manifest.extra["guidance_check"] = guidance
        if sized.record:
            manifest.verify["sizes"] = sized.record
        manifest.write(staging)
        accuracy: dict = {}
        if recipe.verify.accuracy_prompts and runnable[0]:  # the finished bundle through the runtime, on the judge
            accuracy = quality.prompt_accuracy(staging, recipe.model.source, recipe.verify.accuracy_prompts,
                                               recipe.pipeline.num_inference_steps, recipe.pipeline.guidance_scale,
                                               recipe.verify.min_prompt_accuracy)
            manifest.extra["prompt_accuracy"] = accuracy
            manifest.write(staging)

        records = []
        if recipe.profile.enabled:
            phases.release_memory()  # the profiling workers load their own copies; give the verify sessions' memory back
            start = time.perf_counter()
            records = profile_bundle(staging, runs=recipe.profile.runs, warmup=recipe.profile.warmup,
                                     compare_pytorch=recipe.profile.compare_pytorch,
                                     op_profile=recipe.profile.op_profile, log=log,
                                     module=recipe.model.module or None)
            times.add("profile", start)
            write_records(records, staging / "profile.json")
            target = load_target(recipe.backend.target) if recipe.backend.target else None
            memory = bundle.memory_entry(records, backend.name, target)
            if memory is not None:
                manifest.extra["memory"] = memory
                if memory.get("note"):
                    log(f"note: {memory['note']}")
        manifest.extra["timings_s"] = {k: round(v, 2) for k, v in times.seconds.items()}
        manifest.write(staging)
        report.write_report(staging, read_strict_json(staging / MANIFEST_FILE), records)
        failures = (verify.failures(results, plan.limits, e2e) + quality.guidance_failure(guidance)
                    + quality.accuracy_failure(accuracy) + sized.failures)
        if failures:
            error = ParityError(failures)
            error.keep_output = True
            raise error
    return final_dir
