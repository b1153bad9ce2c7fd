"""A chunked component run with one chunk's session open at a time (`SessionOptions.one_chunk_at_a_time`).

Why: the runtime's default chain (ChainedSession) opens every chunk up front, which is fastest for a sampling
loop but holds every chunk at once; XNNPACK packs its own copy of each LiteRT chunk's weights beside the mmapped
file, so full-size SDXL's 8 UNet chunks reached 21 GB in verify. Here chunk i is opened, run, and closed (memory
trimmed) before chunk i+1 opens; only the tensors later chunks or the caller need are kept. The same interpreter
code runs on the same inputs, so the outputs are bit-identical to the chain's; the price is reopening every chunk
on every call.

`LIVE` counts the runtime's open sessions per backend (weak references, so a closed session drops out by
itself) and the most open at once: a test or a memory report reads it instead of guessing.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from edgediff.runtime.memory import release_memory

if TYPE_CHECKING:
    from edgediff.contract import Artifact


class _Runs(Protocol):
    """What a chunk's session offers here (edgediff.runtime.sessions.Session; not imported: sessions imports
    this module)."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class LiveSessions:
    """The sessions of one kind alive now, and the most alive at once since the last `reset`."""

    def __init__(self) -> None:
        self._alive: weakref.WeakSet[Any] = weakref.WeakSet()
        self.most = 0
        self.opened = 0

    def add(self, session: Any) -> None:
        self._alive.add(session)
        self.opened += 1
        self.most = max(self.most, len(self._alive))

    def __len__(self) -> int:
        return len(self._alive)

    def reset(self) -> None:
        """Start a new high-water mark from the sessions alive now."""
        self.most, self.opened = len(self._alive), 0


LIVE: dict[str, LiveSessions] = {}


def track(backend: str, session: Any) -> None:
    """Register an opened session of `backend` (called by the session classes' constructors)."""
    LIVE.setdefault(backend, LiveSessions()).add(session)


def live(backend: str) -> LiveSessions:
    return LIVE.setdefault(backend, LiveSessions())


class StreamedChain:
    """Runs an artifact's chunks in order, each opened just before it runs and closed right after; chunk i sees
    the component's inputs plus every earlier output it names, as in ChainedSession."""

    def __init__(self, artifact: "Artifact", open_part: Callable[["Artifact"], _Runs]):
        self.inputs, self.outputs = artifact.inputs, artifact.outputs
        self._parts, self._open_part = list(artifact.parts), open_part
        # what each chunk must leave behind: the names any later chunk reads, plus the component's outputs
        wanted = {t.name for t in artifact.outputs}
        self._keep: list[set[str]] = []
        for part in reversed(self._parts):
            self._keep.append(set(wanted))
            wanted |= {t.name for t in part.inputs}
        self._keep.reverse()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pool = dict(feeds)
        for part, keep in zip(self._parts, self._keep):
            session = self._open_part(part)
            try:
                produced = session.run(pool)
            finally:
                del session  # the interpreter (and XNNPACK's packed weights) goes before the next chunk opens
                release_memory()
            pool.update(produced)
            pool = {name: value for name, value in pool.items() if name in keep or name in feeds}
        return {t.name: pool[t.name] for t in self.outputs}
