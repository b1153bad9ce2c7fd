"""The recipe's `distill` step through the stage cache: one student per (teacher, starting UNet, settings).

The starting UNet is the model's UNet as the earlier slim steps left it, so `prune -> distill` distils the
pruned UNet (SnapFusion's order) and a changed prune spec trains a new student. Training checkpoints live in
the entry's `work/run/`, so a killed run (or one stopped by `max_minutes`) continues from its newest checkpoint
when the recipe is run again; the entry is marked finished only when every step has been trained.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from edgediff.contract import sha256_file
from edgediff.errors import StageIncomplete
from edgediff.slim import stage_cache
from edgediff.slim.distill.run import distill

# Settings that change how a run is carried out, not what it computes: left out of the key.
_NOT_KEYED = {"teacher", "output", "run_dir", "max_minutes", "log_every", "checkpoint_every", "cpu", "student_init"}


def folder_digest(folder: Path) -> str:
    """sha256 over a model folder's weight and config files (the teacher is read from disk by the trainer)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json"))
    parts = [f"{p.relative_to(folder)}:{sha256_file(p)}" for p in files]
    return stage_cache.settings_digest(parts)


def cached_student(model: Any, options: dict[str, Any],
                   settings_from_options: Callable[[Path, dict[str, Any]], Any]) -> Path:
    """The student folder for this model and these options: reused when finished, else trained (resumed).
    `settings_from_options` is the recipe step's reader of its options (passed in: the step imports this module)."""
    teacher = Path(model.source)
    probe = settings_from_options(teacher, {**options, "output": "unused", "run_dir": "unused"})
    keyed = {k: v for k, v in asdict(probe).items() if k not in _NOT_KEYED}
    inputs = {"teacher": folder_digest(teacher), "student_init": stage_cache.module_digest(model.unet)}
    entry = stage_cache.entry("distill", inputs, keyed)
    student = entry.folder / "student"
    if entry.done:
        stage_cache.note("distill", entry.key, True, train_steps=entry.record().get("train_steps"))
        return student
    init = entry.work / "init_unet"
    if not (init / "config.json").is_file():
        tmp = entry.work / "init_unet.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.unet.save_pretrained(str(tmp), safe_serialization=True)
        tmp.rename(init)
    settings = settings_from_options(teacher, {**options, "output": student, "run_dir": entry.work / "run",
                                               "student_init": init})
    result = distill(settings)
    if result.loop.final_step < settings.max_steps:
        raise StageIncomplete(
            f"distill stopped at step {result.loop.final_step} of {settings.max_steps} (the {settings.max_minutes or 0:g}-"
            f"minute budget of one run); run the same command again to continue from step {result.loop.final_step}")
    entry.finish({"train_steps": result.loop.final_step, "started_at_step": result.loop.start_step,
                  "seconds": round(result.loop.seconds, 1), "settings": keyed, "inputs": inputs})
    stage_cache.note("distill", entry.key, False, train_steps=result.loop.final_step,
                     started_at_step=result.loop.start_step)
    return student
