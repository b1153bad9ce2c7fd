"""One small Session interface over ONNX Runtime, LiteRT and Core ML.

A session maps the manifest's tensor names to arrays, casts inputs to what the model file declares (an
int32 `input_ids` in a LiteRT bundle, float16 in an fp16 bundle) and returns float32 outputs. A component
split into chunks (`components.<name>.chunks`) runs as one session: chunk i sees the component's inputs plus
every output of the chunks before it, matched by name. Each SDK is imported only when its backend is used.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgediff.errors import BackendUnavailable, ModelLoadError, UnsupportedError
from edgediff.runtime.manifest import ChunkSpec, ComponentSpec, Manifest, TensorSpec

ORT_PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

_NUMPY_DTYPES = {
    "float32": np.float32, "float": np.float32, "float16": np.float16, "half": np.float16, "float64": np.float64,
    "double": np.float64, "int64": np.int64, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def numpy_dtype(name: str) -> type:
    try:
        return _NUMPY_DTYPES[name.lower()]
    except KeyError:
        raise UnsupportedError(f"tensor dtype {name!r} is not supported; use one of {', '.join(_NUMPY_DTYPES)}") from None


@dataclass
class SessionOptions:
    """How to run sessions. `providers` is an ONNX Runtime provider list (None: the best available)."""

    threads: int | None = None
    providers: list[str] | None = None
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    coreml_compute_units: str = "ALL"


class Session(Protocol):
    """Runs one component: named float/int arrays in, named float32 arrays out."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _as_float32(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    return value.astype(np.float32) if value.dtype in (np.float16, np.float64) else value


def _select(feeds: dict[str, np.ndarray], specs: tuple[TensorSpec, ...], where: str) -> dict[str, np.ndarray]:
    missing = [t.name for t in specs if t.name not in feeds]
    if missing:
        raise ModelLoadError(f"{where} needs inputs {missing} that nothing provides; check the manifest's input names")
    return {t.name: feeds[t.name] for t in specs}


class OnnxRuntimeSession:
    """An onnxruntime InferenceSession addressed by the manifest's tensor names."""

    def __init__(self, chunk: ChunkSpec, options: SessionOptions):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                "onnxruntime is not installed; `pip install onnxruntime` (or onnxruntime-gpu / the JetPack wheel on Jetson)"
            ) from exc
        self.inputs, self.outputs = chunk.inputs, chunk.outputs
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
        so.log_severity_level = 3
        self.providers = list(options.providers) if options.providers else available_ort_providers()
        provider_args = [(p, options.provider_options.get(p, {})) for p in self.providers]
        try:
            self._session = ort.InferenceSession(str(chunk.file), sess_options=so, providers=provider_args)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime could not load {chunk.file}: {exc}") from exc
        self._types = {i.name: _ORT_TYPES.get(i.type) for i in self._session.get_inputs()}
        names = set(self._types)
        unknown = [t.name for t in self.inputs if t.name not in names]
        if unknown:
            raise ModelLoadError(f"{chunk.file.name} has inputs {sorted(names)}, the manifest names {unknown}; the bundle is inconsistent")
        self._output_names = [t.name for t in self.outputs] or [o.name for o in self._session.get_outputs()]

    @property
    def active_providers(self) -> list[str]:
        return list(self._session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = _select(feeds, self.inputs, "onnxruntime session")
        cast = {}
        for spec in self.inputs:
            dtype = self._types.get(spec.name) or numpy_dtype(spec.dtype)
            cast[spec.name] = np.ascontiguousarray(chosen[spec.name], dtype=dtype)
        values = self._session.run(self._output_names, cast)
        return {name: _as_float32(v) for name, v in zip(self._output_names, values)}


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


class LiteRTSession:
    """An ai_edge_litert Interpreter signature. Manifest names map to signature names when they match,
    else by position (litert-torch names exported arguments args_0, args_1, ... and outputs output_0, ...)."""

    def __init__(self, chunk: ChunkSpec, options: SessionOptions):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable("ai-edge-litert is not installed; `pip install ai-edge-litert`") from exc
        self.inputs, self.outputs = chunk.inputs, chunk.outputs
        try:
            self._interpreter = Interpreter(model_path=str(chunk.file), num_threads=options.threads or None)
        except Exception as exc:
            raise ModelLoadError(f"LiteRT could not load {chunk.file}: {exc}") from exc
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            raise ModelLoadError(f"{chunk.file.name} has no signature; export it with litert-torch (it writes serving_default)")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self._runner = self._interpreter.get_signature_runner(key)
        sig_inputs = sorted(signatures[key]["inputs"], key=_natural_key)
        sig_outputs = sorted(signatures[key]["outputs"], key=_natural_key)
        self._in_map = self._map([t.name for t in self.inputs], sig_inputs, "inputs", chunk.file)
        self._out_map = self._map([t.name for t in self.outputs], sig_outputs, "outputs", chunk.file)
        details = self._runner.get_input_details()
        self._types = {self._in_map[n]: details[self._in_map[n]]["dtype"] for n in self._in_map}

    @staticmethod
    def _map(names: list[str], sig_names: list[str], what: str, file: Path) -> dict[str, str]:
        if set(names) <= set(sig_names):
            return {n: n for n in names}
        if len(names) != len(sig_names):
            raise ModelLoadError(
                f"{file.name} has {len(sig_names)} signature {what} {sig_names} but the manifest lists {len(names)} {names}"
            )
        return dict(zip(names, sig_names))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = _select(feeds, self.inputs, "LiteRT session")
        kwargs = {
            self._in_map[n]: np.ascontiguousarray(v, dtype=self._types[self._in_map[n]]) for n, v in chosen.items()
        }
        result = self._runner(**kwargs)
        return {name: _as_float32(result[sig]) for name, sig in self._out_map.items()}


class CoreMLSession:
    """A Core ML model via coremltools; predictions need macOS."""

    def __init__(self, chunk: ChunkSpec, options: SessionOptions):
        if platform.system() != "Darwin":
            raise BackendUnavailable(
                "Core ML predictions need macOS (coremltools cannot run models on Linux); "
                "run this bundle on a Mac or in the iOS app, or convert with --target onnxruntime / litert here"
            )
        try:
            import coremltools as ct
        except ImportError as exc:
            raise BackendUnavailable("coremltools is not installed; `pip install coremltools`") from exc
        self.inputs, self.outputs = chunk.inputs, chunk.outputs
        units = getattr(ct.ComputeUnit, options.coreml_compute_units, ct.ComputeUnit.ALL)
        self._model = ct.models.MLModel(str(chunk.file), compute_units=units)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = _select(feeds, self.inputs, "Core ML session")
        cast = {t.name: np.ascontiguousarray(chosen[t.name], dtype=numpy_dtype(t.dtype)) for t in self.inputs}
        result = self._model.predict(cast)
        return {t.name: _as_float32(np.asarray(result[t.name])) for t in self.outputs}


class ChainedSession:
    """Runs chunk sessions in order; each chunk takes its inputs from the original feeds or earlier outputs."""

    def __init__(self, component: ComponentSpec, parts: list[Session]):
        self.inputs, self.outputs = component.inputs, component.outputs
        self.parts = parts

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pool = dict(feeds)
        for part in self.parts:
            pool.update(part.run(pool))
        return {t.name: pool[t.name] for t in self.outputs}


_SESSION_TYPES = {"onnxruntime": OnnxRuntimeSession, "litert": LiteRTSession, "coreml": CoreMLSession}


def open_session(manifest: Manifest, component: str, options: SessionOptions | None = None) -> Session:
    """A session for one manifest component on the bundle's backend."""
    spec = manifest.component(component)
    options = options or SessionOptions()
    kind = _SESSION_TYPES[manifest.backend]
    parts = [kind(chunk, options) for chunk in spec.chunks]
    if len(parts) == 1 and parts[0].inputs == spec.inputs:
        return parts[0]
    return ChainedSession(spec, parts)


def available_ort_providers(preference: tuple[str, ...] = ORT_PROVIDER_PREFERENCE) -> list[str]:
    """The installed onnxruntime providers in preference order (TensorRT, CUDA, then CPU)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed; `pip install onnxruntime`") from exc
    installed = set(ort.get_available_providers())
    chosen = [p for p in preference if p in installed]
    return chosen or ["CPUExecutionProvider"]
