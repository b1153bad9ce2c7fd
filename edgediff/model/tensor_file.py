"""Read a weights file from a stranger: names and shapes first (cheap, checked), tensors only when asked.

Single-file checkpoints and LoRAs arrive as `.safetensors` (a length-prefixed JSON header, then raw data) or as
pickles (`.ckpt`, `.pt`, `.pth`, `.bin`). The safetensors header is checked before anything is allocated: its
claimed size against a cap and the file size (a header that claims 2**60 bytes is a memory bomb), every tensor's
byte range against its dtype and shape and the data section. Pickles only go through
`torch.load(weights_only=True)`, which refuses arbitrary objects.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edgediff.errors import ModelLoadError

# Real headers: SD 1.x ~0.1 MB, SDXL ~0.3 MB, a kohya LoRA with its training tags a few MB.
MAX_HEADER_BYTES = 64 * 1024 * 1024
SAFETENSORS_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                          "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


@dataclass
class TensorFile:
    """One weights file: tensor names -> shapes, the file's string metadata, and (for pickles) the loaded dict."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # non-tensor entries of a pickle (e.g. global_step)
    _tensors: dict[str, Any] | None = None  # a pickle is loaded whole (memory-mapped when its format allows)

    def load(self, names: Iterable[str]) -> dict[str, Any]:
        """The named tensors, as stored (dtype unchanged)."""
        names = list(names)
        if self._tensors is not None:
            return {n: self._tensors[n] for n in names}
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as handle:
                return {n: handle.get_tensor(n) for n in names}
        except Exception as exc:  # safetensors raises its own error types for corrupt data
            raise ModelLoadError(f"{self.path}: reading tensors failed ({exc}); the file may be truncated: "
                                 "copy it again") from None

    def load_all(self) -> dict[str, Any]:
        return self.load(self.shapes)


def open_tensor_file(path: Path) -> TensorFile:
    """Names and shapes of a weights file (a pickle is loaded here; safetensors only reads its header)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _open_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _open_pickle(path)
    raise ModelLoadError(f"{path}: unknown weights format '{path.suffix}' (use {', '.join(SUFFIXES)})")


def _open_safetensors(path: Path) -> TensorFile:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ModelLoadError(f"{path} is too short to be a safetensors file ({size} bytes); copy it again")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise ModelLoadError(
                f"{path}: the safetensors header claims {header_len:,} bytes but the file has {size:,} "
                f"(limit {MAX_HEADER_BYTES:,}); the file is truncated or not a safetensors file")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: the safetensors header is not valid JSON ({exc}); the file is corrupt") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: the safetensors header is not a JSON object; the file is corrupt")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelLoadError(f"{path}: the safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - header_len
    shapes = {}
    for name, entry in header.items():
        shapes[name] = _checked_entry(path, name, entry, data_len)
    return TensorFile(path, shapes, metadata)


def _checked_entry(path: Path, name: str, entry: Any, data_len: int) -> tuple[int, ...]:
    def bad(why: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: tensor '{name[:120]}' {why}; the file is corrupt or not a real checkpoint")

    if not isinstance(entry, dict):
        raise bad("has no header entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_ITEM_BYTES:
        raise bad(f"has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise bad(f"has an invalid shape {str(shape)[:60]}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise bad("has invalid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise bad(f"points at bytes {begin}..{end} outside the {data_len:,}-byte data section (truncated file?)")
    if end - begin != math.prod(shape) * SAFETENSORS_ITEM_BYTES[dtype]:
        raise bad(f"claims shape {shape} of {dtype} but spans {end - begin} bytes")
    return tuple(shape)


def _open_pickle(path: Path) -> TensorFile:
    import torch

    def load(mmap: bool):
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            state = load(mmap=True)  # zip-format checkpoints map lazily: no full read just to learn the shapes
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = load(mmap=False)  # the legacy (pre-1.6) format cannot be memory-mapped
    except Exception as exc:
        raise ModelLoadError(
            f"{path} could not be loaded with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); edgediff never unpickles arbitrary objects: "
            "convert it to safetensors") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        extras = {k: v for k, v in state.items() if k != "state_dict" and not isinstance(v, dict)}
        state = state["state_dict"]
    else:
        extras = {}
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict (got {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    extras.update({k: v for k, v in state.items() if isinstance(k, str) and not isinstance(v, torch.Tensor)})
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    return TensorFile(path, shapes, {}, extras, tensors)
