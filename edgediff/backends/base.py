"""The one interface every backend implements, and the registry that finds them.

A backend is one module in this package that defines a `Backend` subclass decorated with `@register`.
Adding one touches no other backend: list its module in `BACKEND_MODULES` and the CLI, the recipe validator
and the conformance test pick it up.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from edgediff.errors import RecipeError
from edgediff.model.components import Component, TensorSpec

BACKEND_MODULES = {
    "onnxruntime": "edgediff.backends.onnxruntime",
    "litert": "edgediff.backends.litert",
    "coreml": "edgediff.backends.coreml",
}
PRECISIONS = ("fp32", "fp16", "int8")

_REGISTRY: dict[str, type["Backend"]] = {}


@dataclass
class Artifact:
    """What `lower` produced for one component: a file (or package dir) plus its I/O contract.

    `chunks` is non-empty when the backend split the component into several files chained through named
    tensors (outputs of chunk i feed the same-named inputs of later chunks, next to the original inputs).
    """

    component: str
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    chunks: list["Artifact"] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """Every file the artifact consists of (external data, chunks), relative-path friendly."""
        paths = [c.path for c in self.chunks] if self.chunks else [self.path]
        found = []
        for p in paths:
            found.append(p)
            found.extend(Path(f) for f in self.meta.get("extra_files", {}).get(p.name, []))
        return found


Session = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class Backend(ABC):
    """lower -> load -> run. `Options` is the backend's typed settings dataclass (a recipe table)."""

    name: ClassVar[str]
    Options: ClassVar[type]
    # Components this backend cannot express; checked before lowering so the error comes early and plainly.
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    default_precision: ClassVar[str] = "fp32"  # what a recipe without a precision converts at
    # False: int8 here means int8 weights computed in float (Core ML's weight compression), so the quantize step
    # searches a weight-only plan and records no activation ranges.
    int8_activations: ClassVar[bool] = True

    @abstractmethod
    def check_available(self) -> None:
        """Raise BackendUnavailable naming what to install when the SDK is missing."""

    @abstractmethod
    def lower(self, component: Component, options: Any, precision: str, out_dir: Path) -> Artifact:
        """Convert one component into files under out_dir."""

    @abstractmethod
    def load(self, artifact: Artifact, options: Any) -> Session:
        """Return a callable that runs the artifact on named numpy inputs (BackendUnavailable if it can't here)."""

    def can_run_here(self) -> tuple[bool, str]:
        """(True, "") when `load` works on this machine; otherwise (False, why) so checks skip with a reason."""
        return True, ""

    def op_profile(self, artifact: Artifact, options: Any, inputs: Mapping[str, np.ndarray]) -> list[Any]:
        """Top ops by time as OpTime records; backends without an op profiler return []."""
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


def backend_options_type(name: str) -> type:
    return type(get_backend(name)).Options


def options_from_dict(options_type: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a typed options dataclass; unknown keys are errors that list the valid ones."""
    valid = {f.name for f in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise RecipeError(f"unknown key(s) {', '.join(unknown)} in [{where}] (valid: {', '.join(sorted(valid))})")
    return options_type(**values)
