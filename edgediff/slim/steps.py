"""The recipe's `[[slim.steps]]`: each kind maps to a function (model, components, options) -> components.

Slimming issues register their kind here (prune, distill, quantize); an unknown kind is a recipe error that
lists the known ones. Steps run in recipe order, after the components are built and before lowering.
"""

from __future__ import annotations

from typing import Any, Callable

from edgediff.errors import RecipeError

SlimFn = Callable[[Any, list, dict], list]
_STEPS: dict[str, SlimFn] = {}


def register_step(kind: str):
    def wrap(fn: SlimFn) -> SlimFn:
        _STEPS[kind] = fn
        return fn

    return wrap


def apply_slim_steps(steps, model, components: list) -> list:
    for step in steps:
        if step.kind not in _STEPS:
            raise RecipeError(f"unknown slim step '{step.kind}' (known: {', '.join(sorted(_STEPS)) or 'none yet'})")
        components = _STEPS[step.kind](model, components, dict(step.options))
    return components


from edgediff.slim import distill as _distill  # noqa: E402,F401  (registers the `distill` step)
from edgediff.slim import quantize as _quantize  # noqa: E402,F401  (registers the `quantize` step)
from edgediff.slim import prune as _prune  # noqa: E402,F401  (registers the `prune` step)
