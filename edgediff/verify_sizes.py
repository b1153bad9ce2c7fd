"""The verify stage at a bundle's other sizes: every component's parity and the end-to-end image again at each
size after the first (the first is verified by the usual stage; components without spatial inputs, such as the
text encoder, only there), through the same runtime sessions, so a signature, enumerated shape or dynamic axis
that is wrong at one size fails the conversion like any other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from edgediff import verify
from edgediff.contract import Artifact
from edgediff.model.sizes import at_size, size_name
from edgediff.runtime.sessions import SessionOptions


@dataclass
class SizeChecks:
    """Per size 'WxH': {"components": {name: record}, "end_to_end": record}; and one line per failed check."""

    record: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def several_sizes(components: list[Any]) -> tuple[tuple[int, int], ...]:
    """The plan's sizes when it makes more than one (first = the default), else () (a one-size bundle)."""
    return next((tuple(c.sizes) for c in components if len(getattr(c, "sizes", ()) or ()) > 1), ())


def verify_sizes(plan: Any, artifacts: Mapping[str, Artifact], backend: str, session_options: SessionOptions,
                 runnable: tuple[bool, str], first: tuple[list[verify.ComponentResult], dict[str, Any]]
                 ) -> SizeChecks:
    """Parity of every component and the end-to-end image at each size; `first` is the first size's results."""
    sizes = several_sizes(plan.components)
    checks = SizeChecks()
    if not sizes:
        return checks
    results, e2e = first
    checks.record[size_name(sizes[0])] = {"components": {r.component: r.to_dict() for r in results},
                                          "end_to_end": {k: v for k, v in e2e.items() if k != "images"}}
    recipe = plan.recipe
    for size in sizes[1:]:
        name = size_name(size)
        components = [at_size(c, size) for c in plan.components]
        sized = [c for c in components if c.sizes]  # a text encoder is the same at every size: checked once
        results = verify.verify_artifacts(sized, artifacts, backend, session_options, plan.limits,
                                          recipe.verify.samples, runnable)
        e2e = {"status": "skipped", "reason": "disabled in the recipe"}
        if recipe.verify.end_to_end:
            e2e = verify.end_to_end(plan.model, components, artifacts, backend, session_options,
                                    verify.end_to_end_settings(recipe, plan.precision), runnable)
        e2e = {k: v for k, v in e2e.items() if k != "images"}  # the arrays: the first size's strip is the report's
        checks.record[name] = {"components": {r.component: r.to_dict() for r in results}, "end_to_end": e2e}
        checks.failures += [f"at {name}: {line}" for line in verify.failures(results, plan.limits, e2e)]
    return checks
