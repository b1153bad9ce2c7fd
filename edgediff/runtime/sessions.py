"""One small Session interface over ONNX Runtime, LiteRT and Core ML: the only code that runs artifacts.

`edgediff verify`, `profile`, `generate`, golden files, the Jetson runner and `convert`'s parity gate all open
artifacts through `open_session`, so the gate tests the code that ships. A session maps the manifest's tensor
names to arrays, casts inputs to what the model file declares (an
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

from edgediff.contract import Artifact, BackendName, Manifest, TensorSpec
from edgediff.errors import BackendUnavailable, ModelLoadError, UnsupportedError
from edgediff.runtime.chunk_stream import StreamedChain, track

SIZE_SIGNATURE_PREFIX = "size_"  # LiteRT signatures of a bundle's other sizes (edgediff/model/sizes.py)
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
    optimization_level: str = "all"  # ONNX Runtime graph optimizations: disable, basic, extended, all
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    coreml_compute_units: str = "ALL"
    # A chunked component opens one chunk at a time (edgediff.runtime.chunk_stream): far less memory (full-size
    # SDXL on LiteRT: 1 UNet chunk in XNNPACK instead of 8), slower per call (every chunk reopened each run).
    one_chunk_at_a_time: bool = False


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

    def __init__(self, chunk: Artifact, options: SessionOptions):
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
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if options.optimization_level not in levels:
            raise UnsupportedError(f"unknown ONNX Runtime optimization level {options.optimization_level!r} "
                                   f"(valid: {', '.join(levels)})")
        so.graph_optimization_level = levels[options.optimization_level]
        if options.providers:  # the requested ones this onnxruntime build has, else CPU
            installed = set(ort.get_available_providers())
            self.providers = [p for p in options.providers if p in installed] or ["CPUExecutionProvider"]
        else:
            self.providers = available_ort_providers()
        provider_args = [(p, options.provider_options.get(p, {})) for p in self.providers]
        from edgediff.runtime.onnx_external import check_external_data

        check_external_data(chunk.path, chunk.extra_files)  # weights never read from outside the bundle folder
        try:
            self._session = ort.InferenceSession(str(chunk.path), sess_options=so, providers=provider_args)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime could not load {chunk.path}: {exc}") from exc
        self._types = {i.name: _ORT_TYPES.get(i.type) for i in self._session.get_inputs()}
        names = set(self._types)
        unknown = [t.name for t in self.inputs if t.name not in names]
        if unknown:
            raise ModelLoadError(f"{chunk.path.name} has inputs {sorted(names)}, the manifest names {unknown}; the bundle is inconsistent")
        declared = {i.name: i.shape for i in self._session.get_inputs()}
        for spec in self.inputs:  # sizes both sides fix must agree (a dynamic axis is a name or None in ORT)
            model_shape = declared[spec.name]
            if len(model_shape) != len(spec.shape) or any(
                    isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(model_shape, spec.shape)):
                raise ModelLoadError(f"{chunk.path.name} takes {spec.name} of shape {list(model_shape)} but the "
                                     f"manifest says {list(spec.shape)}; the bundle is inconsistent")
        self._output_names = [t.name for t in self.outputs] or [o.name for o in self._session.get_outputs()]
        self._path = chunk.path

    @property
    def active_providers(self) -> list[str]:
        return list(self._session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = _select(feeds, self.inputs, "onnxruntime session")
        cast: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            dtype = self._types.get(spec.name) or numpy_dtype(spec.dtype)
            cast[spec.name] = np.ascontiguousarray(chosen[spec.name], dtype=dtype)
        try:
            values = self._session.run(self._output_names, cast)
        except Exception as exc:  # onnxruntime's own types: wrong shapes or names, a graph that cannot run
            raise ModelLoadError(f"onnxruntime could not run {self._path.name}: {' '.join(str(exc).split())[:300]}; "
                                 "the manifest and the model file disagree") from None
        return {name: _as_float32(v) for name, v in zip(self._output_names, values)}


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


class LiteRTSession:
    """An ai_edge_litert Interpreter signature. Manifest names map to signature names when they match,
    else by position (litert-torch names exported arguments args_0, args_1, ... and outputs output_0, ...)."""

    def __init__(self, chunk: Artifact, options: SessionOptions):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable("ai-edge-litert is not installed; `pip install ai-edge-litert`") from exc
        self.inputs, self.outputs = chunk.inputs, chunk.outputs
        try:
            self._interpreter = Interpreter(model_path=str(chunk.path), num_threads=options.threads or None)
        except Exception as exc:
            raise ModelLoadError(f"LiteRT could not load {chunk.path}: {exc}") from exc
        track("litert", self._interpreter)  # edgediff.runtime.chunk_stream.LIVE counts the open interpreters
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            raise ModelLoadError(f"{chunk.path.name} has no signature; export it with litert-torch (it writes serving_default)")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self._runner = self._interpreter.get_signature_runner(key)
        sig_inputs = sorted(signatures[key]["inputs"], key=_natural_key)
        sig_outputs = sorted(signatures[key]["outputs"], key=_natural_key)
        self._in_map = self._map([t.name for t in self.inputs], sig_inputs, "inputs", chunk.path)
        self._out_map = self._map([t.name for t in self.outputs], sig_outputs, "outputs", chunk.path)
        details = self._runner.get_input_details()
        self._types = {self._in_map[n]: details[self._in_map[n]]["dtype"] for n in self._in_map}
        # A bundle with several sizes holds one signature per size (serving_default = the first, size_WxH the
        # others) sharing the weights; each run takes the one whose input shapes match the feeds.
        self._sizes = [(self._shapes(self._runner), self._runner)] + [
            (self._shapes(r), r) for r in (self._interpreter.get_signature_runner(k)
                                           for k in sorted(signatures) if k.startswith(SIZE_SIGNATURE_PREFIX))]
        self._path = chunk.path

    @staticmethod
    def _shapes(runner) -> dict[str, tuple[int, ...]]:
        return {name: tuple(int(d) for d in detail["shape"]) for name, detail in runner.get_input_details().items()}

    def _runner_for(self, kwargs: dict[str, np.ndarray]):
        if len(self._sizes) == 1:
            return self._runner
        for shapes, runner in self._sizes:
            if all(shapes.get(k) == tuple(v.shape) for k, v in kwargs.items()):
                return runner
        have = "; ".join(", ".join(f"{k} {list(v)}" for k, v in shapes.items() if len(v) == 4)
                         for shapes, _ in self._sizes)
        got = ", ".join(f"{k} {list(v.shape)}" for k, v in kwargs.items() if v.ndim == 4)
        raise ModelLoadError(f"{self._path.name} has no signature for inputs {got}; its sizes take {have} "
                             "(generate --height --width picks one of the bundle's sizes)")

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
        runner = self._runner_for(kwargs)
        try:
            result = runner(**kwargs)
        except Exception as exc:  # LiteRT raises ValueError / RuntimeError with its own text
            raise ModelLoadError(f"LiteRT could not run the artifact: {' '.join(str(exc).split())[:300]}; the "
                                 "manifest and the model file disagree") from None
        return {name: _as_float32(result[sig]) for name, sig in self._out_map.items()}


class CoreMLSession:
    """A Core ML model via coremltools; predictions need macOS."""

    def __init__(self, chunk: Artifact, options: SessionOptions):
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
        self._model = ct.models.MLModel(str(chunk.path), compute_units=units)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = _select(feeds, self.inputs, "Core ML session")
        cast: dict[str, np.ndarray] = {t.name: np.ascontiguousarray(chosen[t.name], dtype=numpy_dtype(t.dtype))
                                       for t in self.inputs}
        result = self._model.predict(cast)
        return {t.name: _as_float32(np.asarray(result[t.name])) for t in self.outputs}


class SwiftLayoutSession:
    """A Core ML artifact written for Apple's Swift pipeline (`swift_layout`): its packages use Apple's tensor
    names and layouts; this maps the component contract's names and [B, S, D] context onto them and back."""

    def __init__(self, artifact: Artifact, inner: "Session"):
        self.inputs, self.outputs, self._inner = artifact.inputs, artifact.outputs, inner
        layout = artifact.meta.get("swift_layout") or {}
        self._contract_in = layout.get("contract_inputs", {})
        self._contract_out = layout.get("contract_outputs", {})
        self._moments = int(layout.get("moments_channels") or 0)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        package_feeds = {}
        for spec in self.inputs:
            value = np.asarray(feeds[self._contract_in.get(spec.name, spec.name)])
            if len(spec.shape) == 4 and value.ndim == 3:  # Swift's [B, D, 1, S] context from [B, S, D]
                value = value.transpose(0, 2, 1)[:, :, None, :]
            package_feeds[spec.name] = value
        result = self._inner.run(package_feeds)
        out = {}
        for spec in self.outputs:
            value = result[spec.name]
            out[self._contract_out.get(spec.name, spec.name)] = value[:, : self._moments] if self._moments else value
        return out


class ChainedSession:
    """Runs chunk sessions in order; each chunk takes its inputs from the original feeds or earlier outputs."""

    def __init__(self, artifact: Artifact, parts: list[Session]):
        self.inputs, self.outputs = artifact.inputs, artifact.outputs
        self.parts = parts

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pool = dict(feeds)
        for part in self.parts:
            pool.update(part.run(pool))
        return {t.name: pool[t.name] for t in self.outputs}


# The session class per backend: a new backend adds one line here and one in edgediff/backends/base.py.
SESSION_TYPES: dict[str, type] = {"onnxruntime": OnnxRuntimeSession, "litert": LiteRTSession,
                                  "coreml": CoreMLSession}


def open_session(artifact: Artifact, backend: BackendName | str, options: SessionOptions | None = None) -> Session:
    """A session for one artifact (every chunk chained) on its backend's runtime."""
    if backend not in SESSION_TYPES:
        raise UnsupportedError(f"no runtime session for backend {backend!r} (known: {', '.join(SESSION_TYPES)})")
    options = options or SessionOptions()
    kind = SESSION_TYPES[backend]
    session: Session
    if options.one_chunk_at_a_time and len(artifact.parts) > 1:
        session = StreamedChain(artifact, lambda part: kind(part, options))
    else:
        parts = [kind(part, options) for part in artifact.parts]
        session = parts[0] if len(parts) == 1 and parts[0].inputs == artifact.inputs else \
            ChainedSession(artifact, parts)
    if artifact.meta.get("swift_layout"):
        session = SwiftLayoutSession(artifact, session)
    return session


def open_component(manifest: Manifest, component: str, options: SessionOptions | None = None) -> Session:
    """A session for one component of a bundle read with `Manifest.read`."""
    return open_session(manifest.component(component), manifest.backend, options)


def available_ort_providers(preference: tuple[str, ...] = ORT_PROVIDER_PREFERENCE) -> list[str]:
    """The installed onnxruntime providers in preference order (TensorRT, CUDA, then CPU)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed; `pip install onnxruntime`") from exc
    installed = set(ort.get_available_providers())
    chosen = [p for p in preference if p in installed]
    return chosen or ["CPUExecutionProvider"]
