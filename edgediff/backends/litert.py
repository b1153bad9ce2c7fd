"""LiteRT (TFLite) backend: litert-torch lowers, ai-edge-quantizer compresses, ai-edge-litert runs (XNNPACK).

What a phone needs and how this module gets there:
- Names: each component is converted through a wrapper whose forward takes keyword tensors and returns a dict,
  so the .tflite signature `serving_default` uses our tensor names (sample, timestep, ..., noise_pred).
  litert-torch narrows 64-bit I/O to 32-bit, so text_encoder's input_ids is int32 in the file; the artifact's
  input specs are read back from the file and say so.
- Size: Android loaders and many tools refuse flatbuffers over 2 GB, and converting a 3.4 GB UNet in one piece
  peaks near 18.5 GB of RAM. A UNet whose fp32 weights exceed `max_chunk_bytes` is split
  (edgediff.model.split) into chunks converted one at a time; the chunk list (files, named inputs/outputs)
  goes into `Artifact.chunks` so a runtime can chain them. Every written file is checked against
  `max_file_bytes`.
- Precision: fp32 as converted; fp16 = float16 weights (ai-edge-quantizer float casting, float compute);
  int8 = a `QuantPlan` realised with ai-edge-quantizer: "int8_weights" (int8 weights, float compute) or
  "int8_full" (int8 weights and activations from calibration data). Model inputs and outputs stay float32 in
  every case, so pipeline code does not change; `keep_float` leaves chosen layers unquantized.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgediff.backends.base import Artifact, Backend, register
from edgediff.backends.base_sizes import litert_edge_model, litert_size_feeds
from edgediff.errors import BackendUnavailable, RecipeError, UnsupportedError
from edgediff.model.components import Component, TensorSpec
from edgediff.model.split import split_unet, unet_stages
from edgediff.model.split_text import split_text_encoder
from edgediff.phases import release_memory
from edgediff.runtime.sessions import SessionOptions

SIGNATURE = "serving_default"
INT8_MODES = ("int8_weights", "int8_full")
_FLOAT_CASTING = "float_casting"
_NO_QUANTIZE = "no_quantize"


@dataclass
class LiteRTOptions:
    """The [backend.litert] recipe table."""

    threads: int = 0  # XNNPACK threads; 0 = every core of the machine
    max_chunk_bytes: int = 1_500_000_000  # fp32 weights converted at once: bounds conversion RAM and file size
    max_file_bytes: int = 2_000_000_000  # no written .tflite may be larger (Android's 2 GB flatbuffer limit)
    chunks: int = 0  # UNet chunks: 0 = as few as max_chunk_bytes allows, N = exactly N
    int8_mode: str = "int8_weights"  # default plan for precision int8: "int8_weights" or "int8_full"
    keep_float: tuple[str, ...] = ()  # layers left in float at int8 (see QuantPlan)
    calibration_samples: int = 8  # seeded example inputs used by int8_full when no calibration data is given
    lightweight_conversion: bool = False  # litert-torch's lazy-constant mode (less RAM, fewer graph folds)


@dataclass
class QuantPlan:
    """How an int8 artifact is made; the int8 slimming step builds one, `LiteRTOptions` gives the default.

    keep_float: patterns naming layers to keep in float. A plain pattern is an fnmatch glob over the PyTorch
    module paths of the component (`conv_in`, `up_blocks.*.attentions.*`, `3.pool`; it also matches after a
    wrapper prefix, so `conv_out` finds `unet.conv_out`); "re:<regex>" is matched against TFLite tensor names.
    calibration: input dicts (component tensor names -> arrays) in the component's real operating range.
    layers: exact module paths -> "float" or "int8_weights" for that module's own ops only (not its children):
    how a per-layer precision plan (edgediff.slim.quantize) is given. output_modes: the same for the ops that
    write the component's outputs (their tensors carry the output's name, not a module path).
    """

    default: str = "int8_weights"
    keep_float: tuple[str, ...] = ()
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)
    output_modes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.default not in INT8_MODES:
            raise RecipeError(f"int8 plan default must be one of {', '.join(INT8_MODES)}, got '{self.default}'")
        self.keep_float = tuple(self.keep_float)


def as_plan(plan: Any) -> QuantPlan | None:
    """A QuantPlan from a QuantPlan, a dict with its fields, or any object with default/keep_float/calibration."""
    if plan is None or isinstance(plan, QuantPlan):
        return plan
    if isinstance(plan, Mapping):
        return QuantPlan(**plan)
    return QuantPlan(plan.default, tuple(getattr(plan, "keep_float", ())),
                     list(getattr(plan, "calibration", []) or []))


def _torch_helpers():
    import torch

    class NamedIO(torch.nn.Module):
        """Keyword tensors in, {name: tensor} out: the names become the .tflite signature's names."""

        def __init__(self, module, input_names: Sequence[str], output_names: Sequence[str]):
            super().__init__()
            self.module = module
            self.input_names, self.output_names = tuple(input_names), tuple(output_names)

        def forward(self, **inputs):
            result = self.module(*[inputs[n] for n in self.input_names])
            result = result if isinstance(result, (tuple, list)) else (result,)
            return dict(zip(self.output_names, result))

    return NamedIO


@dataclass
class _Piece:
    """One file to convert: a module taking keyword tensors, its names, and how to make its inputs."""

    name: str
    module: Any
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    stages: tuple[str, ...] = ()


@register
class LiteRTBackend(Backend):
    name = "litert"
    Options = LiteRTOptions
    supported_precisions = ("fp32", "fp16", "int8")
    suffix = ".tflite"

    def check_available(self) -> None:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
            import ai_edge_quantizer  # noqa: F401
            import litert_torch  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"the litert backend needs litert-torch, ai-edge-litert and ai-edge-quantizer: "
                                     f"pip install litert-torch ai-edge-litert ai-edge-quantizer ({exc})") from None

    def can_run_here(self) -> tuple[bool, str]:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError as exc:
            return False, f"ai-edge-litert is not installed ({exc})"
        return True, ""

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        parts = []
        for package in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"):
            try:
                parts.append(f"{package} {version(package)}")
            except PackageNotFoundError:
                pass
        return ", ".join(parts)

    # ---- lowering -------------------------------------------------------------------------------------------

    def lower(self, component: Component, options: LiteRTOptions, precision: str, out_dir: Path,
              plan: QuantPlan | None = None) -> Artifact:
        """Convert (in chunks for a large UNet), compress to `precision`, check sizes, return the artifact.

        `plan` is only read at int8. It comes from the argument, else from the quantize step's plan on the
        component (`component.int8`), else from `options.int8_mode` / `options.keep_float`; int8_full without calibration data
        calibrates on `options.calibration_samples` seeded example inputs.
        """
        if precision not in self.supported_precisions:
            raise RecipeError(f"litert precision must be one of {', '.join(self.supported_precisions)}, "
                              f"got '{precision}'")
        if precision == "int8":
            plan = as_plan(plan) \
                or _planned(component, options) or QuantPlan(options.int8_mode, tuple(options.keep_float))
        else:
            plan = None
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pieces = self._pieces(component, options)
        feeds = _chain_inputs(pieces, component.example_inputs(0))
        more, sized = litert_size_feeds(component, pieces, plan, _chain_inputs)  # sizes: signatures, shared weights
        calibration = _calibration(component, pieces, plan, options) if precision == "int8" else None
        keep_float_modules = _match_modules(component.module, plan.keep_float) if plan else set()

        from tqdm import tqdm

        artifacts = []
        with tempfile.TemporaryDirectory(prefix="edgediff-litert-", dir=out_dir) as tmp:
            for index, piece in enumerate(tqdm(pieces, desc=f"litert {component.name}", unit="file",
                                               disable=len(pieces) == 1)):
                path = out_dir / f"{piece.name}.tflite"
                float_path = Path(tmp) / f"{piece.name}.fp32.tflite" if precision != "fp32" else path
                _convert(piece.module, feeds[index], float_path, options, [(n, f[index]) for n, f in more])
                if precision != "fp32":
                    regexes = [p[3:] for p in plan.keep_float if p.startswith("re:")] if plan else []
                    regexes += _scope_regexes(piece.module, keep_float_modules)
                    rules = _layer_rules(piece.module, component.module, plan.layers) if plan else []
                    rules += _output_rules(float_path, plan.output_modes, piece.output_names) if plan else []
                    rules += _mask_rules(float_path) if plan and plan.default == "int8_full" else []
                    _quantize(float_path, path, precision, plan, regexes, calibration[index] if calibration else None,
                              rules)
                    float_path.unlink()
                _check_size(path, options, component.name, precision)
                inputs, outputs = _file_specs(path, piece.input_names, piece.output_names)
                artifacts.append(Artifact(piece.name, path, inputs, outputs,
                                          meta={"stages": list(piece.stages)} if piece.stages else {}))
                release_memory()

        meta: dict[str, Any] = {"precision": precision, "signature": SIGNATURE, "threads": options.threads, **sized}
        if plan is not None and precision == "int8":
            meta["int8"] = {"mode": plan.default, "keep_float": list(plan.keep_float),
                            "plan_layers": {m: sum(v == m for v in plan.layers.values()) for m in _LAYER_MODES},
                            "calibration_samples": len(calibration[0]) if calibration and calibration[0] else 0,
                            "calibration_source": "given" if plan.calibration else "seeded example inputs"}
        if len(artifacts) == 1:
            single = artifacts[0]
            return Artifact(component.name, single.path, _merge_specs(component.inputs, single.inputs),
                            single.outputs, meta=meta)
        meta["chunked"] = {"count": len(artifacts), "rule": "outputs of chunk i feed the same-named inputs of "
                           "later chunks; the component's own inputs feed every chunk that lists them"}
        inputs = _merge_specs(component.inputs, tuple(s for a in artifacts for s in a.inputs))
        return Artifact(component.name, artifacts[0].path, inputs, component.outputs, chunks=artifacts, meta=meta)

    def _pieces(self, component: Component, options: LiteRTOptions) -> list[_Piece]:
        """The component as one piece, or a large UNet as chunks (edgediff.model.split)."""
        NamedIO = _torch_helpers()
        names_in = tuple(s.name for s in component.inputs)
        names_out = tuple(s.name for s in component.outputs)
        whole = _Piece(component.name, NamedIO(component.module, names_in, names_out).eval(), names_in, names_out)
        unet = _diffusers_unet(component)
        size = _weight_bytes(component.module)
        if unet is None and size > options.max_chunk_bytes and component.name.startswith("text_encoder"):
            chunks = split_text_encoder(component, options.max_chunk_bytes)  # SDXL's 2.8 GB text_encoder_2
        elif unet is None:
            if size > options.max_chunk_bytes:
                raise UnsupportedError(f"{component.name} has {size / 1e9:.2f} GB of fp32 weights, over "
                    f"max_chunk_bytes ({options.max_chunk_bytes / 1e9:.2f} GB), and only UNets and SDXL text encoders can be "
                    "split; raise [backend.litert] max_chunk_bytes if the machine has the RAM")
            return [whole]
        elif options.chunks == 1 or (options.chunks == 0 and size <= options.max_chunk_bytes):
            return [whole]
        else:  # SDXL's up_blocks.0 (4.8 GB) only fits cut per resnet + attention (1.6 GB): "layer" stages
            whole_blocks = max(_weight_bytes(s) for s in unet_stages(unet)) <= options.max_chunk_bytes
            chunks = split_unet(unet, parts=options.chunks or None, max_chunk_bytes=options.max_chunk_bytes,
                                granularity="block" if options.chunks or whole_blocks else "layer")
        if set(chunks[0].input_names) - set(names_in) or any("timestep_cond" in c.input_names for c in chunks) \
                and "timestep_cond" not in names_in:
            raise UnsupportedError(f"{component.name}: the split UNet needs inputs the component does not give")
        return [_Piece(f"{component.name}.part{i}", c.module, c.input_names, c.output_names, c.stages)
                for i, c in enumerate(chunks)]

    # ---- running --------------------------------------------------------------------------------------------

    def session_options(self, options: LiteRTOptions) -> SessionOptions:
        return SessionOptions(threads=options.threads or os.cpu_count() or 1)


# ---- conversion helpers ---------------------------------------------------------------------------------------


def _convert(module, sample: dict[str, Any], path: Path, options: LiteRTOptions, more=()) -> None:
    """litert-torch conversion of one module (`more`: other sizes' signatures) to `path`, freeing memory after."""
    import torch

    try:
        with torch.inference_mode(False), torch.no_grad():
            edge = litert_edge_model(module, sample, more, SIGNATURE, options.lightweight_conversion)
            edge.export(str(path))
    except Exception as exc:  # the converter raises many types; one teachable error
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(f"litert-torch cannot convert {path.stem}: {first} "
                               "(run with --debug for the converter's trace)") from exc
    finally:
        edge = None
        release_memory()


def _quantize(float_path: Path, path: Path, precision: str, plan: QuantPlan | None, keep_float_regexes: list[str],
              calibration: list[dict[str, np.ndarray]] | None, layer_rules: Sequence[tuple[str, str]] = ()) -> None:
    """ai-edge-quantizer: fp16 weights, int8 weights, or full int8 with calibration; float I/O kept."""
    from ai_edge_quantizer import quantizer as aeq

    with _large_weight_fix():
        _run_quantizer(aeq, float_path, path, precision, plan, keep_float_regexes, calibration, layer_rules)


def _run_quantizer(aeq, float_path, path, precision, plan, keep_float_regexes, calibration, layer_rules) -> None:
    qt = aeq.Quantizer(str(float_path))
    if precision == "fp16":
        qt.add_weight_only_config(regex=".*", operation_name="*", num_bits=16, algorithm_key=_FLOAT_CASTING)
    elif plan.default == "int8_weights":
        qt.add_weight_only_config(regex=".*", operation_name="*", num_bits=8)
    else:
        qt.add_static_config(regex=".*", operation_name="*", activation_num_bits=8, weight_num_bits=8)
        for boundary in ("INPUT", "OUTPUT"):  # float32 in and out: quantize/dequantize ops go inside the file
            qt.update_quantization_recipe(regex=".*", operation_name=boundary, algorithm_key=_NO_QUANTIZE)
        # Static int8 has no embedding lookup: without this the token table (49408 x 768 in SD 1.5) stays float.
        qt.add_weight_only_config(regex=".*", operation_name="EMBEDDING_LOOKUP", num_bits=8)
    for regex, mode in layer_rules:  # a precision plan's per-layer decisions (see _layer_rules)
        if mode == "int8_weights":
            qt.add_weight_only_config(regex=regex, operation_name="*", num_bits=8)
        else:
            qt.update_quantization_recipe(regex=regex, operation_name="*", algorithm_key=_NO_QUANTIZE)
    for regex in keep_float_regexes:  # the last matching rule wins, so these override the default above
        qt.update_quantization_recipe(regex=regex, operation_name="*", algorithm_key=_NO_QUANTIZE)
    result = None
    if qt.need_calibration:
        if not calibration:
            raise RecipeError("int8_full needs calibration samples")
        result = _global_min_max(qt, _as_file_dtypes(float_path, calibration))
    quantized = qt.quantize(result, enable_progress_report=False)
    path.write_bytes(quantized.quantized_model)
    del qt, quantized, result
    release_memory()


_AEQ_CHUNK_BYTES = 32 * 1024 * 1024  # ai-edge-quantizer's "large tensor" threshold (uniform_quantize_tensor.py)


@contextmanager
def _large_weight_fix():
    """Work around an ai-edge-quantizer bug (0.10.0) that stops int8 on full-size UNets: `uniform_quantize` sends
    weights over 32 MiB (an SD 1.5 [1280, 3, 3, 1280] conv is 59 MB) through a chunked path that reshapes the
    weight to 2-D but broadcasts the rank-4 per-channel scales to it, raising "input operand has more dimensions
    than allowed by the axis remapping". While quantizing, such a weight is cut along its quantized dimension
    into slices under 32 MiB, each slice quantized by the library's own function with its slice of the scales,
    and the results concatenated: the same numbers the unchunked path computes, without the broken branch."""
    import dataclasses

    from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uqt

    original = uqt.uniform_quantize

    def uniform_quantize(tensor_data, quantization_params, is_blockwise_quant=False):
        axis = quantization_params.quantized_dimension
        data = np.asarray(tensor_data)
        if is_blockwise_quant or data.ndim <= 2 or data.nbytes <= _AEQ_CHUNK_BYTES or axis is None:
            return original(tensor_data, quantization_params, is_blockwise_quant)
        scale, zero = np.asarray(quantization_params.scale), np.asarray(quantization_params.zero_point)
        channels = data.shape[axis]
        step = max(1, channels * _AEQ_CHUNK_BYTES // (2 * data.nbytes))  # slices well under the threshold

        def part(values, start, stop):
            if values.size <= 1:
                return values
            if values.ndim == data.ndim:
                return np.take(values, range(start, stop), axis=axis)
            return values.reshape(-1)[start:stop]  # flat per-channel parameters

        pieces = []
        for start in range(0, channels, step):
            stop = min(start + step, channels)
            params = dataclasses.replace(quantization_params, scale=part(scale, start, stop),
                                         zero_point=part(zero, start, stop))
            pieces.append(original(np.take(data, range(start, stop), axis=axis), params, False))
        return np.concatenate(pieces, axis=axis)

    uqt.uniform_quantize = uniform_quantize
    try:
        yield
    finally:
        uqt.uniform_quantize = original


def _as_file_dtypes(path: Path, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Calibration inputs cast to the file's signature dtypes: litert-torch narrows int64 inputs (token ids) to
    int32, and the interpreter refuses the component's int64 arrays."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE).get_input_details()
    dtypes = {name: d["dtype"] for name, d in details.items()}
    return [{k: np.asarray(v).astype(dtypes.get(k, np.asarray(v).dtype), copy=False) for k, v in s.items()}
            for s in samples]


def _global_min_max(qt, calibration: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """ai-edge-quantizer merges calibration samples by a moving average (0.95) of their min/max, so the first
    samples dominate (for a UNet calibrated along a trajectory: the noisiest timestep). Calibrate one sample at a
    time and keep the true min and max over all of them, as ONNX Runtime's MinMax calibration does."""
    merged: dict[str, Any] = {}
    for sample in calibration:
        for name, qsv in qt.calibrate({SIGNATURE: [sample]}, num_threads=os.cpu_count() or 1).items():
            if name not in merged:
                merged[name] = dict(qsv)
                continue
            for key, reduce in (("min", np.minimum), ("max", np.maximum)):
                if key in qsv and key in merged[name]:
                    merged[name][key] = reduce(merged[name][key], qsv[key])
    return merged


def _chain_inputs(pieces: list[_Piece], inputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Each piece's torch inputs for one component input dict (earlier chunks run in PyTorch to make them)."""
    import torch

    available = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    feeds = []
    with torch.no_grad():  # not inference_mode: these tensors are also the converter's sample inputs
        for piece in pieces:
            feeds.append({n: available[n] for n in piece.input_names})
            if len(pieces) > 1:
                available.update(piece.module(**feeds[-1]))
    return feeds


def _calibration(component: Component, pieces: list[_Piece], plan: QuantPlan, options: LiteRTOptions):
    """Per piece, a list of numpy input dicts; only int8_full needs them."""
    if plan.default != "int8_full":
        return None
    samples = plan.calibration or [component.example_inputs(1000 + i) for i in range(options.calibration_samples)]
    per_piece: list[list[dict[str, np.ndarray]]] = [[] for _ in pieces]
    for sample in samples:
        missing = [s.name for s in component.inputs if s.name not in sample]
        if missing:
            raise RecipeError(f"calibration sample for {component.name} lacks {', '.join(missing)}")
        for i, feed in enumerate(_chain_inputs(pieces, sample)):
            per_piece[i].append({k: v.numpy().copy() for k, v in feed.items()})
    return per_piece


def _check_size(path: Path, options: LiteRTOptions, component: str, precision: str) -> None:
    size = path.stat().st_size
    if size > options.max_file_bytes:
        path.unlink()
        raise UnsupportedError(
            f"{path.name} would be {size / 1e9:.2f} GB, over max_file_bytes ({options.max_file_bytes / 1e9:.2f} GB, "
            f"the flatbuffer limit of Android loaders); lower [backend.litert] max_chunk_bytes so {component} is "
            f"split into smaller chunks, or use a smaller precision than {precision}"
        )


def _file_specs(path: Path, input_names, output_names) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input/output specs as the file has them (dtype narrowing included), in our name order."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)

    def specs(details, names):
        missing = [n for n in names if n not in details]
        if missing:
            raise UnsupportedError(f"{path.name}: the converted signature lacks {', '.join(missing)} "
                                   f"(has {', '.join(details)})")
        return tuple(TensorSpec(n, tuple(int(d) for d in details[n]["shape"]), np.dtype(details[n]["dtype"]).name)
                     for n in names)

    return specs(runner.get_input_details(), input_names), specs(runner.get_output_details(), output_names)


def _merge_specs(component_inputs, file_inputs) -> tuple[TensorSpec, ...]:
    """The component's inputs with the dtype the file expects (e.g. int64 ids -> int32)."""
    by_name = {s.name: s for s in file_inputs}
    return tuple(TensorSpec(s.name, s.shape, by_name[s.name].dtype) if s.name in by_name else s
                 for s in component_inputs)


def _diffusers_unet(component: Component):
    if component.name != "unet":
        return None
    unet = getattr(component.module, "unet", None)
    try:
        from diffusers import UNet2DConditionModel
    except ImportError:
        return None
    return unet if isinstance(unet, UNet2DConditionModel) else None


def _weight_bytes(module) -> int:
    from edgediff.model.split import _weight_bytes as count

    return count(module)


# ---- keep_float: PyTorch module paths -> TFLite tensor-name regexes --------------------------------------------


def _match_modules(root, patterns: Sequence[str]) -> set[int]:
    """ids of the modules whose path in `root` matches a keep_float glob (plain patterns only)."""
    globs = [p for p in patterns if not p.startswith("re:")]
    if not globs:
        return set()
    matched: set[int] = set()
    for glob in globs:
        hits = [m for name, m in root.named_modules() if name and
                (fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(name, "*." + glob))]
        if not hits:
            names = [n for n, _ in root.named_modules() if n][:8]
            raise RecipeError(f"keep_float pattern '{glob}' matches no layer (module paths look like "
                              f"{', '.join(names)}, ...)")
        matched |= {id(m) for m in hits}
    return matched


def _scope_regexes(root, module_ids: set[int], own_ops: bool = False) -> list[str]:
    """litert-torch names each tensor after the chain of modules that computed it, one `<module>.<Class>_<attr>`
    segment per called module (containers that are never called, like ModuleList, leave no segment).
    With own_ops, only tensors the module computes itself match (its name is the last segment), not its children's."""
    from torch import nn

    if not module_ids:
        return []
    regexes = []
    for name, module in root.named_modules():
        if not name or id(module) not in module_ids:
            continue
        segments, current = [], root
        for part in name.split("."):
            current = current[int(part)] if part.isdigit() and isinstance(current, (nn.ModuleList, nn.Sequential)) \
                else getattr(current, part)
            if not isinstance(current, (nn.ModuleList, nn.ModuleDict)):
                segments.append(r"[^/]*\b" + re.escape(f"{type(current).__name__}_{part}"))
        regexes.append("/(?:[^/]*/)*?".join(segments) + (r"(?=;|$)" if own_ops else r"(?=[/;]|$)"))
    return regexes


_LAYER_MODES = ("float", "int8_weights")


def _planned(component: Component, options: LiteRTOptions) -> QuantPlan | None:
    """The quantize step's per-layer precision plan and calibration inputs (the component's `int8` field)."""
    found = component.int8
    if found is None:
        return None
    modes = found.plan.modes()
    layers = {name: mode for name, mode in modes.items() if mode in _LAYER_MODES}
    outputs = {out: modes[unit] for out, unit in found.plan.outputs.items() if modes.get(unit) in _LAYER_MODES}
    return QuantPlan("int8_full", tuple(options.keep_float), list(found.calibration), layers, outputs)


def _output_rules(path: Path, output_modes: Mapping[str, str], names: Sequence[str]) -> list[tuple[str, str]]:
    """Rules for the tensors behind the signature's outputs (exact names read from the float file)."""
    wanted = {n: m for n, m in output_modes.items() if n in names}
    if not wanted:
        return []
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_signature_runner(SIGNATURE).get_output_details()
    tensor_names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    return [("^" + re.escape(tensor_names[details[n]["index"]]) + "(?=;|$)", mode) for n, mode in wanted.items()]


MASK_VALUE = -1e30  # a constant at or below this builds an additive attention mask (finfo.min or -inf)


def _mask_rules(path: Path) -> list[tuple[str, str]]:
    """Float rules for the ops that build and apply an additive attention mask, up to and including the softmax.

    litert-torch writes CLIP's causal mask as SELECT_V2(cond, 0, -3.4e38) -> ADD(scores, mask) -> SOFTMAX. Static
    int8 would quantize the mask and the masked scores over [-3.4e38, max] (one step ~1e36): attention becomes
    uniform, and XNNPACK aborts the process on such scales. The precision plan (like PyTorch) masks exactly, so
    every op downstream of a huge negative constant stays float until the softmax, whose [0, 1] output is
    quantized again by its consumer. Returns (regex over the op's output tensor name, "float")."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    model = tfu.read_model(Path(path))
    rules: list[tuple[str, str]] = []
    for si, graph in enumerate(model.subgraphs):
        masked: set[int] = set()
        for oi, op in enumerate(graph.operators):
            inputs = [t for t in op.inputs if t >= 0]
            constant = False
            for t in inputs:
                data = tfu.get_tensor_data(graph.tensors[t], model.buffers)
                if data is not None and np.issubdtype(data.dtype, np.floating) and data.size \
                        and float(np.min(data)) <= MASK_VALUE:
                    constant = True
            if not (constant or masked.intersection(inputs)):
                continue
            outputs = [t for t in op.outputs if t >= 0]
            rules += [("^" + re.escape(tfu.get_tensor_name(graph.tensors[t])) + "(?=;|$)", "float") for t in outputs]
            kind = tfu.get_op_name_by_index(model, si, oi)
            if getattr(kind, "value", kind) != "SOFTMAX":
                masked.update(outputs)
    return rules


def _layer_rules(piece_module, root, layers: Mapping[str, str]) -> list[tuple[str, str]]:
    """(regex over the piece's TFLite tensor names, mode) for each exact plan layer, own ops only."""
    rules = []
    for mode in _LAYER_MODES:
        ids = set()
        for name in (n for n, m in layers.items() if m == mode):
            try:
                ids.add(id(root.get_submodule(name)))
            except AttributeError:
                raise RecipeError(f"precision plan layer '{name}' is not a module of this component") from None
        rules += [(regex, mode) for regex in _scope_regexes(piece_module, ids, own_ops=True)]
    return rules
