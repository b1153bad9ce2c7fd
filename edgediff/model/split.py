"""Split a diffusers UNet2DConditionModel into chunks chained through named tensors.

Why: a full-size UNet in fp32 (SD 1.5: 3.4 GB) is over the 2 GB limit of TFLite flatbuffers and of several
on-device loaders, and converting it in one piece needs far more RAM than converting it piece by piece.

The UNet's forward is cut into stages (prelude = time embedding + conv_in, each down block, the mid block, each
up block, postlude = norm + conv_out) that read and write a shared dict of named tensors:

    sample, timestep, encoder_hidden_states[, timestep_cond]   the UNet's own inputs
    emb         time embedding                               hidden    the running feature map
    skip_<k>    the k-th skip connection (down-block residual) noise_pred the output

With `granularity="layer"`, the standard SD blocks (DownBlock2D, CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn,
UpBlock2D, CrossAttnUpBlock2D) are cut further, into one stage per resnet (+ its attention) and one per
down/upsampler. Whole blocks are too coarse to balance two chunks (SD 1.5's up_blocks.1 alone is 30% of the
weights: block cuts give 41/59, layer cuts give ~50/50); other block types stay whole.

Consecutive stages are grouped into chunks balanced by weight bytes. A chunk's module takes its inputs as keyword
tensors and returns a dict, so exporters name the file's inputs/outputs after the tensors. A runtime chains
chunks by name: every output of chunk i feeds the same-named inputs of later chunks, and the UNet's own inputs
are fed to every chunk that lists them. `run_chunks` does exactly that in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edgediff.errors import UnsupportedError

UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states", "timestep_cond", "text_embeds", "time_ids")
OUTPUT = "noise_pred"


@dataclass
class Chunk:
    """One piece of a split UNet: `module(**{name: tensor})` returns {name: tensor} for `output_names`."""

    module: Any  # torch.nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    stages: tuple[str, ...]
    weight_bytes: int


def _check_supported(unet) -> None:
    cfg = unet.config
    unsupported = {
        "class_embed_type": cfg.class_embed_type,
        "addition_embed_type": None if getattr(cfg, "addition_embed_type", None) == "text_time"  # SDXL: prelude
        else getattr(cfg, "addition_embed_type", None),
        "encoder_hid_dim_type": getattr(cfg, "encoder_hid_dim_type", None),
        "num_class_embeds": cfg.num_class_embeds,
    }
    used = {k: v for k, v in unsupported.items() if v is not None}
    if used:
        raise UnsupportedError(
            f"splitting a UNet with {', '.join(f'{k}={v!r}' for k, v in used.items())} is not supported "
            "(extra conditioning inputs); convert it unsplit (chunks = 1) or at fp16/int8"
        )


def _stage_classes():
    """Stage modules, defined lazily so importing this file does not import torch."""
    import torch
    from torch import nn

    class Prelude(nn.Module):
        reads = ("sample", "timestep")
        name = "prelude"

        def __init__(self, unet):
            super().__init__()
            self.time_proj, self.time_embedding, self.conv_in = unet.time_proj, unet.time_embedding, unet.conv_in
            self.time_embed_act = unet.time_embed_act
            self.center = bool(unet.config.center_input_sample)
            self.uses_cond = bool(unet.config.time_cond_proj_dim)
            if self.uses_cond:
                self.reads = ("sample", "timestep", "timestep_cond")
            self.text_time = getattr(unet.config, "addition_embed_type", None) == "text_time"
            if self.text_time:  # SDXL's added conditioning joins the time embedding, as get_aug_embed does
                self.add_time_proj, self.add_embedding = unet.add_time_proj, unet.add_embedding
                self.reads = (*self.reads, "text_embeds", "time_ids")
            self.writes = ("emb", "hidden", "skip_0")

        def forward(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            sample = state["sample"]
            timesteps = state["timestep"]
            timesteps = (timesteps[None] if timesteps.dim() == 0 else timesteps).expand(sample.shape[0])
            t_emb = self.time_proj(timesteps).to(dtype=sample.dtype)
            emb = self.time_embedding(t_emb, state["timestep_cond"] if self.uses_cond else None)
            if self.text_time:
                text_embeds = state["text_embeds"]
                time_embeds = self.add_time_proj(state["time_ids"].flatten()).reshape((text_embeds.shape[0], -1))
                emb = emb + self.add_embedding(torch.concat([text_embeds, time_embeds], dim=-1).to(emb.dtype))
            if self.time_embed_act is not None:
                emb = self.time_embed_act(emb)
            if self.center:
                sample = 2 * sample - 1.0
            hidden = self.conv_in(sample)
            return {"emb": emb, "hidden": hidden, "skip_0": hidden}

    class Down(nn.Module):
        def __init__(self, index: int, block, first_skip: int):
            super().__init__()
            self.block = block
            self.name = f"down_blocks.{index}"
            self.cross = bool(getattr(block, "has_cross_attention", False))
            count = len(block.resnets) + (1 if getattr(block, "downsamplers", None) else 0)
            self.skips = tuple(f"skip_{first_skip + i}" for i in range(count))
            self.reads = ("hidden", "emb") + (("encoder_hidden_states",) if self.cross else ())
            self.writes = ("hidden",) + self.skips

        def forward(self, state):
            if self.cross:
                hidden, res = self.block(hidden_states=state["hidden"], temb=state["emb"],
                                         encoder_hidden_states=state["encoder_hidden_states"])
            else:
                hidden, res = self.block(hidden_states=state["hidden"], temb=state["emb"])
            if len(res) != len(self.skips):
                raise UnsupportedError(f"{self.name} returned {len(res)} residuals, expected {len(self.skips)}")
            return {"hidden": hidden, **dict(zip(self.skips, res))}

    class Mid(nn.Module):
        name = "mid_block"

        def __init__(self, block):
            super().__init__()
            self.block = block
            self.cross = bool(getattr(block, "has_cross_attention", False))
            self.reads = ("hidden", "emb") + (("encoder_hidden_states",) if self.cross else ())
            self.writes = ("hidden",)

        def forward(self, state):
            if self.cross:
                return {"hidden": self.block(state["hidden"], state["emb"],
                                             encoder_hidden_states=state["encoder_hidden_states"])}
            return {"hidden": self.block(state["hidden"], state["emb"])}

    class Up(nn.Module):
        def __init__(self, index: int, block, skips: tuple[str, ...], next_skip: str | None):
            super().__init__()
            self.block = block
            self.name = f"up_blocks.{index}"
            self.cross = bool(getattr(block, "has_cross_attention", False))
            self.skips, self.next_skip = skips, next_skip
            self.reads = ("hidden", "emb") + skips + (("encoder_hidden_states",) if self.cross else ())
            if next_skip is not None:
                self.reads += (next_skip,)
            self.writes = ("hidden",)

        def forward(self, state):
            # diffusers gives the upsampler an explicit size when the latent is not a multiple of the total upscale;
            # an explicit size equal to 2x gives the same values, so pass it only where 2x would be wrong.
            size = None
            if self.next_skip is not None:
                target = tuple(state[self.next_skip].shape[2:])
                if target != tuple(2 * d for d in state["hidden"].shape[2:]):
                    size = target
            kwargs = dict(hidden_states=state["hidden"], temb=state["emb"],
                          res_hidden_states_tuple=tuple(state[s] for s in self.skips), upsample_size=size)
            if self.cross:
                kwargs["encoder_hidden_states"] = state["encoder_hidden_states"]
            return {"hidden": self.block(**kwargs)}

    class Postlude(nn.Module):
        name = "postlude"
        reads = ("hidden",)
        writes = (OUTPUT,)

        def __init__(self, unet):
            super().__init__()
            self.conv_norm_out, self.conv_act, self.conv_out = unet.conv_norm_out, unet.conv_act, unet.conv_out

        def forward(self, state):
            hidden = state["hidden"]
            if self.conv_norm_out is not None:
                hidden = self.conv_act(self.conv_norm_out(hidden))
            return {OUTPUT: self.conv_out(hidden)}

    class ChunkModule(nn.Module):
        """Runs consecutive stages on named tensors; forward(**inputs) -> {output name: tensor}."""

        def __init__(self, stages, output_names: tuple[str, ...]):
            super().__init__()
            self.stages = nn.ModuleList(stages)
            self.output_names = output_names

        def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
            state = dict(inputs)
            for stage in self.stages:
                state.update(stage(state))
            return {name: state[name] for name in self.output_names}

    return Prelude, Down, Mid, Up, Postlude, ChunkModule


GRANULARITIES = ("block", "layer")
LAYER_SPLIT_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D", "UNetMidBlock2DCrossAttn", "UpBlock2D",
                      "CrossAttnUpBlock2D")


def unet_stages(unet, granularity: str = "block") -> list:
    """The UNet's forward as an ordered list of stage modules sharing the UNet's own parameters."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    _check_supported(unet)
    Prelude, Down, Mid, Up, Postlude, _ = _stage_classes()
    by_layer = granularity == "layer"
    stages = [Prelude(unet)]
    skip_count = 1  # skip_0 is conv_in's output
    for i, block in enumerate(unet.down_blocks):
        stage = Down(i, block, skip_count)
        stages += _down_layers(i, block, stage.skips) if by_layer and _layer_splittable(block) else [stage]
        skip_count += len(stage.skips)
    if unet.mid_block is not None:
        block = unet.mid_block
        stages += _mid_layers(block) if by_layer and _layer_splittable(block) else [Mid(block)]
    pending = [f"skip_{k}" for k in range(skip_count)]
    for i, block in enumerate(unet.up_blocks):
        take = len(block.resnets)
        skips, pending = tuple(pending[-take:]), pending[:-take]
        is_final = i == len(unet.up_blocks) - 1
        next_skip = None if is_final or not pending else pending[-1]
        if by_layer and _layer_splittable(block):
            stages += _up_layers(i, block, skips, next_skip)
        else:
            stages.append(Up(i, block, skips, next_skip))
    stages.append(Postlude(unet))
    return stages


def _layer_splittable(block) -> bool:
    """Blocks whose forward is exactly resnet(+attention) pairs and a sampler, so cutting between them is exact."""
    if type(block).__name__ not in LAYER_SPLIT_BLOCKS:
        return False
    freeu = all(getattr(block, k, None) for k in ("s1", "s2", "b1", "b2"))
    samplers = getattr(block, "downsamplers", None) or getattr(block, "upsamplers", None) or []
    return not freeu and len(samplers) <= 1


def _layer_classes():
    """Stage modules for one resnet (+ attention) and for one sampler of a block; lazily defined like the rest."""
    import torch
    from torch import nn

    class Layer(nn.Module):
        """resnet then attention (attention first in the mid block), optionally concatenating a skip before and
        publishing the result as a skip after, as the diffusers blocks do."""

        def __init__(self, name, resnet, attention, skip_in=None, skip_out=None, attention_first=False):
            super().__init__()
            self.name, self.resnet, self.attention = name, resnet, attention
            self.skip_in, self.skip_out, self.attention_first = skip_in, skip_out, attention_first
            self.reads = ("hidden", "emb") + ((skip_in,) if skip_in else ()) + \
                (("encoder_hidden_states",) if attention is not None else ())
            self.writes = ("hidden",) + ((skip_out,) if skip_out else ())

        def _attend(self, hidden, state):
            return self.attention(hidden, encoder_hidden_states=state["encoder_hidden_states"], return_dict=False)[0]

        def forward(self, state):
            hidden = state["hidden"]
            if self.skip_in:
                hidden = torch.cat([hidden, state[self.skip_in]], dim=1)
            if self.attention is not None and self.attention_first:
                hidden = self._attend(hidden, state)
            if self.resnet is not None:
                hidden = self.resnet(hidden, state["emb"])
            if self.attention is not None and not self.attention_first:
                hidden = self._attend(hidden, state)
            return {"hidden": hidden, **({self.skip_out: hidden} if self.skip_out else {})}

    class Sampler(nn.Module):
        def __init__(self, name, sampler, up: bool, skip_out=None, next_skip=None):
            super().__init__()
            self.name, self.sampler, self.up = name, sampler, up
            self.skip_out, self.next_skip = skip_out, next_skip
            self.reads = ("hidden",) + ((next_skip,) if next_skip else ())
            self.writes = ("hidden",) + ((skip_out,) if skip_out else ())

        def forward(self, state):
            hidden = state["hidden"]
            if not self.up:
                hidden = self.sampler(hidden)
                return {"hidden": hidden, **({self.skip_out: hidden} if self.skip_out else {})}
            size = None  # as Up: an explicit size only where 2x would be wrong
            if self.next_skip is not None:
                target = tuple(state[self.next_skip].shape[2:])
                if target != tuple(2 * d for d in hidden.shape[2:]):
                    size = target
            return {"hidden": self.sampler(hidden, size)}

    return Layer, Sampler


def _down_layers(index: int, block, skips: tuple[str, ...]) -> list:
    Layer, Sampler = _layer_classes()
    attentions = list(getattr(block, "attentions", None) or [None] * len(block.resnets))
    stages = [Layer(f"down_blocks.{index}.{k}", resnet, attn, skip_out=skips[k])
              for k, (resnet, attn) in enumerate(zip(block.resnets, attentions))]
    if block.downsamplers:
        stages.append(Sampler(f"down_blocks.{index}.downsample", block.downsamplers[0], up=False,
                              skip_out=skips[len(block.resnets)]))
    return stages


def _mid_layers(block) -> list:
    Layer, _ = _layer_classes()
    stages = [Layer("mid_block.0", block.resnets[0], None)]
    stages += [Layer(f"mid_block.{k + 1}", resnet, attn, attention_first=True)
               for k, (attn, resnet) in enumerate(zip(block.attentions, block.resnets[1:]))]
    return stages


def _up_layers(index: int, block, skips: tuple[str, ...], next_skip: str | None) -> list:
    Layer, Sampler = _layer_classes()
    attentions = list(getattr(block, "attentions", None) or [None] * len(block.resnets))
    popped = list(reversed(skips))  # the block pops its residuals from the end
    stages = [Layer(f"up_blocks.{index}.{k}", resnet, attn, skip_in=popped[k])
              for k, (resnet, attn) in enumerate(zip(block.resnets, attentions))]
    if block.upsamplers:
        stages.append(Sampler(f"up_blocks.{index}.upsample", block.upsamplers[0], up=True, next_skip=next_skip))
    return stages


def _weight_bytes(module) -> int:
    seen, total = set(), 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _balanced_partition(sizes: list[int], parts: int) -> list[int]:
    """Start indices of `parts` contiguous groups minimising the largest group (exact DP; a UNet has ~12 stages)."""
    n = len(sizes)
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0
    for p in range(1, parts + 1):
        for end in range(1, n + 1):
            for start in range(p - 1, end):
                cost = max(best[p - 1][start], prefix[end] - prefix[start])
                if cost < best[p][end]:
                    best[p][end], cut[p][end] = cost, start
    starts, end = [], n
    for p in range(parts, 0, -1):
        end = cut[p][end]
        starts.append(end)
    return starts[::-1]


def split_unet(unet, parts: int | None = None, max_chunk_bytes: int | None = None,
               granularity: str = "block") -> list[Chunk]:
    """Split into `parts` chunks, or into the fewest chunks whose weights each fit `max_chunk_bytes`.

    Chunks are balanced by weight bytes over cut points at `granularity` ("block" or the finer "layer").
    Each chunk's inputs are the tensors it reads that an earlier chunk (or the caller) provides; its outputs are
    what later chunks read (the last chunk outputs `noise_pred`).
    """
    stages = unet_stages(unet, granularity)
    *_, ChunkModule = _stage_classes()
    sizes = [_weight_bytes(s) for s in stages]
    if parts is None:
        if max_chunk_bytes is None:
            raise ValueError("give parts or max_chunk_bytes")
        if max(sizes) > max_chunk_bytes:
            biggest = stages[sizes.index(max(sizes))].name
            raise UnsupportedError(
                f"UNet stage {biggest} alone holds {max(sizes) / 1e9:.2f} GB of weights, over the "
                f"{max_chunk_bytes / 1e9:.2f} GB chunk limit; use fp16/int8 weights or raise the limit"
            )
        parts = 1
        while parts < len(stages):
            starts = _balanced_partition(sizes, parts)
            ends = starts[1:] + [len(stages)]
            if max(sum(sizes[a:b]) for a, b in zip(starts, ends)) <= max_chunk_bytes:
                break
            parts += 1
    if not 1 <= parts <= len(stages):
        raise UnsupportedError(f"a UNet with {len(stages)} stages splits into 1..{len(stages)} chunks, not {parts}")
    starts = _balanced_partition(sizes, parts)
    groups = [stages[a:b] for a, b in zip(starts, starts[1:] + [len(stages)])]

    # Which tensors each chunk must receive and hand on, from the stages' declared reads/writes.
    reads_after: list[set[str]] = []
    later: set[str] = set()
    for group in reversed(groups):
        reads_after.append(set(later))
        for stage in group:
            later |= set(stage.reads)
    reads_after.reverse()
    chunks = []
    for group, needed_later in zip(groups, reads_after):
        written: set[str] = set()
        inputs: list[str] = []
        for stage in group:
            inputs += [r for r in stage.reads if r not in written and r not in inputs]
            written |= set(stage.writes)
        outputs = sorted(w for w in written if w in needed_later and w not in UNET_INPUTS)
        if group is groups[-1]:
            outputs = [OUTPUT]
        inputs = _ordered(inputs)
        outputs = _ordered(outputs)
        chunks.append(Chunk(ChunkModule(group, tuple(outputs)).eval(), tuple(inputs), tuple(outputs),
                            tuple(s.name for s in group), sum(_weight_bytes(s) for s in group)))
    return chunks


def _ordered(names: list[str]) -> list[str]:
    """UNet inputs first (in their usual order), then emb, hidden, skips by index."""
    def key(name: str):
        if name in UNET_INPUTS:
            return (0, UNET_INPUTS.index(name))
        if name.startswith("skip_"):
            return (2, int(name[5:]))
        return (1, ("emb", "hidden", OUTPUT).index(name) if name in ("emb", "hidden", OUTPUT) else 9)
    return sorted(set(names), key=key)


def run_chunks(chunks: list[Chunk], inputs: Mapping[str, Any], run=None) -> dict[str, Any]:
    """Chain chunks by tensor name. `run(index, chunk, feed) -> outputs` defaults to calling the torch module."""
    available = dict(inputs)
    outputs: dict[str, Any] = {}
    for index, chunk in enumerate(chunks):
        missing = [n for n in chunk.input_names if n not in available]
        if missing:
            raise UnsupportedError(f"chunk {index} needs {', '.join(missing)}, which no input or earlier chunk gives")
        feed = {n: available[n] for n in chunk.input_names}
        outputs = run(index, chunk, feed) if run is not None else chunk.module(**feed)
        available.update(outputs)
    return outputs
