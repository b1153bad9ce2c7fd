"""The recipe's `[[slim.steps]]`: each kind maps to a function (model, components, options) -> components.

`STEP_FUNCTIONS` is the one table of kinds (like the backends' table); a step module is imported only when a
recipe uses it, so importing this module loads no training code. An unknown kind is a recipe error that lists
the known ones. Steps run in recipe order, after the components are built and before lowering; whatever a step
needs from the chosen backend, the orchestrator has already written into its options (edgediff.plan.slim_steps).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from edgediff.errors import RecipeError

SlimFn = Callable[[Any, list, dict], list]

STEP_FUNCTIONS = {
    "prune": "edgediff.slim.prune.recipe_step:prune_slim_step",
    "distill": "edgediff.slim.distill.recipe_step:distill_slim_step",
    "quantize": "edgediff.slim.quantize:quantize_slim_step",
    "tiny_decoder": "edgediff.slim.tiny_decoder:tiny_decoder_slim_step",
}


def step_function(kind: str) -> SlimFn:
    if kind not in STEP_FUNCTIONS:
        raise RecipeError(f"unknown slim step '{kind}' (known: {', '.join(sorted(STEP_FUNCTIONS))})")
    module, _, name = STEP_FUNCTIONS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def apply_slim_steps(steps, model, components: list) -> list:
    for step in steps:
        components = step_function(step.kind)(model, components, dict(step.options))
    return components
