"""Fake quantization in PyTorch that places int8 error where the backends' static int8 does.

A *unit* is a module that computes something itself: a Conv2d/Linear (weights + input), a GroupNorm, an
Attention (its q·k, softmax and ·v), an up block (its skip-connection concatenation), a residual block (its
residual add), Timesteps (the timestep embedding's mul/sin/cat). Units are named by their PyTorch module path,
the same path the ONNX exporter (node metadata `name_scopes`) and litert-torch (tensor names) record, so a plan
made here maps to nodes and tensors of every backend.

How an int8 unit is simulated, mirroring ONNX Runtime's static QDQ and ai-edge-quantizer's static int8:
- weights of conv/linear: symmetric int8, one scale per output channel; embedding tables: one scale;
- activations: every floating input and output of the unit's own quantizable ops (conv, linear, matmul, the
  decomposed softmax attention, softmax, cat, add, mul, norms, SiLU/GELU, resize) is quantized asymmetrically to
  8 bits over the min/max seen on the calibration samples (one range per op input, per call).
`int8_weights` quantizes only the weights; `float` leaves the unit's own computation alone. Ops are attributed to
the innermost module executing them (forward hooks keep the stack; a TorchFunctionMode sees the ops).

Tensors follow QDQ semantics: a tensor is quantized once, where it is produced, when its producer or *any* of its
consumers is int8, and then every consumer (float ones too) reads the quantized value. That is what ONNX Runtime's
QDQ graphs do (one Q/DQ pair per tensor), so a float layer next to int8 layers still sees int8 inputs; the
observation pass records who consumes what (through reshapes, views and ReLUs) to know it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch.overrides import TorchFunctionMode

MODES = ("int8", "int8_weights", "float")
INPUT = "<input>"  # producer name of the module's own inputs
# Ops that only move or clamp values: a tensor keeps its producer (its quantization) through them.
PASS_THROUGH = frozenset({
    "view", "reshape", "permute", "transpose", "flatten", "unflatten", "contiguous", "squeeze", "unsqueeze", "chunk",
    "split", "unbind", "__getitem__", "expand", "relu", "to", "float", "clone", "narrow", "movedim", "view_as",
})
QUANT_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "linear", "embedding",
    "matmul", "bmm", "baddbmm", "mm", "addmm", "scaled_dot_product_attention", "softmax",
    "cat", "concat", "concatenate", "add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "mul", "__mul__",
    "__rmul__", "group_norm", "layer_norm", "instance_norm", "silu", "gelu", "sigmoid", "interpolate",
})
WEIGHT_OPS = {"conv1d": 0, "conv2d": 0, "conv3d": 0, "conv_transpose1d": 1, "conv_transpose2d": 1, "linear": 0,
              "embedding": None}  # op -> per-channel axis of its weight (None = one scale)


@dataclass
class Unit:
    name: str  # module path in the component module ("" = the component module itself)
    kind: str  # module class name
    weight_params: int = 0  # elements of its quantizable weights
    ops: int = 0  # quantizable op calls per forward

    @property
    def has_weights(self) -> bool:
        return self.weight_params > 0


def fake_quant_activation(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Asymmetric uint8 over [min(low, 0), max(high, 0)] (zero exactly representable, as ORT and TFLite do)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0 or not math.isfinite(high - low):
        return x
    scale = (high - low) / 255.0
    zero = round(-low / scale)
    q = torch.clamp(torch.round(x / scale) + zero, 0, 255)
    return ((q - zero) * scale).to(x.dtype)


def fake_quant_weight(w: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Symmetric int8 ([-127, 127]), per output channel along `axis` or one scale for the tensor."""
    if axis is None:
        amax = w.abs().max().clamp_min(1e-12)
    else:
        dims = [d for d in range(w.dim()) if d != axis]
        amax = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
    scale = amax / 127.0
    return (torch.clamp(torch.round(w / scale), -127, 127) * scale).to(w.dtype)


class Simulator:
    """Runs a module with a chosen mode per unit; `observe` first records units and activation ranges."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.names = {id(m): n for n, m in module.named_modules()}
        self.units: dict[str, Unit] = {}
        self.ranges: dict[tuple, list[float]] = {}
        self.modes: dict[str, str] = {}
        self._stack: list[str] = []
        self._calls: dict[str, int] = {}
        self._observing = False
        self._weights: dict[tuple[int, str], torch.Tensor] = {}
        self._unit_weights: dict[str, set[int]] = {}
        self.consumers: dict[tuple, set[str]] = {}  # producer key (unit, ordinal) or ("<input>", i) -> consumer units
        self._quantize_out: dict[tuple, bool] = {}
        self.output_units: list[str | None] = []  # per module output, the unit that computes it

    # ---- public ------------------------------------------------------------------------------------------------

    def observe(self, samples: Iterable[tuple], reset: bool = True) -> None:
        """Run float samples, recording every unit and the min/max of every quantizable op input and output."""
        if reset:
            self.ranges = {}
        self._observing = True
        try:
            for args in samples:
                self._forward(args)
        finally:
            self._observing = False

    def run(self, args: tuple, modes: dict[str, str]) -> tuple[torch.Tensor, ...]:
        """One forward with `modes` (unit -> int8 | int8_weights | float; absent units are float)."""
        unknown = set(modes) - set(self.units)
        if unknown:
            raise KeyError(f"not units of this module: {sorted(unknown)[:5]}")
        self.modes = modes
        self._quantize_out = {producer: modes.get(producer[0]) == "int8" or any(modes.get(c) == "int8" for c in users)
                              for producer, users in self.consumers.items()}
        try:
            return self._forward(args)
        finally:
            self.modes, self._quantize_out = {}, {}

    # ---- machinery ---------------------------------------------------------------------------------------------

    def _forward(self, args: tuple) -> tuple[torch.Tensor, ...]:
        self._calls = {}
        args = tuple(self._graph_input(i, a) for i, a in enumerate(args))
        with torch.inference_mode(), self._hooks(), _Mode(self):
            out = self.module(*args)
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        if self._observing:  # which unit computes each output (backends name output tensors after the output)
            self.output_units = [getattr(o, "_edgediff_origin", (None,))[0] for o in out]
        return out

    @contextmanager
    def _hooks(self):
        handles = []

        def push(module, _args):
            self._stack.append(self.names.get(id(module), "?"))

        def pop(module, _args, _out):
            self._stack.pop()

        for module in self.module.modules():
            handles.append(module.register_forward_pre_hook(push))
            handles.append(module.register_forward_hook(pop, always_call=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self._stack.clear()

    def _graph_input(self, index: int, value):
        key = (INPUT, index)
        if self._observing:
            if isinstance(value, torch.Tensor):
                value = value.clone()
                value._edgediff_origin = key
                self._record(key, "out", value)
            return value
        return self._fq(key, "out", value) if self._quantize_out.get(key) else value

    def pass_through(self, func, args: tuple, kwargs: dict) -> Any:
        """Observation only: outputs of view-like ops keep the producer of their input."""
        out = func(*args, **kwargs)
        source = next((a for a in args if isinstance(a, torch.Tensor)), None)
        origin = getattr(source, "_edgediff_origin", None)
        if origin is not None:
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    t._edgediff_origin = origin
        return out

    def handle(self, name: str, func, args: tuple, kwargs: dict) -> Any:
        unit = self._stack[-1]
        ordinal = self._calls.get(unit, 0)
        self._calls[unit] = ordinal + 1
        key = (unit, ordinal)
        if self._observing:
            return self._observe_call(unit, key, name, func, args, kwargs)
        mode = self.modes.get(unit, "float")
        act = mode == "int8"
        if mode != "float":
            args, kwargs = self._quantize_inputs(key, name, args, kwargs, act)
        if name == "scaled_dot_product_attention" and act:
            out = _attention(args, kwargs, lambda t, slot: self._fq(key, slot, t))
        else:
            out = func(*args, **kwargs)
        return self._fq(key, "out", out) if self._quantize_out.get(key) and isinstance(out, torch.Tensor) else out

    def _observe_call(self, unit: str, key: tuple, name: str, func, args, kwargs):
        info = self.units.get(unit)
        if info is None:
            module = self._module(unit)
            info = self.units[unit] = Unit(unit, type(module).__name__)
        if key[1] >= info.ops:
            info.ops = key[1] + 1
        if name in WEIGHT_OPS and len(args) > 1 and isinstance(args[1], torch.nn.Parameter):
            seen = self._unit_weights.setdefault(unit, set())
            if id(args[1]) not in seen:
                seen.add(id(args[1]))
                info.weight_params += args[1].numel()
        for slot, t in _tensor_slots(args, kwargs):
            self._record(key, slot, t)
            origin = getattr(t, "_edgediff_origin", None)
            if origin is not None and not isinstance(t, torch.nn.Parameter):
                self.consumers.setdefault(origin, set()).add(unit)
        if name == "scaled_dot_product_attention":
            out = _attention(args, kwargs, lambda t, slot: (self._record(key, slot, t), t)[1])
        else:
            out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            self._record(key, "out", out)
            out._edgediff_origin = key
            self.consumers.setdefault(key, set())
        return out

    def _quantize_inputs(self, key, name, args, kwargs, act: bool):
        axis = WEIGHT_OPS.get(name, "no")
        new_args = list(args)
        if axis != "no" and len(args) > 1 and isinstance(args[1], torch.nn.Parameter):
            new_args[1] = self._weight(args[1], axis)
        if act:
            new_args = [_map_tensors(a, f"a{i}", lambda t, slot: self._fq(key, slot, t))
                        if not (i == 1 and axis != "no") else a for i, a in enumerate(new_args)]
            kwargs = {k: _map_tensors(v, f"k{k}", lambda t, slot: self._fq(key, slot, t)) for k, v in kwargs.items()}
        return tuple(new_args), kwargs

    def _weight(self, param: torch.Tensor, axis) -> torch.Tensor:
        cache_key = (id(param), str(axis))
        if cache_key not in self._weights:
            self._weights[cache_key] = fake_quant_weight(param.detach(), axis)
        return self._weights[cache_key]

    def _record(self, key: tuple, slot: str, t: torch.Tensor) -> None:
        if not _quantizable(t):
            return
        finite = t if bool(torch.isfinite(t).all()) else t[torch.isfinite(t)]
        if finite.numel() == 0:
            return
        low, high = float(finite.min()), float(finite.max())
        found = self.ranges.get(key + (slot,))
        if found is None:
            self.ranges[key + (slot,)] = [low, high]
        else:
            found[0], found[1] = min(found[0], low), max(found[1], high)

    def _fq(self, key: tuple, slot: str, t: torch.Tensor) -> torch.Tensor:
        if not _quantizable(t):
            return t
        found = self.ranges.get(key + (slot,))
        return t if found is None else fake_quant_activation(t, found[0], found[1])

    def _module(self, name: str) -> torch.nn.Module:
        return self.module.get_submodule(name) if name else self.module


class _Mode(TorchFunctionMode):
    def __init__(self, sim: Simulator):
        super().__init__()
        self.sim = sim

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in QUANT_OPS and self.sim._stack:
            return self.sim.handle(name, func, args, kwargs)
        if self.sim._observing and name in PASS_THROUGH:
            return self.sim.pass_through(func, args, kwargs)
        return func(*args, **kwargs)


def _quantizable(t: Any) -> bool:
    return (isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1
            and not isinstance(t, torch.nn.Parameter))


def _tensor_slots(args: tuple, kwargs: dict):
    for i, a in enumerate(args):
        yield from _flatten(a, f"a{i}")
    for k, v in kwargs.items():
        yield from _flatten(v, f"k{k}")


def _flatten(value: Any, slot: str):
    if isinstance(value, torch.Tensor):
        yield slot, value
    elif isinstance(value, (list, tuple)):
        for j, v in enumerate(value):
            yield from _flatten(v, f"{slot}.{j}")


def _map_tensors(value: Any, slot: str, fn):
    if isinstance(value, torch.Tensor):
        return fn(value, slot) if _quantizable(value) else value
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, f"{slot}.{j}", fn) for j, v in enumerate(value))
    return value


def _attention(args: tuple, kwargs: dict, tap) -> torch.Tensor:
    """scaled_dot_product_attention written out (q·kᵀ, softmax, ·v) so the scores and probabilities, which the
    backends quantize as separate tensors, can be observed and quantized too."""
    q, k, v = args[:3]
    extra = dict(zip(("attn_mask", "dropout_p", "is_causal", "scale"), args[3:])) | kwargs
    mask, causal, scale = extra.get("attn_mask"), extra.get("is_causal", False), extra.get("scale")
    if k.shape[-3] != q.shape[-3] and q.dim() == 4:  # grouped-query attention
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n, m = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(n, m, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if tap is not None:
        scores = tap(scores, "scores")
    probs = torch.softmax(scores, dim=-1)
    if tap is not None:
        probs = tap(probs, "probs")
    return torch.matmul(probs, v)
