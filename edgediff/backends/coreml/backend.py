"""Core ML backend: torch.export -> coremltools mlprogram (.mlpackage), with the Neural Engine recipe of Apple's
own Stable Diffusion converter: split-einsum attention, a UNet chunked into weight-balanced pieces, int8 or
palettized weights, and optionally the exact resource layout Apple's Swift pipeline loads.

Per component, `lower`:
1. rebuilds the module's attention in the chosen form (edgediff.backends.coreml.attention; shares weights),
2. wraps it for Apple's Swift I/O when `swift_layout` is on (edgediff.backends.coreml.swift),
3. splits a UNet above `chunk_threshold_mb` into weight-balanced chunks (edgediff.model.split),
4. checks in PyTorch that exactly what coremltools receives reproduces the original component,
5. exports each piece with torch.export, converts it (fp16 compute by default), compresses its weights
   (linear int8 or k-means palettization, minus keep-float layers) and saves it.

Core ML cannot run predictions on Linux: `load` raises BackendUnavailable there and the verify stage records
numeric parity as skipped, with the reason. `structural_check` still inspects every saved program (I/O against
the manifest, compute precision, compressed-weight ops, op counts, sizes) without loading its weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import edgediff.backends.coreml.attention as coreml_attention
import edgediff.backends.coreml.swift as coreml_swift
from edgediff.backends.base import Artifact, Backend, register
from edgediff.backends.base_sizes import coreml_enumerated, coreml_shape, package_enumerated_shapes
from edgediff.backends.coreml.attention import ATTENTION_FORMS
from edgediff.backends.coreml.package_info import (
    _coremltools,
    _quiet_coremltools,
    _same_specs,
    _specs_text,
    _weight_base,
    inspect_package,
    read_package_io,
)
from edgediff.backends.coreml.pieces import (
    _ContextToSequence,
    _drop_aliases,
    _first_line,
    _HeadCounter,
    _keep_float_map,
    _package_feed,
    _package_specs,
    _Piece,
    _RenameOutputs,
    _torch_feed,
)
from edgediff.contract import TensorSpec
from edgediff.errors import ParityError, RecipeError, UnsupportedError
from edgediff.model.components import Component
from edgediff.model.sizes import sizes_meta
from edgediff.model.split import run_chunks, split_unet
from edgediff.runtime.sessions import SessionOptions
from edgediff.verify import compare

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
PALETTE_BITS = (1, 2, 3, 4, 6, 8)
PALETTE_BITS_BEFORE_IOS18 = (1, 2, 4, 6, 8)  # iOS16/17 constexpr_lut_to_dense LUT sizes
COMPRESSED_WEIGHT_OPS = {
    "palettize": ("constexpr_lut_to_dense",),
    "int8": ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
}
TORCH_CHECK_MIN_PSNR_DB = 60.0  # the rewrite/chunking is exact math; fp32 reordering stays far above this
MIN_FP16_OP_FRACTION = 0.9
NOT_ON_MACOS = "Core ML predictions need macOS (coremltools can convert but not run models on Linux)"


@dataclass
class CoreMLOptions:
    """`[backend.options]` for target = "coreml"."""

    minimum_deployment_target: str = "iOS16"  # any coremltools target: iOS16/17/18, macOS13/14/15, ...
    compute_units: str = "CPU_AND_NE"  # ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE (recorded, used by `load`)
    attention: str = "split_einsum"  # "original", "split_einsum" (Neural Engine), "split_einsum_v2"
    query_chunk: int = 512  # split_einsum_v2: queries per chunk
    chunk_unet: int = 0  # 0 = auto (2 chunks above chunk_threshold_mb), 1 = never, N = N chunks
    chunk_threshold_mb: float = 1024.0  # UNet weights at compute precision (what iOS 16 materialises at load)
    palettize_bits: int = 0  # 0 = off; 1/2/3/4/6/8-bit look-up tables (k-means by default)
    palettize_mode: str = "kmeans"  # "kmeans" or "uniform"
    palettize_granularity: str = "per_tensor"  # or "per_grouped_channel" (iOS18+)
    palettize_group_size: int = 16
    int8_granularity: str = "per_channel"  # precision = "int8": linear symmetric int8 weights
    weight_threshold: int = 2048  # weights with more elements are compressed; smaller ones (biases, norms) stay float
    keep_float: list[str] = field(default_factory=list)  # module globs never compressed, "component:glob" ok
    kmeans_workers: int = 1
    swift_layout: bool = False  # name and shape everything as apple/ml-stable-diffusion's Swift pipeline loads
    compile_swift: bool = True  # on a Mac with Xcode, compile Resources/*.mlmodelc in finalize_bundle
    check_torch: bool = True  # verify the rewritten/chunked PyTorch modules against the original first


@register
class CoreMLBackend(Backend):
    name = "coreml"
    Options = CoreMLOptions
    supported_precisions = ("fp32", "fp16", "int8")
    int8_activations = False  # coremltools.optimize compresses weights; ops compute in fp16
    default_precision = "fp16"  # Core ML's native compute precision (fp32 on request)

    def check_available(self) -> None:
        _coremltools()

    def version(self) -> str:
        return _coremltools().__version__

    def can_run_here(self) -> tuple[bool, str]:
        if platform.system() != "Darwin":
            return False, NOT_ON_MACOS
        return True, ""

    # ---- lower -------------------------------------------------------------------------------------------------

    def lower(self, component: Component, options: CoreMLOptions, precision: str, out_dir: Path,
              plan: Any = None) -> Artifact:
        """`plan`: an int8 plan (anything with `keep_float`, e.g. the litert QuantPlan the int8 slim step builds);
        its patterns must each match a layer of this component. Recipe-wide `options.keep_float` patterns that
        match nothing here are recorded, not errors (they may name another component's layers)."""

        target = self._validate(options, precision)
        out_dir = Path(out_dir)
        module, rewrite = coreml_attention.rewrite_attention(component.module, options.attention,
                                                             options.query_chunk)
        work = dataclasses.replace(component, module=module)
        swift = None
        if options.swift_layout:
            swift = coreml_swift.swift_component(work, context_channels_first=rewrite.form != "original")
        parts = self._chunk_count(component, options, precision)
        example = component.example_inputs(0)
        feed = swift.to_swift(example) if swift else _package_feed(example, component.inputs)
        heads = _HeadCounter(module)
        if parts > 1:
            with heads:
                pieces, candidate = self._chunk_pieces(component, work, swift, rewrite.form, parts, feed, options)
        else:
            stem = coreml_swift.package_stem(component.name) if swift else component.name
            inputs = swift.inputs if swift else _package_specs(component.inputs)
            outputs = swift.outputs if swift else component.outputs
            piece_module = swift.module if swift else module
            pieces = [_Piece(stem, piece_module, inputs, outputs, _torch_feed(feed, inputs))]
            candidate = None
        pieces[0].dynamic, pieces[0].enumerated = coreml_enumerated(component, parts > 1, swift is not None)
        meta: dict[str, Any] = {
            "format": "mlprogram",
            "compute_units": options.compute_units,
            "minimum_deployment_target": options.minimum_deployment_target,
            "compute_precision": "fp32" if precision == "fp32" else "fp16",
            "attention": rewrite.to_dict(),
            "compression": self._compression_meta(options, precision),
            **sizes_meta(component, "enumerated shapes on the spatial input", inputs=pieces[0].enumerated),
        }
        if swift:
            meta["swift_layout"] = {"contract_inputs": {p.name: c.name for p, c in zip(swift.inputs, component.inputs)},
                                    "contract_outputs": {p.name: c.name for p, c in zip(swift.outputs, component.outputs)},
                                    "context_channels_first": component.name == "unet",
                                    "moments_channels": (component.outputs[0].shape[1]
                                                         if component.name == "vae_encoder" else 0)}
        if options.check_torch:
            with heads if candidate is None else contextlib.nullcontext():
                meta["torch_check"] = self._torch_check(component, pieces, swift, example, candidate)
        if rewrite.form != "original" and heads.calls:
            # one softmax per head per query chunk of every attention call traced in PyTorch
            meta["attention"]["softmax_expected"] = heads.softmax
        strict = list(getattr(plan, "keep_float", ()) or ()) + list(getattr(component, "keep_float", ()) or ())
        kept, unmatched = _keep_float_map(component, pieces, list(options.keep_float), strict)
        if unmatched:
            meta["compression"]["keep_float_unmatched"] = unmatched
        artifacts = []
        for piece in pieces:
            path = out_dir / f"{piece.stem}.mlpackage"
            self._convert(piece, target, precision, options, kept.get(piece.stem, set()), path, component.name)
            artifacts.append(Artifact(component.name, path, piece.inputs, piece.outputs,
                                      meta={"keep_float_weights": sorted(kept.get(piece.stem, set()))}))
            piece.module = None  # drop the reference early; the converter's copies are gone too
            gc.collect()
        meta["keep_float_weights"] = sorted(set().union(*kept.values())) if kept else []
        if len(artifacts) == 1:
            only = artifacts[0]
            return Artifact(component.name, only.path, only.inputs, only.outputs, meta=meta)
        chain = [{"file": a.path.name, "inputs": [s.name for s in a.inputs], "outputs": [s.name for s in a.outputs],
                  "stages": list(p.stages), "weight_bytes": p.weight_bytes} for a, p in zip(artifacts, pieces)]
        meta["chain"] = {"rule": "feed each chunk the component inputs plus every earlier chunk output it names",
                         "balanced_by": "weight bytes, cut between resnet/attention layers", "chunks": chain}
        index = out_dir / f"{component.name}_chunks.json"
        index.write_text(json.dumps(meta["chain"], indent=2) + "\n")
        first_inputs = {s.name: s for a in artifacts for s in a.inputs}
        package_inputs = tuple(first_inputs[s.name] for s in (swift.inputs if swift else _package_specs(component.inputs))
                               if s.name in first_inputs)
        return Artifact(component.name, index, package_inputs, artifacts[-1].outputs, chunks=artifacts, meta=meta)

    def _validate(self, options: CoreMLOptions, precision: str):
        ct = _coremltools()
        target = getattr(ct.target, options.minimum_deployment_target, None)
        if target is None:
            valid = ", ".join(t.name for t in ct.target)
            raise RecipeError(f"unknown minimum_deployment_target '{options.minimum_deployment_target}' "
                              f"(coremltools {ct.__version__} knows: {valid})")
        if target.value < ct.target.iOS16.value:
            raise RecipeError("minimum_deployment_target must be iOS16/macOS13 or later (fp16 mlprograms, "
                              "compressed weights and Apple's Swift pipeline need it)")
        if options.compute_units not in COMPUTE_UNITS:
            raise RecipeError(f"unknown compute_units '{options.compute_units}' (valid: {', '.join(COMPUTE_UNITS)})")
        if options.attention not in ATTENTION_FORMS:
            raise RecipeError(f"unknown attention '{options.attention}' (valid: {', '.join(ATTENTION_FORMS)})")
        bits = options.palettize_bits
        if bits:
            allowed = PALETTE_BITS if target.value >= ct.target.iOS18.value else PALETTE_BITS_BEFORE_IOS18
            if bits not in allowed:
                raise RecipeError(f"palettize_bits {bits} is not available for {options.minimum_deployment_target} "
                                  f"(valid: {', '.join(map(str, allowed))}; 3-bit needs iOS18)")
            if precision == "int8":
                raise RecipeError("palettize_bits and precision int8 both compress weights: pick one "
                                  "(palettization runs on fp16 or fp32 programs)")
            if options.palettize_mode not in ("kmeans", "uniform"):
                raise RecipeError(f"palettize_mode must be kmeans or uniform, got '{options.palettize_mode}'")
            if options.palettize_granularity not in ("per_tensor", "per_grouped_channel"):
                raise RecipeError("palettize_granularity must be per_tensor or per_grouped_channel")
            if options.palettize_granularity != "per_tensor" and target.value < ct.target.iOS18.value:
                raise RecipeError("per_grouped_channel palettization needs minimum_deployment_target iOS18/macOS15")
        if precision == "int8" and options.int8_granularity not in ("per_tensor", "per_channel", "per_block"):
            raise RecipeError("int8_granularity must be per_tensor, per_channel or per_block")
        if precision == "int8" and options.int8_granularity == "per_block" and target.value < ct.target.iOS18.value:
            raise RecipeError("per_block int8 needs minimum_deployment_target iOS18/macOS15")
        if options.chunk_unet < 0:
            raise RecipeError("chunk_unet must be 0 (auto), 1 (never) or the number of chunks")
        return target

    def _chunk_count(self, component: Component, options: CoreMLOptions, precision: str) -> int:
        if component.name != "unet":
            return 1
        if options.chunk_unet:
            parts = options.chunk_unet
        else:
            params = sum(p.numel() for p in component.module.parameters())
            dense_mb = params * (4 if precision == "fp32" else 2) / 2**20
            parts = 2 if dense_mb > options.chunk_threshold_mb else 1
        if options.swift_layout and parts not in (1, 2):
            raise RecipeError(f"Apple's Swift pipeline loads a UNet whole or in 2 chunks, not {parts}: "
                              "set chunk_unet = 1 or 2, or turn swift_layout off")
        return parts

    def _chunk_pieces(self, component, work, swift, form, parts, feed, options):
        """Split the (rewritten) UNet into weight-balanced chunks and record each chunk's real I/O shapes."""
        import torch


        unet = getattr(work.module, "unet", None)
        if unet is None:
            raise UnsupportedError("chunking needs a diffusers UNet2DConditionModel component")
        chunks = split_unet(unet, parts, granularity="layer")  # resnet/attention cut points: ~50/50 for SD
        if swift and form == "original":  # Swift feeds [B, D, 1, S]; the original attention wants [B, S, D]
            for chunk in chunks:
                chunk.module = _ContextToSequence.wrap(chunk.module)
        feeds, outs = [], []

        def run(index, chunk, chunk_feed):
            result = chunk.module(**chunk_feed)
            feeds.append(chunk_feed)
            outs.append(result)
            return result

        with torch.no_grad():
            final = run_chunks(chunks, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}, run)
        pieces = []
        package_specs = {s.name: s for s in (swift.inputs if swift else _package_specs(component.inputs))}
        for i, chunk in enumerate(chunks):
            stem = (coreml_swift.package_stem("unet", i, parts) if swift else f"{component.name}_chunk{i + 1}")
            inputs = tuple(package_specs.get(n) or TensorSpec(n, tuple(feeds[i][n].shape), "float32")
                           for n in chunk.input_names)
            outputs = tuple(TensorSpec(n, tuple(outs[i][n].shape), "float32") for n in chunk.output_names)
            if i == len(chunks) - 1:
                final_names = swift.outputs if swift else component.outputs
                outputs = tuple(TensorSpec(s.name, tuple(outs[i][n].shape), "float32")
                                for s, n in zip(final_names, chunk.output_names))
                chunk.module = _RenameOutputs.wrap(chunk.module, dict(zip(chunk.output_names,
                                                                          [s.name for s in outputs])))
            pieces.append(_Piece(stem, chunk.module, inputs, outputs, feeds[i], keyword=True, stages=chunk.stages,
                                 weight_bytes=chunk.weight_bytes))
        name = chunks[-1].output_names[0]
        return pieces, final[name].detach().float().numpy()

    def _torch_check(self, component, pieces, swift, example, candidate) -> dict[str, Any]:
        """What coremltools receives must equal the original component: attention rewrite, chunk chaining and
        Swift wrappers are all checked here, in PyTorch, on the same seeded inputs."""
        import torch


        reference = component.run_torch(example)
        if candidate is None:  # a single piece: run it
            piece = pieces[0]
            with torch.no_grad():
                out = piece.module(**piece.example) if piece.keyword else piece.module(
                    *[piece.example[s.name] for s in piece.inputs])
            out = out if isinstance(out, (tuple, list)) else (out,)
            got = {s.name: o.detach().float().numpy() for s, o in zip(piece.outputs, out)}
            got = swift.from_swift(got) if swift else got
        else:
            got = {component.outputs[0].name: candidate}
        metrics = {}
        for spec in component.outputs:
            m = compare(reference[spec.name], got[spec.name]).to_dict()
            if not np.isfinite(m["psnr_db"]):  # identical outputs: keep the manifest valid JSON (no Infinity)
                m["psnr_db"], m["identical"] = None, True
            metrics[spec.name] = m
        psnrs = [v["psnr_db"] for v in metrics.values() if v["psnr_db"] is not None]
        worst = min(psnrs) if psnrs else None
        return {"what": "modules handed to coremltools (attention form, chunks, Swift I/O) vs the original "
                        "PyTorch component, fp32, seed 0",
                "min_psnr_db": TORCH_CHECK_MIN_PSNR_DB, "psnr_db": worst, "outputs": metrics,
                "status": "passed" if worst is None or worst >= TORCH_CHECK_MIN_PSNR_DB else "failed"}

    def _compression_meta(self, options: CoreMLOptions, precision: str) -> dict[str, Any]:
        if options.palettize_bits:
            return {"kind": "palettize", "nbits": options.palettize_bits, "mode": options.palettize_mode,
                    "granularity": options.palettize_granularity, "weight_threshold": options.weight_threshold}
        if precision == "int8":
            return {"kind": "int8", "mode": "linear_symmetric", "granularity": options.int8_granularity,
                    "weight_threshold": options.weight_threshold}
        return {"kind": "none"}

    def _convert(self, piece: _Piece, target, precision: str, options: CoreMLOptions, keep: set[str],
                 path: Path, component_name: str) -> None:
        import torch

        ct = _coremltools()
        try:
            with torch.no_grad():
                if piece.keyword:
                    program = torch.export.export(piece.module, (), kwargs=piece.example, strict=False)
                else:
                    program = torch.export.export(piece.module, tuple(piece.example[s.name] for s in piece.inputs),
                                                  strict=False, dynamic_shapes=piece.dynamic)
                program = program.run_decompositions({})
                _drop_aliases(program)
        except Exception as exc:
            raise UnsupportedError(f"torch.export failed on {piece.stem} ({_first_line(exc)}); "
                                   "try attention = \"original\" or run with --debug") from exc
        try:
            with _quiet_coremltools():
                mlmodel = ct.convert(
                    program,
                    inputs=[ct.TensorType(name=s.name, shape=coreml_shape(ct, s, piece.enumerated),
                                          dtype=np.dtype(s.dtype).type) for s in piece.inputs],
                    # explicit float32: with fp16 compute coremltools would otherwise emit fp16 outputs
                    outputs=[ct.TensorType(name=s.name, dtype=np.float32) for s in piece.outputs],
                    convert_to="mlprogram",
                    minimum_deployment_target=target,
                    compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
                    compute_units=ct.ComputeUnit[options.compute_units],
                    skip_model_load=True,
                )
        except Exception as exc:
            raise UnsupportedError(f"coremltools could not convert {piece.stem} ({_first_line(exc)}); "
                                   "run with --debug for the converter's trace") from exc
        del program
        gc.collect()
        mlmodel = self._compress(mlmodel, options, precision, keep)
        mlmodel.short_description = f"edgediff {component_name} ({piece.stem})"
        mlmodel.user_defined_metadata.update({
            "edgediff.component": component_name, "edgediff.package": piece.stem,
            "edgediff.precision": precision, "edgediff.attention": options.attention,
            "edgediff.compute_units": options.compute_units,
        })
        mlmodel.save(str(path))

    def _compress(self, mlmodel, options: CoreMLOptions, precision: str, keep: set[str]):
        if not options.palettize_bits and precision != "int8":
            return mlmodel
        from coremltools.optimize import coreml as cto

        if options.palettize_bits:
            kwargs = dict(mode=options.palettize_mode, nbits=options.palettize_bits,
                          granularity=options.palettize_granularity, weight_threshold=options.weight_threshold,
                          num_kmeans_workers=options.kmeans_workers)
            if options.palettize_granularity == "per_grouped_channel":
                kwargs["group_size"] = options.palettize_group_size
            op_config = cto.OpPalettizerConfig(**kwargs)
            apply = cto.palettize_weights
        else:
            op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                    granularity=options.int8_granularity,
                                                    weight_threshold=options.weight_threshold)
            apply = cto.linear_quantize_weights
        config = cto.OptimizationConfig(global_config=op_config, op_name_configs={name: None for name in keep})
        with _quiet_coremltools():
            return apply(mlmodel, config)

    # ---- run (macOS, through edgediff.runtime.sessions) ----------------------------------------------------

    def session_options(self, options: CoreMLOptions) -> SessionOptions:
        return SessionOptions(coreml_compute_units=options.compute_units)

    # ---- checks ------------------------------------------------------------------------------------------------

    def structural_check(self, artifact: Artifact, options: CoreMLOptions, precision: str,
                         raise_on_failure: bool = True) -> dict[str, Any]:
        """Inspect every saved program without loading weights: I/O vs the manifest, deployment target, compute
        precision, compressed-weight ops and size ratio, keep-float layers, attention form, op counts, sizes,
        plus the PyTorch check recorded at lowering. Raises ParityError listing failed checks."""
        ct = _coremltools()
        target = getattr(ct.target, artifact.meta.get("minimum_deployment_target", options.minimum_deployment_target))
        compression = artifact.meta.get("compression") or self._compression_meta(options, precision)
        checks: list[dict[str, Any]] = []
        packages = {}

        def check(name: str, passed: bool, details: str) -> None:
            checks.append({"name": name, "passed": bool(passed), "details": details})

        parts = artifact.chunks or [artifact]
        softmax_total = 0
        float_consts: set[str] = set()
        for part in parts:
            info = inspect_package(part.path)
            packages[part.path.name] = info.summary()
            label = part.path.name
            check(f"{label}: mlprogram", info.kind == "mlProgram", f"model type {info.kind}")
            check(f"{label}: deployment target", info.spec_version == target.value,
                  f"specification version {info.spec_version}, {target.name} is {target.value}")
            check(f"{label}: inputs match manifest", _same_specs(info.inputs, part.inputs),
                  f"package {_specs_text(info.inputs)}; manifest {_specs_text(part.inputs)}")
            flexible = bool((artifact.meta.get("sizes") or {}).get("inputs"))  # enumerated sizes: outputs unshaped
            check(f"{label}: outputs match manifest", _same_specs(info.outputs, part.outputs) or flexible and [
                (s.name, s.dtype, s.shape) for s in info.outputs] == [(s.name, s.dtype, ()) for s in part.outputs],
                  f"package {_specs_text(info.outputs)}; manifest {_specs_text(part.outputs)}"
                  + (" (shape follows the enumerated input size)" if flexible else ""))
            float_ops = info.float_ops["fp16"] + info.float_ops["fp32"]
            if precision == "fp32":
                check(f"{label}: compute precision fp32", info.float_ops["fp16"] == 0,
                      f"{info.float_ops['fp16']} fp16 ops of {float_ops} float ops")
            else:
                fraction = info.float_ops["fp16"] / max(float_ops, 1)
                check(f"{label}: compute precision fp16", fraction >= MIN_FP16_OP_FRACTION,
                      f"{fraction:.1%} of {float_ops} float ops compute in fp16 (want >= {MIN_FP16_OP_FRACTION:.0%})")
            kind = compression.get("kind", "none")
            if kind == "none":
                check(f"{label}: weights uncompressed", info.compressed_elements == 0,
                      f"{info.compressed_elements} weight elements behind constexpr ops")
            else:
                wanted = COMPRESSED_WEIGHT_OPS[kind]
                present = {op: info.op_counts.get(op, 0) for op in wanted}
                coverage = info.compressed_elements / max(info.weight_elements, 1)
                # every float weight of rank >= 2 over the size threshold and not kept float must be compressed
                # (coremltools.optimize never compresses rank-1 consts: a CLIP fc1 bias has 3072 elements)
                threshold = compression.get("weight_threshold", options.weight_threshold)
                keep_bases = {_weight_base(k) for k in artifact.meta.get("keep_float_weights") or []}
                left = {n: e for n, e in info.float_const_elements.items()
                        if e > threshold and n not in info.vector_const_names and _weight_base(n) not in keep_bases}
                check(f"{label}: weights compressed ({kind})", sum(present.values()) > 0 and not left,
                      f"{present}; {coverage:.1%} of {info.weight_elements:,} weight elements compressed; "
                      + (f"{len(left)} eligible float weights left: {', '.join(sorted(left)[:4])}" if left else
                         f"every weight over {threshold} elements outside keep_float is compressed"))
                bits = compression.get("nbits", 8)
                expected = (info.compressed_elements * bits / 8 + (info.weight_elements - info.compressed_elements) * 2)
                ratio = info.weight_file_bytes / max(info.weight_elements * 2, 1)
                check(f"{label}: size vs fp16", info.weight_file_bytes <= expected * 1.1 + 65536,
                      f"weights {info.weight_file_bytes:,} B = {ratio:.3f} x fp16 ({info.weight_elements * 2:,} B); "
                      f"expected about {expected / max(info.weight_elements * 2, 1):.3f} x for {bits}-bit")
            float_consts |= info.float_const_names
            check(f"{label}: op counts", info.op_total > 0,
                  ", ".join(f"{k} {v}" for k, v in info.op_counts.most_common(8)))
            check(f"{label}: file size", info.package_bytes > 0,
                  f"package {info.package_bytes:,} B, weights {info.weight_file_bytes:,} B")
            softmax_total += info.op_counts.get("softmax", 0)
        wanted = ((artifact.meta.get("sizes") or {}).get("inputs") or {})
        if wanted:  # several sizes: the spatial input enumerates each size's shape (backends/sizes.py)
            found = package_enumerated_shapes(artifact.path)
            check("enumerated shapes = the bundle's sizes", found == {k: [list(s) for s in v] for k, v in wanted.items()},
                  f"package {found}; sizes {wanted}")
        keep = artifact.meta.get("keep_float_weights") or []
        if keep:  # each weight appears as "p_x" (fp32 program) or "p_x_to_fp16" (fp16 program)
            bases = sorted({_weight_base(k) for k in keep})
            missing = [b for b in bases if b not in float_consts and b + "_to_fp16" not in float_consts]
            check("keep-float layers stay float", not missing,
                  f"{len(bases) - len(missing)}/{len(bases)} keep-float weights are plain float consts"
                  + (f"; compressed or renamed by a fusion: {', '.join(missing[:5])}" if missing else ""))
        attention = artifact.meta.get("attention") or {}
        expected_softmax = attention.get("softmax_expected")
        if attention.get("form", "original") != "original" and expected_softmax is not None \
                and not attention.get("kept_original"):
            check("attention: split-einsum heads", softmax_total == expected_softmax
                  and sum(packages[p.path.name]["op_counts"].get("scaled_dot_product_attention", 0) for p in parts) == 0,
                  f"{softmax_total} softmax ops in the programs, {expected_softmax} heads x query chunks "
                  "traced in PyTorch")
        torch_check = artifact.meta.get("torch_check")
        if torch_check:
            check("pytorch: converted modules = original", torch_check.get("status") == "passed",
                  "identical outputs" if torch_check.get("psnr_db") is None else
                  f"PSNR {torch_check['psnr_db']} dB (min {torch_check.get('min_psnr_db')})")
        failed = [c for c in checks if not c["passed"]]
        result = {"status": "failed" if failed else "passed", "passed": not failed, "checks": checks,
                  "packages": packages}
        if failed and raise_on_failure:
            error = ParityError([f"{artifact.component}: {c['name']}: {c['details']}" for c in failed])
            error.structural = result
            error.keep_output = True
            raise error
        return result

    # ---- bundle hook -------------------------------------------------------------------------------------------

    def finalize_bundle(self, bundle_dir: Path, artifacts: Mapping[str, Artifact], tokenizer_dir: Path | None,
                        options: CoreMLOptions, log=print) -> dict[str, Any] | None:
        """With swift_layout on: write Resources/ (vocab, merges, compiled models on a Mac), the compile script
        and check the layout against Apple's Swift conventions. Returns the manifest's `swift` section."""
        if not options.swift_layout:
            return None

        packages = {name: [bundle_dir / p.path.name for p in (a.chunks or [a])] for name, a in artifacts.items()}
        section = coreml_swift.finalize(bundle_dir, packages, tokenizer_dir,
                                        options.compile_swift, log)
        checks = coreml_swift.check_layout(bundle_dir, read_package_io)
        section["checks"] = checks
        section["status"] = "passed" if all(c["passed"] for c in checks) else "failed"
        (bundle_dir / coreml_swift.LAYOUT_NOTE).write_text(json.dumps(section, indent=2) + "\n")
        return section
