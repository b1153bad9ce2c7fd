"""The external-data files an .onnx file names, read from its protobuf bytes without the `onnx` package (the
runtime installs without it), so a session refuses a model whose weights point outside its bundle folder.

ONNX Runtime resolves each tensor's `location` relative to the model file and reads `length` bytes at `offset`:
a hostile `../../home/you/.ssh/id_rsa` or an absolute path would be read into a weight. Recent ONNX Runtime
versions refuse such paths themselves; older ones (the runtime allows >= 1.20) do not, and the bundle's
checksums only cover the files the manifest lists. So every location must stay inside the model's folder
(edgediff.contract.inside) and be one of the side files the artifact lists (hence checksummed): an artifact that
lists none may read none.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator

from edgediff.contract import inside
from edgediff.errors import ModelLoadError

# protobuf field numbers (onnx/onnx.proto3): where TensorProtos live and where their external_data is
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE, _FUNCTION_NODE = 5, 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_MAX_DEPTH = 64  # nested subgraphs deeper than this are not a model anyone exported


Span = tuple[int, int]  # [start, end) of a length-delimited field inside the model's bytes


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data, span: Span) -> Iterator[tuple[int, Span | None]]:
    """(field number, span of a length-delimited field or None for scalar fields) of one message. Offsets, not
    slices: the data may be a memory map of a 1.9 GB model."""
    pos, end = span
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos, end)
            yield number, None
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            yield number, None
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise ValueError("truncated field")
            yield number, (pos, pos + length)
            pos += length
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")
        if pos > end:
            raise ValueError("truncated message")


def _tensor_locations(data, tensor: Span) -> Iterator[str]:
    for number, value in _fields(data, tensor):
        if number == _TENSOR_EXTERNAL_DATA and value is not None:
            entry = {k: v for k, v in _fields(data, value) if v is not None}
            if _ENTRY_KEY in entry and _ENTRY_VALUE in entry and \
                    bytes(data[slice(*entry[_ENTRY_KEY])]) == b"location":
                yield bytes(data[slice(*entry[_ENTRY_VALUE])]).decode("utf-8", errors="replace")


def _sparse_locations(data, sparse: Span) -> Iterator[str]:
    for number, value in _fields(data, sparse):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES) and value is not None:
            yield from _tensor_locations(data, value)


def _node_locations(data, node: Span, depth: int) -> Iterator[str]:
    for number, value in _fields(data, node):
        if number != _NODE_ATTRIBUTE or value is None:
            continue
        for attr_field, attr_value in _fields(data, value):
            if attr_value is None:
                continue
            if attr_field in (_ATTR_T, _ATTR_TENSORS):
                yield from _tensor_locations(data, attr_value)
            elif attr_field in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                yield from _sparse_locations(data, attr_value)
            elif attr_field in (_ATTR_G, _ATTR_GRAPHS):
                yield from _graph_locations(data, attr_value, depth + 1)


def _graph_locations(data, graph: Span, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise ValueError(f"subgraphs nested deeper than {_MAX_DEPTH}")
    for number, value in _fields(data, graph):
        if value is None:
            continue
        if number == _GRAPH_INITIALIZER:
            yield from _tensor_locations(data, value)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            yield from _sparse_locations(data, value)
        elif number == _GRAPH_NODE:
            yield from _node_locations(data, value, depth)


def external_locations(data: bytes | mmap.mmap) -> list[str]:
    """Every distinct external-data `location` in a serialized ModelProto (graph, subgraphs, functions)."""
    found: list[str] = []
    for number, value in _fields(data, (0, len(data))):
        if value is None:
            continue
        if number == _MODEL_GRAPH:
            locations = _graph_locations(data, value, 0)
        elif number == _MODEL_FUNCTIONS:
            locations = (loc for f, node in _fields(data, value) if f == _FUNCTION_NODE and node is not None
                         for loc in _node_locations(data, node, 0))
        else:
            continue
        for location in locations:  # every tensor names its file: keep each file once, in first-seen order
            if location not in found:
                found.append(location)
    return found


def check_external_data(model_path: Path, listed: list[Path] | None = None) -> list[Path]:
    """The model's external-data files, each checked to stay inside the model's folder and (when `listed` is
    given, even empty) to be one of the artifact's side files, which the manifest checksums. `listed=None` is
    for a model no manifest describes. Raises ModelLoadError naming the offending location."""
    try:
        with open(model_path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ValueError("empty file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:  # a 1.9 GB model: no copy
                locations = external_locations(mapped)
    except ValueError as exc:
        raise ModelLoadError(f"{model_path} is not a readable ONNX model ({exc}); re-export it or re-convert "
                             "the bundle") from None
    root = Path(model_path).parent
    allowed = None if listed is None else {Path(p).resolve() for p in listed}
    paths = []
    for location in locations:
        path = inside(root, location, f"{Path(model_path).name}: external data location")
        if allowed is not None and path.resolve() not in allowed:
            raise ModelLoadError(f"{Path(model_path).name} reads weights from {location!r}, which the manifest "
                                 "does not list among its files (so no checksum covers it); the bundle is "
                                 "inconsistent or tampered with: re-convert it")
        paths.append(path)
    return paths
