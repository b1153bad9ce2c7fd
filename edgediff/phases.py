"""Two-phase verify's pieces: what a check computed in PyTorch and still has to run on the artifacts, artifact
sessions opened one at a time, and releasing the PyTorch weights between the two phases.

Why: at full size the PyTorch model and an artifact's session do not fit in memory together (SDXL: a 13.6 GB
random-weight pipeline plus a 10 GB ONNX Runtime UNet session went over 20 GB). So every PyTorch reference is
computed first, the weights are released (`release_weights`), and only then do the sessions open, each closed
before the next.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from edgediff.contract import Artifact
from edgediff.runtime.memory import release_memory
from edgediff.runtime.sessions import Session, SessionOptions, open_session

Call = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
MODEL_MODULES = ("text_encoder", "text_encoder_2", "unet", "vae", "custom", "controlnet")


@dataclass
class Pending:
    """A check whose PyTorch side is done: `finish(calls)` runs the artifact side given one call per component
    name in `names` (sessions opened lazily, at most `keep_open` at a time) and returns the check's record."""

    names: tuple[str, ...]
    finish: Callable[[Mapping[str, Call]], dict[str, Any]]
    keep_open: int = 1


class OneAtATime:
    """Artifact sessions opened on first use, at most `keep` of them open: opening another closes the least
    recently used one first (a ControlNet pipeline alternates two components every step: keep=2)."""

    def __init__(self, artifacts: Mapping[str, Artifact], backend: str, options: SessionOptions, keep: int = 1):
        self._artifacts, self._backend, self._options, self._keep = artifacts, backend, options, max(1, keep)
        self._open: OrderedDict[str, Session] = OrderedDict()

    def session(self, name: str) -> Session:
        session = self._open.pop(name, None)
        if session is None:
            while len(self._open) >= self._keep:
                self._open.popitem(last=False)
                release_memory()
            session = open_session(self._artifacts[name], self._backend, one_chunk_at_a_time(self._options))
        self._open[name] = session
        return session

    def call(self, name: str) -> Call:
        return lambda feeds: self.session(name).run(feeds)

    def calls(self, names: Iterable[str]) -> dict[str, Call]:
        return {name: self.call(name) for name in names}

    def close(self) -> None:
        self._open.clear()
        release_memory()


def finish(pending: Pending | dict[str, Any], artifacts: Mapping[str, Artifact], backend: str,
           options: SessionOptions) -> dict[str, Any]:
    """A check's record: a skip record as it is, a Pending run on the artifacts one session at a time."""
    if isinstance(pending, dict):
        return pending
    sessions = OneAtATime(artifacts, backend, options, pending.keep_open)
    try:
        return pending.finish(sessions.calls(pending.names))
    finally:
        sessions.close()


def one_chunk_at_a_time(options: SessionOptions) -> SessionOptions:
    """`options` with chunked artifacts opened one chunk at a time: verify's sessions, so a chunked UNet never
    holds all its chunk interpreters at once (full-size SDXL on LiteRT: 8 of them reached 21 GB). The outputs
    are the chain's, bit for bit; each call reopens the chunks, which verify's few calls can afford."""
    return dataclasses.replace(options, one_chunk_at_a_time=True)


def torch_modules(model: Any, components: Iterable[Any]) -> list[Any]:
    """The PyTorch modules a plan holds: the loaded model's and each (possibly slimmed) component's."""
    import torch

    found: list[Any] = []
    candidates = [getattr(model, name, None) for name in MODEL_MODULES] + [c.module for c in components]
    for module in candidates:
        if isinstance(module, torch.nn.Module) and not any(module is m for m in found):
            found.append(module)
    return found


def _to_meta(tensor):
    return tensor.to("meta")


def release_component(component: Any, later: Iterable[Any]) -> int:
    """Release the weights of `component`'s module that no `later` component uses (the VAE's decoder and encoder
    share a module, a ControlNet borrows nothing): each submodule whose own tensors are all unshared goes to the
    meta device. Returns the bytes released."""
    import torch

    if not isinstance(component.module, torch.nn.Module):
        return 0
    keep = {id(t) for c in later if isinstance(c.module, torch.nn.Module)
            for t in [*c.module.parameters(), *c.module.buffers()]}
    released = 0
    for sub in component.module.modules():
        own = [*sub.parameters(recurse=False), *sub.buffers(recurse=False)]
        if own and not any(id(t) in keep for t in own) and any(t.device.type != "meta" for t in own):
            released += sum(t.numel() * t.element_size() for t in own if t.device.type != "meta")
            sub._apply(_to_meta, recurse=False)
    release_memory()
    return released


def release_weights(model: Any, components: Iterable[Any]) -> int:
    """Move every parameter and buffer of the plan's modules to the meta device (shapes and configs stay, the
    storage goes) and give the memory back; returns the bytes released. What runs after verify reads configs
    only (the manifest, the Swift layout); profiling workers load their own copies. A module used after this
    fails loudly (meta tensors have no data) instead of silently holding gigabytes."""
    released = 0
    for module in torch_modules(model, components):
        tensors = [*module.parameters(), *module.buffers()]
        released += sum(t.numel() * t.element_size() for t in tensors if t.device.type != "meta")
        module.to("meta")
    release_memory()
    return released
