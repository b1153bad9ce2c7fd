"""Neural-Engine-friendly attention for Core ML: the split-einsum rewrite of diffusers' transformer blocks.

The Neural Engine prefers 4-D channels-first tensors `(B, C, 1, S)`, 1x1 convolutions instead of linear layers,
and attention computed one head at a time (channel slices, no `(B*heads, S, d)` reshapes). This module rebuilds
the attention parts of a PyTorch component in that form *before* coremltools sees it:

- every continuous-input `Transformer2DModel` (the UNet's attention blocks) keeps its activations in
  `(B, C, 1, H*W)` from `proj_in` to `proj_out`: linear layers become 1x1 convolutions sharing the original
  weights, LayerNorm normalises over the channel axis, GEGLU/GELU feed-forwards run as convolutions;
- every spatial `Attention` with a GroupNorm (the VAE's mid-block attention) runs on `(B, C, 1, H*W)` too;
- attention itself is either "split_einsum" (per-head einsums, softmax over the key axis) or "split_einsum_v2"
  (the same with the query axis processed in chunks, which keeps the S x S score tensor small at high
  resolution).

The rebuilt module shares every parameter tensor with the original (no copy of a 3 GB UNet; only the query
projections, which absorb the attention scale, are new tensors) and leaves the original untouched, so the PyTorch reference used for verification stays the real diffusers model. The
cross-attention context may arrive as `(B, S, D)` (edgediff's contract) or as `(B, D, 1, S)` (the layout Apple's
Swift pipeline feeds its UNet); both are accepted.

Anything this rewrite cannot express exactly (ada-norm blocks, attention masks, added KV projections, q/k norms,
custom processors) is refused with UnsupportedError naming the module; `attention = "original"` converts it
as it is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from edgediff.errors import RecipeError, UnsupportedError

ATTENTION_FORMS = ("original", "split_einsum", "split_einsum_v2")
DEFAULT_QUERY_CHUNK = 512  # split_einsum_v2: queries per chunk (Apple chunks similarly above ~1k tokens)


@dataclass
class RewriteReport:
    """What the rewrite changed, recorded in the artifact's meta so the manifest says which form shipped."""

    form: str
    transformer_blocks: int = 0  # Transformer2DModel blocks moved to (B, C, 1, S)
    attention_layers: int = 0  # attention layers now in split-einsum form
    kept: list[str] = field(default_factory=list)  # attention modules left in their original form, with why

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "transformer_blocks": self.transformer_blocks,
                "attention_layers": self.attention_layers, "kept_original": self.kept}


def rewrite_attention(module, form: str, query_chunk: int = DEFAULT_QUERY_CHUNK):
    """Return (new_module, report): `module` with its attention rebuilt in `form`. The input is not modified."""
    if form not in ATTENTION_FORMS:
        raise RecipeError(f"unknown attention form '{form}' (valid: {', '.join(ATTENTION_FORMS)})")
    report = RewriteReport(form)
    if form == "original":
        return module, report
    chunk = query_chunk if form == "split_einsum_v2" else 0
    classes = _diffusers_classes()
    _, _, _, Attention = classes

    def replace(name: str, child):
        if _is_continuous_transformer(child, classes):
            report.transformer_blocks += 1
            report.attention_layers += sum(1 for m in child.modules() if isinstance(m, Attention))
            return _ane_modules().AneTransformer2D(child, chunk, name)
        if isinstance(child, Attention):
            if child.group_norm is not None and child.spatial_norm is None:
                report.attention_layers += 1
                return _ane_modules().AneSpatialAttention(child, chunk, name)
            report.kept.append(f"{name}: {type(child).__name__} outside a transformer block without GroupNorm")
        return None

    rebuilt = _rebuild(module, replace, "")
    kept_transformers = [f"{n}: {type(m).__name__}" for n, m in rebuilt.named_modules()
                         if type(m).__name__.endswith("Attention") and type(m).__module__.startswith("transformers")]
    if kept_transformers:
        report.kept.append(f"{len(kept_transformers)} text-encoder attention layers (CLIP) kept: their 77-token "
                           "sequence gains nothing from the rewrite (Apple's converter keeps them too)")
    return rebuilt, report


def _rebuild(module, replace, prefix: str):
    """Shallow-copy the path down to every replaced child so the original tree is never mutated."""
    new = replace(prefix, module) if prefix else None
    if new is not None:
        return new
    children = {}
    changed = False
    for name, child in module._modules.items():
        if child is None:
            children[name] = None
            continue
        new_child = _rebuild(child, replace, f"{prefix}.{name}" if prefix else name)
        children[name] = new_child
        changed |= new_child is not child
    if not changed:
        return module
    clone = copy.copy(module)
    clone._modules = type(module._modules)(children)
    return clone


def _diffusers_classes():
    from diffusers.models.attention import BasicTransformerBlock, FeedForward
    from diffusers.models.attention_processor import Attention
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    return Transformer2DModel, BasicTransformerBlock, FeedForward, Attention


def _is_continuous_transformer(module, classes) -> bool:
    Transformer2DModel = classes[0]
    return isinstance(module, Transformer2DModel) and getattr(module, "is_input_continuous", False)


_ANE = None


def _ane_modules():
    """The torch modules are built on first use so importing this file does not import torch."""
    global _ANE
    if _ANE is None:
        _ANE = _build_ane_modules()
    return _ANE


def split_einsum_attention(q, k, v, heads: int, scale: float, query_chunk: int = 0):
    """Attention on channels-first tensors, one head at a time.

    q: (B, heads*d, 1, Sq); k, v: (B, heads*d, 1, Sk) -> (B, heads*d, 1, Sq). Scores are laid out (B, Sk, 1, Sq)
    so the softmax runs over the channel-like axis 1, which is what the Neural Engine handles well.
    """
    import torch

    dim_head = q.shape[1] // heads
    if scale != 1.0:
        q = q * scale
    k_t = k.transpose(1, 3)  # (B, Sk, 1, heads*d): slices along the last axis are the per-head keys
    outputs = []
    for h in range(heads):
        sl = slice(h * dim_head, (h + 1) * dim_head)
        qh, kh, vh = q[:, sl], k_t[:, :, :, sl], v[:, sl]
        pieces = qh.split(query_chunk, dim=3) if query_chunk and qh.shape[3] > query_chunk else (qh,)
        parts = []
        for qc in pieces:
            weights = torch.einsum("bchq,bkhc->bkhq", qc, kh).softmax(dim=1)
            parts.append(torch.einsum("bkhq,bchk->bchq", weights, vh))
        outputs.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=3))
    return torch.cat(outputs, dim=1)


def to_channels_first(context):
    """(B, S, D) -> (B, D, 1, S); a tensor already in (B, D, 1, S) passes through."""
    if context is None or context.dim() == 4:
        return context
    return context.transpose(1, 2).unsqueeze(2)


def _build_ane_modules():
    import torch
    from torch import nn
    from torch.nn import functional as F

    Transformer2DModel, BasicTransformerBlock, FeedForward, Attention = _diffusers_classes()
    from diffusers.models.activations import GEGLU, GELU
    from diffusers.models.attention_processor import AttnProcessor2_0

    def derived(tensor, source) -> nn.Parameter:
        """A parameter computed from an original one; `_edgediff_source` lets keep-float plans find its origin."""
        param = nn.Parameter(tensor, requires_grad=False)
        param._edgediff_source = source
        return param

    def conv1x1(layer: nn.Module, scale: float = 1.0) -> nn.Module:
        """A Linear as a 1x1 Conv2d. Its weight is a view of the Linear's (shared storage, no copy) unless `scale`
        is folded in (the attention scale on the query projection: no runtime multiply, stable weight names)."""
        if isinstance(layer, nn.Conv2d) and scale == 1.0:
            return layer
        if isinstance(layer, nn.Conv2d):
            if layer.kernel_size != (1, 1):
                raise UnsupportedError("split-einsum rewrite: a query projection that is not 1x1")
            weight, bias = layer.weight.detach().flatten(1), layer.bias
        elif isinstance(layer, nn.Linear):
            weight, bias = layer.weight.detach(), layer.bias
        else:
            raise UnsupportedError(f"split-einsum rewrite expected a Linear or 1x1 Conv2d, got {type(layer).__name__}")
        out_features, in_features = weight.shape
        conv = nn.Conv2d(in_features, out_features, 1, bias=bias is not None, device="meta")
        if scale == 1.0:
            conv.weight = derived(weight.view(out_features, in_features, 1, 1), layer.weight)
            if bias is not None:
                conv.bias = derived(bias.detach(), bias)
        else:
            conv.weight = derived((weight * scale).view(out_features, in_features, 1, 1), layer.weight)
            if bias is not None:
                conv.bias = derived(bias.detach() * scale, bias)
        return conv

    class ChannelLayerNorm(nn.Module):
        """LayerNorm over axis 1 of (B, C, 1, S), with the original affine parameters."""

        def __init__(self, norm: nn.LayerNorm):
            super().__init__()
            if tuple(norm.normalized_shape) != (norm.normalized_shape[0],):
                raise UnsupportedError("split-einsum rewrite: LayerNorm over more than one axis")
            self.eps = norm.eps
            self.weight = norm.weight
            self.bias = norm.bias

        def forward(self, x):
            centered = x - x.mean(dim=1, keepdim=True)
            x = centered * torch.rsqrt(centered.pow(2).mean(dim=1, keepdim=True) + self.eps)
            if self.weight is not None:
                x = x * self.weight.view(1, -1, 1, 1)
            if self.bias is not None:
                x = x + self.bias.view(1, -1, 1, 1)
            return x

    class AneAttention(nn.Module):
        """q/k/v/out projections as 1x1 convs around split-einsum attention."""

        def __init__(self, attn: Attention, query_chunk: int, name: str):
            super().__init__()
            problems = [what for what, bad in (
                ("spatial_norm", attn.spatial_norm is not None), ("norm_cross", attn.norm_cross is not None),
                ("q/k norm", getattr(attn, "norm_q", None) is not None),
                ("added kv projections", getattr(attn, "add_k_proj", None) is not None),
            ) if bad]
            processor = attn.get_processor() if hasattr(attn, "get_processor") else None
            if processor is not None and type(processor).__name__ not in ("AttnProcessor2_0", "AttnProcessor"):
                problems.append(f"processor {type(processor).__name__}")
            if problems:
                raise UnsupportedError(f"split-einsum rewrite cannot express {name} ({', '.join(problems)}); "
                                       "set backend option attention = \"original\"")
            self.heads = attn.heads
            # AttnProcessor2_0 calls SDPA with its default scale 1/sqrt(head_dim) whatever attn.scale says.
            head_dim = attn.inner_dim // attn.heads
            self.scale = head_dim**-0.5 if isinstance(processor, AttnProcessor2_0) else attn.scale
            self.query_chunk = query_chunk
            # the softmax scale is folded into the query projection's weights
            self.to_q = conv1x1(attn.to_q, self.scale)
            self.to_k, self.to_v = conv1x1(attn.to_k), conv1x1(attn.to_v)
            self.to_out = conv1x1(attn.to_out[0])

        def forward(self, x, context=None):
            source = x if context is None else context
            out = split_einsum_attention(self.to_q(x), self.to_k(source), self.to_v(source),
                                         self.heads, 1.0, self.query_chunk)
            return self.to_out(out)

    class AneFeedForward(nn.Module):
        def __init__(self, ff: FeedForward, name: str):
            super().__init__()
            act, out = ff.net[0], ff.net[2] if len(ff.net) > 2 else None
            if isinstance(act, GEGLU):
                self.kind, self.approximate = "geglu", "none"
            elif isinstance(act, GELU):
                self.kind, self.approximate = "gelu", act.approximate
            else:
                raise UnsupportedError(f"split-einsum rewrite: {name} uses {type(act).__name__}, only GEGLU and "
                                       "GELU feed-forwards are rewritten; set attention = \"original\"")
            if out is None or not isinstance(out, nn.Linear):
                raise UnsupportedError(f"split-einsum rewrite: unexpected feed-forward layout in {name}")
            self.proj = conv1x1(act.proj)
            self.out = conv1x1(out)

        def forward(self, x):
            x = self.proj(x)
            if self.kind == "geglu":
                x, gate = x.chunk(2, dim=1)
                x = x * F.gelu(gate)
            else:
                x = F.gelu(x, approximate=self.approximate)
            return self.out(x)

    class AneTransformerBlock(nn.Module):
        def __init__(self, block: BasicTransformerBlock, query_chunk: int, name: str):
            super().__init__()
            if block.norm_type != "layer_norm" or block.pos_embed is not None:
                raise UnsupportedError(f"split-einsum rewrite: {name} uses norm_type={block.norm_type!r}"
                                       f"{' with pos_embed' if block.pos_embed is not None else ''}; only plain "
                                       "LayerNorm blocks (SD 1.x/2.x/SDXL-style) are rewritten; set "
                                       "attention = \"original\"")
            self.only_cross_attention = block.only_cross_attention
            self.norm1 = ChannelLayerNorm(block.norm1)
            self.attn1 = AneAttention(block.attn1, query_chunk, f"{name}.attn1")
            self.attn2 = None
            if block.attn2 is not None:
                self.norm2 = ChannelLayerNorm(block.norm2)
                self.attn2 = AneAttention(block.attn2, query_chunk, f"{name}.attn2")
            self.norm3 = ChannelLayerNorm(block.norm3)
            self.ff = AneFeedForward(block.ff, f"{name}.ff")

        def forward(self, x, context):
            x = self.attn1(self.norm1(x), context if self.only_cross_attention else None) + x
            if self.attn2 is not None:
                x = self.attn2(self.norm2(x), context) + x
            return self.ff(self.norm3(x)) + x

    class AneTransformer2D(nn.Module):
        """Drop-in for a continuous-input Transformer2DModel: same call signature, (B, C, 1, S) inside."""

        def __init__(self, t: Transformer2DModel, query_chunk: int, name: str):
            super().__init__()
            self.norm = t.norm
            self.proj_in = conv1x1(t.proj_in)
            self.transformer_blocks = nn.ModuleList(
                AneTransformerBlock(b, query_chunk, f"{name}.transformer_blocks.{i}")
                for i, b in enumerate(t.transformer_blocks))
            self.proj_out = conv1x1(t.proj_out)
            self.name = name

        def forward(self, hidden_states, encoder_hidden_states=None, timestep=None, added_cond_kwargs=None,
                    class_labels=None, cross_attention_kwargs=None, attention_mask=None,
                    encoder_attention_mask=None, return_dict=True):
            if attention_mask is not None or encoder_attention_mask is not None:
                raise UnsupportedError(f"split-einsum rewrite of {self.name} does not take attention masks")
            batch, _, height, width = hidden_states.shape
            x = self.proj_in(self.norm(hidden_states))
            x = x.reshape(batch, x.shape[1], 1, height * width)
            context = to_channels_first(encoder_hidden_states)
            for block in self.transformer_blocks:
                x = block(x, context)
            x = self.proj_out(x.reshape(batch, x.shape[1], height, width))
            out = x + hidden_states
            if not return_dict:
                return (out,)
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=out)

    class AneSpatialAttention(nn.Module):
        """Drop-in for a GroupNorm'd spatial Attention (VAE mid block) working on (B, C, 1, H*W)."""

        def __init__(self, attn: Attention, query_chunk: int, name: str):
            super().__init__()
            self.group_norm = attn.group_norm
            self.attention = AneAttention(attn, query_chunk, name)
            self.residual_connection = attn.residual_connection
            self.rescale_output_factor = attn.rescale_output_factor

        def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
            if attention_mask is not None:
                raise UnsupportedError("split-einsum rewrite of spatial attention does not take attention masks")
            batch, channels, height, width = hidden_states.shape
            x = self.group_norm(hidden_states).reshape(batch, channels, 1, height * width)
            out = self.attention(x, to_channels_first(encoder_hidden_states))
            out = out.reshape(batch, out.shape[1], height, width)
            if self.residual_connection:
                out = out + hidden_states
            return out / self.rescale_output_factor

    class _Namespace:
        pass

    ns = _Namespace()
    ns.AneTransformer2D = AneTransformer2D
    ns.AneSpatialAttention = AneSpatialAttention
    ns.AneAttention = AneAttention
    ns.ChannelLayerNorm = ChannelLayerNorm
    return ns
