"""ONNX Runtime's int8 activation ranges, kept in the content-keyed stage cache (edgediff.slim.stage_cache).

Static QDQ needs the min/max of every tensor it quantizes, measured by running an augmented copy of the float
graph over the plan's calibration inputs (int8.calibrate_ranges). They depend only on the float graph and those
inputs, so the key is the sha256 of the float model file (and its external weights), of the calibration arrays,
and onnxruntime's version: converting the same model again (another output folder, a rerun after a failed
verify or profile, the same UNet in another recipe) reads them instead of calibrating again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgediff.contract import sha256_file
from edgediff.slim import stage_cache

KIND = "ort-int8-ranges"
FILE = "ranges.json"


def samples_digest(samples: list[Mapping[str, Any]]) -> str:
    """sha256 over every calibration array (name, dtype, shape, bytes), in order."""
    h = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            a = np.ascontiguousarray(sample[name])
            h.update(f"{name}:{a.dtype}:{list(a.shape)}".encode())
            h.update(a.data)
    return h.hexdigest()


def cached_ranges(float_path: Path, ranges_path: Path, samples: list[Mapping[str, Any]],
                  calibrate: Callable[[], None]) -> str:
    """Fill `ranges_path` from the cache, or run `calibrate()` (which writes it) and store the result.
    Returns "hit" or "miss"."""
    import onnxruntime

    files = sorted(p for p in Path(float_path).parent.iterdir() if p.is_file() and p.name != Path(ranges_path).name)
    inputs = {p.name: sha256_file(p) for p in files}
    inputs["calibration"] = samples_digest(samples)
    entry = stage_cache.entry(KIND, inputs, {"onnxruntime": onnxruntime.__version__})
    stored = entry.folder / FILE
    if entry.done and stored.is_file():
        shutil.copyfile(stored, ranges_path)
        return "hit"
    calibrate()
    try:  # best effort: a cache that cannot be written (full disk, a parallel run finishing first) costs nothing
        partial = entry.folder / f"{FILE}.{os.getpid()}.partial"
        shutil.copyfile(ranges_path, partial)
        os.replace(partial, stored)
        if not entry.done:
            entry.finish({"samples": len(samples), "files": sorted(inputs)})
    except OSError:
        pass
    return "miss"
