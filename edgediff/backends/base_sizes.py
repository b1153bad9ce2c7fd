"""Shared by the backends, like base.py: how they hold several image sizes in one artifact
(edgediff/model/sizes.py says which sizes and specs).

LiteRT: one signature per size in one .tflite file (serving_default = the first size, size_WxH the others), from
one litert-torch conversion of the same module, so the weights are stored once (measured: a 3-size file is the
size of a 1-size one plus the graphs). ONNX Runtime exports one graph with dynamic spatial axes and Core ML
enumerates the sizes on its spatial input; both are done where those backends call their exporters.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from edgediff.errors import UnsupportedError
from edgediff.model.sizes import at_size, signature_name, sizes_meta


def litert_size_feeds(component: Any, pieces: list[Any], plan: Any, chain_inputs: Callable
                      ) -> tuple[list[tuple[str, list[dict[str, Any]]]], dict[str, Any]]:
    """(signature name, each piece's torch sample) for every size after the first, and the artifact's meta.sizes."""
    sizes = tuple(getattr(component, "sizes", ()) or ())
    if len(sizes) <= 1:
        return [], {}
    if plan is not None and getattr(plan, "default", "") == "int8_full":
        raise UnsupportedError(f"{component.name}: int8_full calibrates one signature; a bundle with several sizes "
                               "converts at fp32, fp16 or int8 with int8_mode = \"int8_weights\"")
    more = [(signature_name(size, sizes[0]), chain_inputs(pieces, at_size(component, size).example_inputs(0)))
            for size in sizes[1:]]
    return more, litert_sizes_meta(component)


def litert_sizes_meta(component: Any) -> dict[str, Any]:
    """meta.sizes of a LiteRT artifact: the sizes and each one's signature."""
    sizes = tuple(getattr(component, "sizes", ()) or ())
    if len(sizes) <= 1:
        return {}
    return sizes_meta(component, "one signature per size in one file, weights shared",
                      signatures={f"{w}x{h}": signature_name((h, w), sizes[0]) for h, w in sizes})


def litert_edge_model(module: Any, sample: dict[str, Any], more: Sequence[tuple[str, dict[str, Any]]],
                      signature: str, lightweight: bool) -> Any:
    """litert-torch's model of `module`: one signature, or one per size (`more`) in the same converter call."""
    import litert_torch

    if not more:
        return litert_torch.convert(module, sample_kwargs=sample, lightweight_conversion=lightweight)
    converter = litert_torch.signature(signature, module, sample_kwargs=sample)
    for name, other in more:
        converter = converter.signature(name, module, sample_kwargs=other)
    return converter.convert(lightweight_conversion=lightweight)


# ---- Core ML: enumerated shapes on the spatial input ------------------------------------------------------------


def coreml_enumerated(component: Any, chunked: bool, swift: bool) -> tuple[Any, dict[str, list[tuple[int, ...]]]]:
    """(torch.export dynamic_shapes, input name -> its shape at each size) for a component with several sizes;
    (None, {}) for one size. Core ML enumerates the shapes of one input below iOS 18, which is what SD needs (the
    UNet's sample, the VAE's latent or image)."""
    from edgediff.model.sizes import spatial_inputs, torch_dynamic_shapes

    sizes = tuple(getattr(component, "sizes", ()) or ())
    if len(sizes) <= 1:
        return None, {}
    if chunked or swift:
        raise UnsupportedError(f"{component.name}: several sizes in a Core ML bundle need one package per component "
                               "in edgediff's layout (not chunks, not swift_layout); convert once per size for those")
    names = list(spatial_inputs(component))
    if len(names) > 1:
        raise UnsupportedError(f"{component.name}: Core ML enumerates the shapes of one input below iOS 18; "
                               f"{', '.join(names)} all change with the size")
    shapes = {name: [next(s.dims for s in at_size(component, size).inputs if s.name == name) for size in sizes]
              for name in names}
    return torch_dynamic_shapes(component), shapes


def coreml_shape(ct: Any, spec: Any, enumerated: dict[str, list[tuple[int, ...]]]) -> Any:
    """The ct.TensorType shape of one input: its fixed shape, or EnumeratedShapes (default = the first size)."""
    if spec.name not in enumerated:
        return spec.shape
    shapes = enumerated[spec.name]
    return ct.EnumeratedShapes(shapes=[list(s) for s in shapes], default=list(shapes[0]))


def package_enumerated_shapes(path: Any) -> dict[str, list[list[int]]]:
    """Input name -> the enumerated shapes a saved .mlpackage declares (what the structural check reads)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    found = {}
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") != "multiArrayType":
            continue
        array = feature.type.multiArrayType
        if array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            found[feature.name] = [list(s.shape) for s in array.enumeratedShapes.shapes]
    return found
