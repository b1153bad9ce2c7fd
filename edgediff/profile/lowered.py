"""Time modules as a backend runs them: lower each to the backend, open it through the runtime's sessions.

Used by the latency tables that latency-driven pruning reads (edgediff.slim.latency_table): measuring how long a
block takes on a backend is profiling, so the backend is reached from here and slim never imports a backend.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from tqdm.auto import tqdm

from edgediff.backends.base import get_backend
from edgediff.contract import Precision, TensorSpec
from edgediff.model.components import Component
from edgediff.runtime.sessions import open_session


@dataclasses.dataclass
class LoweredRunners:
    """One zero-argument callable per module name (runs the lowered module on its example inputs)."""

    runners: dict[str, Callable[[], Any]]
    version: str


def lowered_runners(items: Mapping[str, tuple[Any, tuple, tuple[str, ...]]], backend_name: str,
                    precision: Precision, threads: int = 0, work_dir: Path | None = None,
                    progress: bool = True) -> LoweredRunners:
    """`items`: name -> (torch module, example tensors, input names). Every module is lowered once."""
    import torch

    backend = get_backend(backend_name)
    backend.check_available()
    options = backend.Options()
    if threads and hasattr(options, "threads"):
        options = dataclasses.replace(options, threads=threads)
    session_options = backend.session_options(options)
    runners: dict[str, Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(work_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, (module, tensors, input_names)) in enumerate(
                tqdm(items.items(), desc="lowering", disable=not progress)):
            with torch.no_grad():
                out = module(*tensors)
            safe = name.replace(".", "_").strip("_") or f"module_{i}"
            component = Component(f"{safe}_{i}", module,
                                  inputs=tuple(TensorSpec(n, tuple(t.shape)) for n, t in zip(input_names, tensors)),
                                  outputs=(TensorSpec("output", tuple(out.shape)),))
            artifact = backend.lower(component, options, precision, out_dir)
            session = open_session(artifact, backend.name, session_options)
            feed = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(input_names, tensors)}
            runners[name] = _bind(session.run, feed)
    return LoweredRunners(runners, backend.version())


def _bind(run: Callable, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    return lambda: run(feed)
