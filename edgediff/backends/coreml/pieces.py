"""The pieces a component is converted as (one, or UNet chunks), how their inputs are fed, which weights stay
float, and the small module wrappers that give Core ML the names and layouts Apple's pipeline expects."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edgediff.contract import TensorSpec
from edgediff.errors import RecipeError
from edgediff.model.components import Component


@dataclass
class _Piece:
    """One package to write: a module, how to call it, and its I/O as stored in the package."""

    stem: str
    module: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    example: dict[str, Any]  # torch tensors by input name
    keyword: bool = False  # chunk modules take keyword tensors
    stages: tuple[str, ...] = ()
    weight_bytes: int = 0
    dynamic: Any = None  # torch.export dynamic_shapes of a component with several sizes (backends/sizes.py)
    enumerated: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)  # input -> shape at each size



def _package_specs(specs) -> tuple[TensorSpec, ...]:
    """Core ML multi-arrays hold float16/32 and int32: int64 inputs (token ids) become int32."""
    return tuple(TensorSpec(s.name, s.shape, "int32" if s.dtype.startswith("int") else "float32") for s in specs)


def _package_feed(values: Mapping[str, np.ndarray], specs) -> dict[str, np.ndarray]:
    return {s.name: np.asarray(values[s.name]).astype(p.dtype) for s, p in zip(specs, _package_specs(specs))}


def _torch_feed(feed: Mapping[str, np.ndarray], specs) -> dict[str, Any]:
    import torch

    return {s.name: torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in specs}


def _keep_float_map(component: Component, pieces: list[_Piece], patterns: list[str], strict: list[str]
                    ) -> tuple[dict[str, set[str]], list[str]]:
    """MIL const names (per package) of the weights to keep in float, and the recipe patterns that matched nothing.

    A pattern is an fnmatch glob over PyTorch module paths of the component, also matching after a wrapper prefix
    (`conv_in` finds `unet.conv_in`; same rule as the litert backend), optionally prefixed `component:` to apply to
    one component only; `re:<regex>` is matched against Core ML weight names (`p_<module path with _>_weight`).
    `strict` patterns (from an int8 plan, or prefixed with this component's name) must match, or RecipeError.
    """
    import re

    mine = lambda p: p.split(":", 1)[1] if ":" in p and not p.startswith("re:") else p  # noqa: E731
    applies = lambda p: p.startswith("re:") or ":" not in p or p.split(":", 1)[0] == component.name  # noqa: E731
    prefixed = [mine(p) for p in patterns if applies(p) and ":" in p and not p.startswith("re:")]
    strict = [mine(p) for p in strict] + prefixed
    own = list(dict.fromkeys([mine(p) for p in patterns if applies(p)] + strict))
    if not own:
        return {}, []
    original = {}
    for name, param in component.module.named_parameters():
        original.setdefault(param.data_ptr(), name)
    source_of = lambda param: getattr(param, "_edgediff_source", param)  # noqa: E731  (rewritten weights)
    matched: set[str] = set()
    kept: dict[str, set[str]] = {}
    for piece in pieces:
        for export_name, param in piece.module.named_parameters():
            base = "p_" + export_name.replace(".", "_")
            source = original.get(source_of(param).data_ptr())
            module_name = source.rsplit(".", 1)[0] if source else ""
            for pattern in own:
                if pattern.startswith("re:"):
                    hit = re.search(pattern[3:], base) is not None
                else:
                    hit = bool(module_name) and (fnmatch.fnmatchcase(module_name, pattern)
                                                 or fnmatch.fnmatchcase(module_name, "*." + pattern)
                                                 or module_name.startswith(pattern + ".")
                                                 or f".{pattern}." in f".{module_name}.")
                if hit:
                    kept.setdefault(piece.stem, set()).update({base, base + "_to_fp16"})
                    matched.add(pattern)
    missing_strict = [p for p in strict if p not in matched]
    if missing_strict:
        names = [n.rsplit(".", 1)[0] for n, _ in component.module.named_parameters()][:4]
        raise RecipeError(f"keep_float pattern(s) {', '.join(missing_strict)} match no layer of {component.name} "
                          f"(module paths look like {', '.join(names)}, ...)")
    return kept, [p for p in own if p not in matched]


class _HeadCounter:
    """Counts, while PyTorch runs, the softmaxes split-einsum attention performs (heads x query chunks per call).

    Counting traced calls rather than modules matters: a VAE encoder component holds the decoder's attention too,
    but only runs its own."""

    def __init__(self, module):
        from edgediff.backends.coreml.attention import _ane_modules

        ane = _ane_modules().AneAttention
        self.modules = [m for m in module.modules() if isinstance(m, ane)]
        self.handles: list = []
        self.calls = 0
        self.softmax = 0

    def _hook(self, module, args, output):
        queries = args[0].shape[3]
        chunk = module.query_chunk
        pieces = -(-queries // chunk) if chunk and queries > chunk else 1
        self.calls += 1
        self.softmax += module.heads * pieces

    def __enter__(self):
        self.handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _drop_aliases(program) -> None:
    """aten.alias is an identity (transformers' CLIP emits it); coremltools has no converter for it."""
    import torch

    graph = program.graph_module.graph
    aliases = [n for n in graph.nodes if n.op == "call_function" and n.target is torch.ops.aten.alias.default]
    for node in aliases:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    if aliases:
        program.graph_module.recompile()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class _ContextToSequence:
    @staticmethod
    def wrap(module):
        """A chunk that takes Swift's [B, D, 1, S] context but runs original attention on [B, S, D]."""
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner
                self.output_names = getattr(inner, "output_names", ())

            def forward(self, **inputs):
                if "encoder_hidden_states" in inputs:
                    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"].squeeze(2).transpose(1, 2)
                return self.inner(**inputs)

        return Wrapped(module)


class _RenameOutputs:
    @staticmethod
    def wrap(module, names: Mapping[str, str]):
        """The last chunk's output under the component's (or Swift's) output name."""
        from torch import nn

        if all(k == v for k, v in names.items()):
            return module

        class Wrapped(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, **inputs):
                out = self.inner(**inputs)
                return {names.get(k, k): v for k, v in out.items()}

        return Wrapped(module)
