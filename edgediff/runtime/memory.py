"""Giving memory back between sessions: collect garbage, then hand freed heap pages back to the OS.

Why here (in the torch-free runtime): a chunk chain opened one chunk at a time (edgediff.runtime.chunk_stream)
must trim after closing each chunk on a phone-sized host as much as convert's verify stage must; edgediff.phases
re-exports this one function so there is a single copy.
"""

from __future__ import annotations

import ctypes
import gc


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
