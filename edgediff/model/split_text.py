"""Split a CLIP text encoder component (SD's text_encoder, SDXL's text_encoder / text_encoder_2) into chunks of
transformer layers chained through one named tensor, as edgediff.model.split does for UNets.

Why: SDXL's text_encoder_2 (OpenCLIP ViT-bigG, 32 layers, 2.8 GB of fp32 weights) is over the 2 GB limit of
TFLite flatbuffers, and litert-torch has no option to write a model's weights outside its flatbuffer (a
single-file format). Its layers are all the same size, so cutting between them balances chunks exactly.

    chunk 0         input_ids -> token + position embeddings -> layers[0:a]          -> text_states
    chunk i         text_states -> layers[a:b]                                       -> text_states
    last chunk      text_states -> layers[..:n-1] -> hidden_states[-2] (the component's HIDDEN output);
                    with the pooled output: -> layer n-1 -> final_layer_norm -> the EOS token's row (from
                    input_ids, which every chunk that lists it gets) -> text_projection -> POOLED

The chunks compute what the component's module computes (edgediff.model.sdxl's SDXLTextEncoder: the
penultimate hidden state, clip_skip None, and the projected pooled output); `run_chunks` in
edgediff.model.split chains them in PyTorch the way a runtime does.
"""

from __future__ import annotations

from typing import Any

from edgediff.errors import UnsupportedError
from edgediff.model.split import Chunk, _weight_bytes

STATES = "text_states"  # the running hidden state between chunks


def _text_model(component) -> tuple[Any, bool]:
    """(the CLIP text transformer, whether the component also gives the pooled projection) of a text encoder
    component built by edgediff.model.sdxl (SDXLTextEncoder) or edgediff.model.components."""
    wrapper = component.module
    te = getattr(wrapper, "text_encoder", None)
    if te is None or not hasattr(wrapper, "pooled"):  # SDXLTextEncoder: penultimate state (+ pooled projection)
        raise UnsupportedError(f"{component.name}: only SDXL text encoders (edgediff.model.sdxl) can be split; "
                               "raise [backend.litert] max_chunk_bytes to convert it whole")
    model = getattr(te, "text_model", te)
    needed = ("embeddings", "encoder", "final_layer_norm")
    if not all(hasattr(model, n) for n in needed) or not hasattr(model.encoder, "layers"):
        raise UnsupportedError(f"{component.name}: {type(te).__name__} is not a CLIP text transformer "
                               "(embeddings, encoder.layers, final_layer_norm); it cannot be split")
    return model, bool(getattr(wrapper, "pooled", False))


def _chunk_classes():
    """Defined lazily so importing this module does not import torch."""
    import torch
    from torch import nn

    def causal_mask(states):
        length = states.shape[1]
        full = torch.full((length, length), torch.finfo(states.dtype).min, dtype=states.dtype)
        return torch.triu(full, diagonal=1)[None, None]

    def run_layers(layers, states):
        mask = causal_mask(states)
        for layer in layers:
            out = layer(states, mask)
            states = out[0] if isinstance(out, (tuple, list)) else out
        return states

    class TextChunk(nn.Module):
        """Layers [first, last) of a CLIP text transformer, with the embeddings in front for the first chunk and
        the outputs the component gives at the end for the last."""

        def __init__(self, model, projection, first: int, last: int, final: bool, pooled: bool,
                     input_names: tuple[str, ...], output_names: tuple[str, ...]):
            super().__init__()
            n = len(model.encoder.layers)
            self.embeddings = model.embeddings if first == 0 else None
            self.layers = nn.ModuleList(list(model.encoder.layers)[first:min(last, n - 1) if final else last])
            self.final, self.pooled = final, pooled
            self.last_layer = model.encoder.layers[n - 1] if final and pooled else None
            self.final_layer_norm = model.final_layer_norm if final and pooled else None
            self.projection = projection if final and pooled else None
            self.eos_token_id = int(getattr(model.config, "eos_token_id", 2))
            self.input_names, self.output_names = input_names, output_names

        def forward(self, **inputs):
            if self.embeddings is not None:
                states = self.embeddings(input_ids=inputs["input_ids"])
            else:
                states = inputs[STATES]
            states = run_layers(self.layers, states)
            if not self.final:
                return {STATES: states}
            out = {self.output_names[0]: states}  # hidden_states[-2]: the input of the last layer
            if self.pooled:
                last = self.final_layer_norm(run_layers([self.last_layer], states))
                ids = inputs["input_ids"].to(torch.int32)
                rows = ids.argmax(dim=-1) if self.eos_token_id == 2 else \
                    (ids == self.eos_token_id).to(torch.int32).argmax(dim=-1)
                pooled = last[torch.arange(last.shape[0]), rows]
                out[self.output_names[1]] = self.projection(pooled)
            return out

    return TextChunk


def split_text_encoder(component, max_chunk_bytes: int) -> list[Chunk]:
    """Chunks of whole transformer layers, each holding at most `max_chunk_bytes` of weights where a layer
    allows (the embeddings go with the first chunk, the projection with the last)."""
    model, pooled = _text_model(component)
    TextChunk = _chunk_classes()
    layers = list(model.encoder.layers)
    n = len(layers)
    if n < 2:
        raise UnsupportedError(f"{component.name} has {n} transformer layer(s); nothing to split")
    projection = getattr(component.module.text_encoder, "text_projection", None)
    if pooled and projection is None:
        raise UnsupportedError(f"{component.name}: the pooled output needs text_projection")
    fixed_first = _weight_bytes(model.embeddings)
    fixed_last = (_weight_bytes(model.final_layer_norm) + _weight_bytes(projection)) if pooled else 0
    per_layer = [_weight_bytes(layer) for layer in layers]
    # groups of layer indices: a new chunk starts when the next layer would go over the budget
    bounds, size = [0], fixed_first
    for i, b in enumerate(per_layer):
        if size + b > max_chunk_bytes and i > bounds[-1]:
            bounds.append(i)
            size = 0
        size += b
    if size + fixed_last > max_chunk_bytes and bounds[-1] < n - 1:
        bounds.append(n - 1)
    bounds.append(n)
    names_out = tuple(s.name for s in component.outputs)
    chunks = []
    for first, last in zip(bounds[:-1], bounds[1:]):
        final = last == n
        needs_ids = first == 0 or (final and pooled)
        ins = (("input_ids",) if needs_ids else ()) + ((STATES,) if first > 0 else ())
        outs = names_out if final else (STATES,)
        module = TextChunk(model, projection, first, last, final, pooled, ins, outs).eval()
        stages = tuple(f"layers.{i}" for i in range(first, last))
        chunks.append(Chunk(module, ins, outs, (("embeddings",) if first == 0 else ()) + stages
                            + (("final_layer_norm", "text_projection") if final and pooled else ()),
                            _weight_bytes(module)))
    return chunks
