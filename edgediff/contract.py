"""The contract between stages and with the apps: precision, tensor specs, artifacts, the int8 plan, the manifest.

Torch-free (numpy is not even needed): the converter writes these types, and the runtime, `verify`, `profile`,
the Jetson runner and the iOS / Android cores read them. `manifest.json` is strict JSON (no NaN / Infinity) and
follows the JSON Schema in `bundle.schema.json` beside this file; `Manifest.read` accepts the previous format too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from edgediff import __version__
from edgediff.errors import ModelLoadError, RecipeError, UnsupportedError

# the JSON helpers are re-exported: manifests, reports and apps' golden files all go through the contract
from edgediff.jsonio import (  # noqa: F401
    read_strict_json,
    reject_constant,
    restore_nonfinite,
    strict_json_value,
    write_json,
)

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BackendName = Literal["onnxruntime", "litert", "coreml"]
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)
TENSOR_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")  # the schema's enum

BUNDLE_FORMAT = "edgediff-bundle/2"
READABLE_FORMATS = ("edgediff-bundle/1", BUNDLE_FORMAT)
MANIFEST_FILE = "manifest.json"
SCHEMA_FILE = Path(__file__).with_name("bundle.schema.json")


def check_precision(value: str, where: str = "precision") -> Precision:
    """A precision string from a user or a file, checked once at the door."""
    if value not in PRECISIONS:
        raise RecipeError(f"unknown {where} '{value}' (valid: {', '.join(PRECISIONS)})")
    return value  # type: ignore[return-value]


# ---- tensors and artifacts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output. A shape entry is an int, or a name for a dynamic axis."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"  # numpy dtype name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Any, where: str = "tensor") -> "TensorSpec":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ModelLoadError(f"{where}: expected an object with a string 'name', got {_short(data)}")
        shape = data.get("shape", [])
        if not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or isinstance(d, str) for d in shape):
            raise ModelLoadError(f"{where} '{data['name']}': shape must be a list of sizes >= 0 or axis names, "
                                 f"got {_short(shape)}")
        dtype = data.get("dtype", "float32")
        if dtype not in TENSOR_DTYPES:
            raise ModelLoadError(f"{where} '{data['name']}': dtype {_short(dtype)} is not one of {TENSOR_DTYPES}")
        return cls(data["name"], tuple(shape), dtype)

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape as sizes (components built for conversion have no dynamic axes)."""
        if not all(isinstance(d, int) for d in self.shape):
            raise UnsupportedError(f"tensor '{self.name}' has dynamic axes {self.shape}; give it fixed sizes")
        return tuple(int(d) for d in self.shape)

    def fixed_dim(self, axis: int) -> int | None:
        """The size of `axis` if the model fixes it, else None."""
        dim = self.shape[axis] if axis < len(self.shape) else None
        return dim if isinstance(dim, int) and dim > 0 else None


@dataclass
class Artifact:
    """One lowered component: a model file (or .mlpackage folder) and its I/O, or several chunk files chained by
    tensor names (outputs of chunk i feed the same-named inputs of later chunks, next to the original inputs).

    `path` is absolute while a bundle is being written and after `Manifest.read` (checked to stay inside the
    bundle); the manifest stores names relative to the bundle folder. `extra_files`: side files (ONNX weights)."""

    component: str
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    chunks: list["Artifact"] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)
    sha256: str | None = None
    bytes: int | None = None
    verify: dict[str, Any] = field(default_factory=dict)  # this component's parity record, once verified
    # side files' (sha256, bytes), hashed once like `sha256`: the manifest is rewritten after every stage
    extra_digests: dict[Path, tuple[str, int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def parts(self) -> list["Artifact"]:
        """The files that run in order: the chunks, or the artifact itself."""
        return self.chunks or [self]

    def files(self) -> list[Path]:
        """Every file the artifact consists of (model files, chunks, side files)."""
        return [f for part in self.parts for f in [part.path, *part.extra_files]]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def to_entry(self, bundle_dir: Path) -> dict[str, Any]:
        """The manifest entry: file names relative to the bundle, sizes, checksums, I/O, chunks, meta, verify."""

        def file_entry(a: Artifact) -> dict[str, Any]:
            if a.sha256 is None:  # hashed once: a full-size UNet is gigabytes
                a.sha256, a.bytes = tree_sha256(a.path), path_bytes(a.path)
            entry: dict[str, Any] = {"file": _relative(a.path, bundle_dir), "sha256": a.sha256, "bytes": a.bytes,
                                     "inputs": [s.to_dict() for s in a.inputs],
                                     "outputs": [s.to_dict() for s in a.outputs]}
            if a.extra_files:
                a.extra_digests.update({f: (sha256_file(f), path_bytes(f)) for f in a.extra_files
                                        if f not in a.extra_digests})
                entry["extra_files"] = [{"file": _relative(f, bundle_dir), "sha256": a.extra_digests[f][0],
                                         "bytes": a.extra_digests[f][1]} for f in a.extra_files]
                entry["bytes"] += sum(e["bytes"] for e in entry["extra_files"])
            return entry

        entry = file_entry(self)
        if self.chunks:
            entry["chunks"] = [file_entry(c) for c in self.chunks]
            entry["bytes"] = sum(c["bytes"] for c in entry["chunks"])
        if self.meta:
            entry["meta"] = self.meta
        if self.verify:
            entry["verify"] = self.verify
        return entry

    @classmethod
    def from_entry(cls, root: Path, name: str, entry: Any, check: bool = True) -> "Artifact":
        """An artifact of a bundle read from disk; every path must stay inside `root` and (with `check`) match its
        recorded size and sha256."""
        where = f"components.{name}"
        if not isinstance(entry, dict):
            raise ModelLoadError(f"{where}: expected an object, got {_short(entry)}")

        def one(e: Any, at: str) -> Artifact:
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise ModelLoadError(f"{at}: expected an object with a string 'file', got {_short(e)}")
            extras = e.get("extra_files", [])
            if not isinstance(extras, list):
                raise ModelLoadError(f"{at}.extra_files: expected a list")
            extra_paths = [_checked_file(root, x, f"{at}.extra_files", check) for x in extras]
            # With side files, `bytes` counts them too, so only the checksum speaks for the main file.
            path = _checked_file(root, e, at, check, size_checked=not extras)
            inputs = tuple(TensorSpec.from_dict(t, f"{at}.inputs") for t in _list(e, "inputs", at))
            outputs = tuple(TensorSpec.from_dict(t, f"{at}.outputs") for t in _list(e, "outputs", at))
            return cls(name, path, inputs, outputs, extra_files=extra_paths, sha256=e.get("sha256"),
                       bytes=e.get("bytes"))

        if "chunks" in entry and entry["chunks"]:
            chunks = [one(c, f"{where}.chunks[{i}]") for i, c in enumerate(_list(entry, "chunks", where))]
            first = chunks[0]
            inputs = tuple(TensorSpec.from_dict(t, f"{where}.inputs") for t in _list(entry, "inputs", where)) \
                or first.inputs
            outputs = tuple(TensorSpec.from_dict(t, f"{where}.outputs") for t in _list(entry, "outputs", where)) \
                or chunks[-1].outputs
            artifact = cls(name, first.path, inputs, outputs, chunks=chunks, sha256=entry.get("sha256"),
                           bytes=entry.get("bytes"))
        else:
            artifact = one(entry, where)
        meta, verify = entry.get("meta", {}), entry.get("verify", {})
        if not isinstance(meta, dict) or not isinstance(verify, dict):
            raise ModelLoadError(f"{where}: 'meta' and 'verify' must be objects")
        artifact.meta, artifact.verify = dict(meta), dict(verify)
        return artifact


# ---- the int8 plan: from the quantize step to every backend --------------------------------------------------

PLAN_MODES = ("int8", "int8_weights", "float")


@dataclass
class LayerPlan:
    """One unit's decision and what it was based on."""

    name: str  # module path in the component module
    kind: str  # module class
    mode: str  # int8 (weights and activations) | int8_weights | float
    sensitivity_psnr_db: float  # component output PSNR with only this unit (its group) at int8
    weight_params: int = 0
    group: str = ""  # the group it was decided with (= name at per-layer granularity)

    @property
    def weights(self) -> str | None:
        if not self.weight_params:
            return None
        return "float" if self.mode == "float" else "int8"

    @property
    def activations(self) -> str:
        return "int8" if self.mode == "int8" else "float"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "weights": self.weights,
                "activations": self.activations, "sensitivity_psnr_db": _round(self.sensitivity_psnr_db),
                "weight_params": self.weight_params, "group": self.group}


@dataclass
class PrecisionPlan:
    """A backend-neutral int8 plan for one component."""

    component: str
    target_psnr_db: float
    layers: list[LayerPlan]
    psnr_db: float  # simulated, this plan
    all_int8_psnr_db: float  # simulated, every unit int8, same calibration
    naive_psnr_db: float  # simulated, every unit int8, calibrated at one timestep
    realised: str = "plan"  # "plan", "plan (weights only)" or "naive" (what the backends were given)
    calibration: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 0
    outputs: dict[str, str] = field(default_factory=dict)  # component output -> the layer that computes it
    search: dict[str, Any] = field(default_factory=dict)  # how it was found (slim/plan_search.py): blocks, refined

    def modes(self) -> dict[str, str]:
        return {layer.name: layer.mode for layer in self.layers}

    def names(self, mode: str) -> list[str]:
        return [layer.name for layer in self.layers if layer.mode == mode]

    def float_weight_layers(self) -> list[str]:
        """Layers whose weights must stay float (what weight-only backends like Core ML can realise)."""
        return [layer.name for layer in self.layers if layer.mode == "float" and layer.weight_params]

    def counts(self) -> dict[str, int]:
        return {mode: sum(layer.mode == mode for layer in self.layers) for mode in PLAN_MODES}

    def summary(self) -> dict[str, Any]:
        params = sum(layer.weight_params for layer in self.layers) or 1
        float_params = sum(layer.weight_params for layer in self.layers if layer.mode == "float")
        return {"realised": self.realised, "target_psnr_db": self.target_psnr_db, "psnr_db": _round(self.psnr_db),
                "all_int8_psnr_db": _round(self.all_int8_psnr_db), "naive_psnr_db": _round(self.naive_psnr_db),
                "layers": len(self.layers), "counts": self.counts(),
                "float_weight_fraction": round(float_params / params, 4)}

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, **self.summary(), "calibration": self.calibration,
                "settings": self.settings, "evaluations": self.evaluations, "outputs": self.outputs,
                "search": self.search,
                "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrecisionPlan":
        layers = [LayerPlan(d["name"], d["kind"], d["mode"], _unround(d["sensitivity_psnr_db"]),
                            d.get("weight_params", 0), d.get("group", "")) for d in data["layers"]]
        for layer in layers:
            if layer.mode not in PLAN_MODES:
                raise RecipeError(f"precision plan: layer {layer.name} has unknown mode '{layer.mode}'")
        return cls(data["component"], float(data["target_psnr_db"]), layers, _unround(data["psnr_db"]),
                   _unround(data["all_int8_psnr_db"]), _unround(data["naive_psnr_db"]), data.get("realised", "plan"),
                   data.get("calibration", {}), data.get("settings", {}), data.get("evaluations", 0),
                   data.get("outputs", {}), data.get("search", {}))

    def to_json(self, path: Path) -> Path:
        write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def from_json(cls, path: Path) -> "PrecisionPlan":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class Int8Inputs:
    """What the quantize step hands a backend for one component: the plan and its calibration inputs."""

    plan: PrecisionPlan
    calibration: list[Mapping[str, Any]]  # the component's input dicts (numpy arrays), in their operating range


def _round(value: float) -> float | str:
    return "inf" if value == float("inf") else round(float(value), 3)


def _unround(value: Any) -> float:
    return float("inf") if value == "inf" else float(value)


# ---- the manifest ------------------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """`manifest.json`: what a bundle holds, how it was made and checked, and how to run it.

    `pipeline` (sizes, guidance, scheduler tables) and `tokenizer` are present for text-to-image bundles; the
    schema describes every key. `extra` keeps sections a stage added (timings, Core ML's Swift layout)."""

    backend: BackendName
    precision: Precision
    components: dict[str, Artifact]
    source: dict[str, Any]
    backend_version: str = ""
    created: str = ""
    pipeline: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None
    verify: dict[str, Any] = field(default_factory=dict)
    precision_plan: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    side_files: list[str] = field(default_factory=list)  # recipe.toml, tokenizer: `files`, checked like artifacts
    edgediff_version: str = __version__
    format: str = BUNDLE_FORMAT
    root: Path = field(default_factory=Path)  # the bundle folder, set by `read`

    # -- reading ---------------------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: Path, backend: str | None = None, verify_checksums: bool = True) -> "Manifest":
        """Parse and check a bundle: strict JSON, known format and backend, every file inside the bundle folder
        with its recorded size and sha256 (`verify_checksums=False` skips only the sha256)."""
        manifest_path = find_manifest(Path(path), backend)
        root = manifest_path.parent.resolve()
        try:
            raw = json.loads(manifest_path.read_bytes().decode("utf-8"), parse_constant=reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ModelLoadError(f"{manifest_path} is not valid JSON ({exc}); re-create the bundle with "
                                 "`edgediff convert`") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{manifest_path}: expected a JSON object at the top level")
        fmt = raw.get("format")
        if fmt not in READABLE_FORMATS:
            raise ModelLoadError(f"{manifest_path} has format {fmt!r}; this edgediff ({__version__}) reads "
                                 f"{', '.join(READABLE_FORMATS)}: convert the model again with this version")
        backend_name = raw.get("backend")
        if backend_name not in BACKEND_NAMES:
            raise UnsupportedError(f"{manifest_path}: backend {backend_name!r} is unknown "
                                   f"(expected one of {', '.join(BACKEND_NAMES)})")
        precision = raw.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ModelLoadError(f"{manifest_path}: precision {precision!r} is unknown "
                                 f"(expected one of {', '.join(PRECISIONS)})")
        components = raw.get("components")
        if not isinstance(components, dict) or not components:
            raise ModelLoadError(f"{manifest_path}: 'components' must be a non-empty object")
        artifacts = {name: Artifact.from_entry(root, name, entry, verify_checksums)
                     for name, entry in components.items()}
        sections = {}
        for key in ("source", "pipeline", "tokenizer", "verify", "precision_plan"):
            value = raw.get(key)
            if value is not None and not isinstance(value, dict):
                raise ModelLoadError(f"{manifest_path}: '{key}' must be an object, got {_short(value)}")
            sections[key] = value
        tokenizer = sections["tokenizer"]
        if tokenizer is not None:
            for key in ("vocab", "merges"):
                if not isinstance(tokenizer.get(key), str):
                    raise ModelLoadError(f"{manifest_path}: tokenizer.{key} must name a file in the bundle")
                inside(root, tokenizer[key], f"tokenizer.{key}")
        files = raw.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(entry, dict) for entry in files.values()):
            raise ModelLoadError(f"{manifest_path}: 'files' must be an object of name -> {{sha256, bytes}}")
        for name, entry in files.items():
            _checked_file(root, {**entry, "file": name}, f"files.{name}", verify_checksums)
        known = {"format", "edgediff_version", "backend", "backend_version", "precision", "created", "components",
                 "source", "pipeline", "tokenizer", "verify", "precision_plan", "files"}
        return cls(backend=backend_name, precision=precision, components=artifacts,
                   source=sections["source"] or {}, backend_version=str(raw.get("backend_version", "")),
                   created=str(raw.get("created", "")), pipeline=sections["pipeline"], tokenizer=tokenizer,
                   verify=sections["verify"] or {}, precision_plan=sections["precision_plan"],
                   extra={k: v for k, v in raw.items() if k not in known},
                   edgediff_version=str(raw.get("edgediff_version", "")), format=fmt, root=root,
                   side_files=list(files))

    # -- writing ---------------------------------------------------------------------------------------------

    def to_dict(self, bundle_dir: Path) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": BUNDLE_FORMAT, "edgediff_version": self.edgediff_version, "backend": self.backend,
            "backend_version": self.backend_version, "precision": self.precision, "created": self.created,
            "source": self.source,
            "components": {name: a.to_entry(bundle_dir) for name, a in self.components.items()},
        }
        for key in ("pipeline", "tokenizer"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        data["verify"] = self.verify
        if self.precision_plan is not None:
            data["precision_plan"] = self.precision_plan
        if self.side_files:
            data["files"] = {n: {"sha256": sha256_file(bundle_dir / n), "bytes": path_bytes(bundle_dir / n)}
                             for n in self.side_files}
        data.update(self.extra)
        return data

    def write(self, bundle_dir: Path) -> Path:
        path = Path(bundle_dir) / MANIFEST_FILE
        write_json(path, self.to_dict(Path(bundle_dir)))
        return path

    # -- use -------------------------------------------------------------------------------------------------

    def component(self, name: str) -> Artifact:
        if name not in self.components:
            have = ", ".join(sorted(self.components)) or "none"
            raise ModelLoadError(f"bundle {self.root} has no {name} component (it has: {have}); "
                                 "convert with that component")
        return self.components[name]

    def require_pipeline(self) -> dict[str, Any]:
        if self.pipeline is None or self.tokenizer is None:
            raise ModelLoadError(f"bundle {self.root} holds components only (no pipeline and tokenizer sections); "
                                 "text-to-image needs a bundle converted from a full diffusers pipeline")
        return self.pipeline

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.require_pipeline()["latent_shape"])

    @property
    def scheduler(self) -> dict[str, Any]:
        return self.require_pipeline()["scheduler"]


def find_manifest(path: Path, backend: str | None = None) -> Path:
    """Accept DIR/manifest.json, DIR, or a convert output DIR holding DIR/<backend>/manifest.json."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST_FILE:
        return path
    if (path / MANIFEST_FILE).is_file():
        return path / MANIFEST_FILE
    candidates = sorted(path.glob(f"*/{MANIFEST_FILE}")) if path.is_dir() else []
    if backend:
        candidates = [p for p in candidates if p.parent.name == backend]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelLoadError(f"{path} is not a bundle: no {MANIFEST_FILE}" + (f" for backend {backend}" if backend
                             else "") + " (pass a bundle folder written by `edgediff convert`)")
    names = ", ".join(p.parent.name for p in candidates)
    raise ModelLoadError(f"{path} holds several bundles ({names}); choose one with --backend or pass its folder")


# ---- files: containment, sizes, checksums, strict JSON ----------------------------------------------------------


def inside(root: Path, relative: str, where: str) -> Path:
    """`root/relative`, resolved (symlinks followed), refused if it leaves `root`."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or os.path.isabs(relative):
        raise ModelLoadError(f"{where}: {relative!r} is not a relative path inside the bundle; the manifest is "
                             "corrupt or hostile")
    root = Path(root).resolve()
    path = Path(os.path.realpath(root / relative))  # never raises: a symlink loop fails later as ELOOP, typed
    if path != root and root not in path.parents:
        raise ModelLoadError(f"{where}: {relative!r} points outside the bundle folder {root}; refusing to read it")
    return path


def _checked_file(root: Path, entry: Any, where: str, check_sha: bool, size_checked: bool = True) -> Path:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ModelLoadError(f"{where}: expected an object with a string 'file', got {_short(entry)}")
    path = inside(root, entry["file"], where)
    if not os.path.exists(path):  # never raises (an over-long name is simply not there)
        raise ModelLoadError(f"bundle file {entry['file']} ({where}) is missing from {root}; copy the whole bundle "
                             "folder, not just manifest.json")
    size = entry.get("bytes")
    if size_checked and isinstance(size, int) and path_bytes(path) != size:
        raise ModelLoadError(f"{path} has {path_bytes(path)} bytes but the manifest says {size} (so its sha256 "
                             "cannot match): the copy is incomplete or altered, copy the bundle again")
    sha = entry.get("sha256")
    if check_sha:
        if not isinstance(sha, str):
            raise ModelLoadError(f"{where}: no sha256 recorded for {entry['file']}; the manifest is incomplete")
        actual = tree_sha256(path)
        if actual != sha:
            raise ModelLoadError(f"{path} has sha256 {actual[:12]}… but the manifest says {sha[:12]}…; the file "
                                 "was altered or truncated: copy the bundle again (or pass --no-checksums to "
                                 "run it anyway)")
    return path


def _list(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise ModelLoadError(f"{where}.{key}: expected a list, got {_short(value)}")
    return value


def _relative(path: Path, bundle_dir: Path) -> str:
    path, bundle_dir = Path(path), Path(bundle_dir)
    try:
        return path.resolve().relative_to(bundle_dir.resolve()).as_posix()
    except ValueError:
        return path.name  # written beside the bundle's other files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 of a file; of a folder (a Core ML .mlpackage): over each file's relative path and hex sha256, sorted."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def path_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
