"""`edgediff prune MODEL --latency-budget RATIO`: latency table, quality measure, search, saved student.

Separate from the search algorithm: this is the wiring to the model folder, the latency tables and the
files a run leaves behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError, RecipeError
from edgediff.slim import latency_table as lt
from edgediff.slim.distill.defaults import read_model_defaults
from edgediff.slim.distill.teacher import load_teacher
from edgediff.slim.prune.quality import JudgeQuality, OutputDistance
from edgediff.slim.prune.search import SearchResult, greedy_search, plot_search
from edgediff.slim.prune.surgery import prune_unet, save_student
from edgediff.slim.prune.units import keeps_text_path, removal_units


@dataclass
class SearchSettings:
    """`edgediff prune MODEL --latency-budget RATIO --target NAME`."""

    model: Path  # diffusers pipeline folder (ideally robust-trained: `edgediff prune MODEL --robust`)
    output: Path  # where the pruned UNet folder goes; the search record goes to output/search/
    latency_budget: float  # target UNet latency as a fraction of the full UNet's (0.66 = 1.5x faster)
    target: str = "host-cpu"
    latency_table: Path | None = None  # a saved table instead of measuring
    latency_engine: str = "backend"  # or "pytorch"
    quality: str = "auto"  # "judge", "output" or "auto" (judge when one is found)
    judge: Path | None = None
    search_prompts: int | None = None  # per candidate: judged prompts (default 48) or distance samples (16)
    search_steps: int | None = None  # default: the model's edgediff.json steps, else 25
    batched_cfg: bool = True
    swap_rounds: int = 1
    seed: int = 0
    latency_method: str = "ablation"  # or "blocks" (per-block figures; see latency_table)
    clock: str = "cpu"  # "cpu": process CPU time, robust to other processes' load; "wall" on an idle device
    threads: int = 1  # runtime threads while timing
    keep_text_path: bool = True  # never remove every cross-attention

    def __post_init__(self) -> None:
        self.model, self.output = Path(self.model), Path(self.output)
        if not 0.0 < self.latency_budget < 1.0:
            raise RecipeError(f"--latency-budget is the pruned UNet's latency as a fraction of the teacher's, in (0, 1); "
                              f"got {self.latency_budget} (0.66 asks for 1.5x faster)")
        if self.quality not in ("auto", "judge", "output"):
            raise RecipeError(f"quality must be auto, judge or output, got {self.quality!r}")


def run_search(settings: SearchSettings, progress: bool = True) -> tuple[SearchResult, Any, dict[str, Any]]:
    """Measure (or load) the latency table, search, save the trace, plot and the pruned UNet folder."""

    pipe = load_teacher(settings.model)
    unet = pipe.unet.eval()
    config = dict(unet.config)
    defaults = read_model_defaults(settings.model)
    record_dir = settings.output / "search"
    record_dir.mkdir(parents=True, exist_ok=True)
    if settings.latency_table is not None:
        table = lt.LatencyTable.load(settings.latency_table)
    else:
        batch = 2 if defaults.get("batched_cfg", settings.batched_cfg) else 1
        args = lt.example_unet_args(unet, batch=batch, text_length=pipe.tokenizer.model_max_length, seed=settings.seed)
        table = lt.measure_table(unet, args, target=settings.target, engine=settings.latency_engine,
                                 work_dir=record_dir / "blocks", progress=progress, method=settings.latency_method,
                                 units=removal_units(config), clock=settings.clock, threads=settings.threads)
    table.save(record_dir / "latency_table.json")

    quality: Any
    judge_dir = None
    if settings.quality in ("auto", "judge"):
        try:
            from edgediff.evaluate import find_judge  # optional: without it the search scores by OutputDistance

            judge_dir = find_judge(settings.model, settings.judge)
        except (ModelLoadError, ImportError):
            if settings.quality == "judge":
                raise
    if judge_dir is not None:
        steps = settings.search_steps or int(defaults.get("steps", 25))
        quality = JudgeQuality(pipe, judge_dir, prompts=settings.search_prompts or 48, steps=steps,
                               guidance=float(defaults.get("guidance", 4.0)), seed=settings.seed)
    else:
        quality = OutputDistance(pipe, samples=settings.search_prompts or 16, seed=settings.seed)

    units = removal_units(config, inner_stage=table.method == "ablation")  # block figures cannot price a stage
    budget_ms = settings.latency_budget * float(table.unet_ms)
    allowed = (lambda spec: keeps_text_path(config, spec)) if settings.keep_text_path else None
    result = greedy_search(config, units, quality, lambda s: table.estimate_ms(config, s), budget_ms,
                           swap_rounds=settings.swap_rounds, progress=progress, allowed=allowed)
    record = {
        "model": str(settings.model), "target": settings.target, "latency_budget": settings.latency_budget,
        "teacher_unet_ms": table.unet_ms, "table_coverage": table.coverage, "backend": table.backend,
        "table_method": table.method, "clock": table.clock, "threads": table.threads,
        "table_load_average": table.load_average, "keep_text_path": settings.keep_text_path,
        "quality": quality.label, "judge": str(judge_dir) if judge_dir else None,
        "units": [u.describe() for u in units], **result.to_dict(),
    }
    (record_dir / "trace.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_search(result, record_dir / "quality_latency.png", float(table.unet_ms), quality.label)
    student = prune_unet(unet, result.spec)
    save_student(student, settings.output, result.spec, str(settings.model),
                 {"search": str(record_dir / "trace.json"),
                  "estimated_ms": result.trace[-1].latency_ms, "teacher_ms": table.unet_ms})
    return result, table, record
