"""The one interface every backend implements, and the one table that lists the backends.

A backend lowers components into files; it does not run them. Running belongs to the runtime
(`edgediff.runtime.sessions`), so verify, profile, `generate`, golden files and the apps share one session path;
a backend only says how its artifacts should be opened (`session_options`). Adding a backend = one module (or
folder) defining a `Backend` subclass decorated with `@register`, plus one line in `BACKEND_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from edgediff.contract import PRECISIONS, Artifact, Precision
from edgediff.errors import RecipeError
from edgediff.model.components import Component
from edgediff.profile.record import OpTime
from edgediff.runtime.sessions import SessionOptions, open_session

__all__ = ["BACKEND_MODULES", "PRECISIONS", "Artifact", "Backend", "get_backend", "open_artifact", "options_from_dict",
           "register"]

# The one list of backends: name -> module. The CLI, the recipe validator and the conformance test read it.
BACKEND_MODULES = {
    "onnxruntime": "edgediff.backends.onnxruntime",
    "litert": "edgediff.backends.litert",
    "coreml": "edgediff.backends.coreml",
}

_REGISTRY: dict[str, type["Backend"]] = {}


class Backend(ABC):
    """lower -> (runtime) run. `Options` is the backend's typed settings dataclass (the recipe's [backend.options])."""

    name: ClassVar[str]
    Options: ClassVar[type]
    supported_precisions: ClassVar[tuple[Precision, ...]] = ("fp32",)
    default_precision: ClassVar[Precision] = "fp32"  # what a recipe without a precision converts at
    # False: int8 here means int8 weights computed in float (Core ML's weight compression), so the quantize step
    # searches a weight-only plan and records no activation ranges.
    int8_activations: ClassVar[bool] = True

    @abstractmethod
    def check_available(self) -> None:
        """Raise BackendUnavailable naming what to install when the SDK is missing."""

    @abstractmethod
    def lower(self, component: Component, options: Any, precision: Precision, out_dir: Path) -> Artifact:
        """Convert one component into files under out_dir."""

    def session_options(self, options: Any) -> SessionOptions:
        """How the runtime should open this backend's artifacts for the recipe's options."""
        return SessionOptions(threads=getattr(options, "threads", 0) or None)

    def can_run_here(self) -> tuple[bool, str]:
        """(True, "") when the runtime can run these artifacts on this machine; otherwise (False, why)."""
        return True, ""

    # ---- optional hooks, called by the orchestrator when a backend overrides them ------------------------------

    def structural_check(self, artifact: Artifact, options: Any, precision: Precision) -> dict[str, Any] | None:
        """Checks of the saved files that need no runtime (Core ML on Linux); None when the backend has none."""
        return None

    def finalize_bundle(self, bundle_dir: Path, artifacts: Mapping[str, Artifact], tokenizer_dir: Path | None,
                        options: Any, log=print) -> dict[str, Any] | None:
        """Last touches to a complete bundle (e.g. Apple's Swift layout); returns a manifest section or None."""
        return None

    def op_profile(self, artifact: Artifact, options: Any, inputs: Mapping[str, np.ndarray]) -> list[OpTime]:
        """Top ops by time; backends without an op profiler return []."""
        return []

    def version(self) -> str:
        return ""


def register(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.name] = cls
    return cls


def get_backend(name: str) -> Backend:
    if name not in BACKEND_MODULES:
        raise RecipeError(f"unknown backend '{name}' (valid: {', '.join(BACKEND_MODULES)})")
    if name not in _REGISTRY:
        importlib.import_module(BACKEND_MODULES[name])
    return _REGISTRY[name]()


def options_from_dict(options_type: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a typed options dataclass; unknown keys are errors that list the valid ones."""
    valid = {f.name for f in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise RecipeError(f"unknown key(s) {', '.join(unknown)} in [{where}] (valid: {', '.join(sorted(valid))})")
    return options_type(**values)


def open_artifact(backend: Backend, artifact: Artifact, options: Any):
    """`run(feeds) -> outputs` for an artifact this backend lowered, opened by the runtime as every consumer
    opens it (benchmarks and tests that hold a backend and its options use this)."""
    return open_session(artifact, backend.name, backend.session_options(options)).run
