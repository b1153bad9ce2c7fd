"""Read a bundle's manifest.json into typed objects, checking every file's size and sha256.

Torch-free on purpose: devices, the Jetson runner and `edgediff generate` all start here. The schema is
the bundle contract ("edgediff-bundle/1"); edgediff/bundle.py writes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError, UnsupportedError

BUNDLE_FORMAT = "edgediff-bundle/1"
BACKENDS = ("onnxruntime", "litert", "coreml")


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output; `shape` entries are ints or symbolic names (dynamic axes)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TensorSpec":
        return cls(name=str(data["name"]), shape=tuple(data.get("shape") or ()), dtype=str(data.get("dtype", "float32")))

    def fixed_dim(self, axis: int) -> int | None:
        """The size of `axis` if the model fixes it, else None."""
        if axis >= len(self.shape):
            return None
        dim = self.shape[axis]
        return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class ChunkSpec:
    """One part of a component split into several model files chained by tensor names."""

    file: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class ComponentSpec:
    """A model component (text_encoder, unet, vae_decoder, vae_encoder) as the manifest describes it."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    chunks: tuple[ChunkSpec, ...]
    verify: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    @property
    def files(self) -> list[Path]:
        return [c.file for c in self.chunks]


@dataclass(frozen=True)
class Manifest:
    """The parts of manifest.json the runtime uses; `raw` keeps the whole document."""

    root: Path
    backend: str
    precision: str
    components: dict[str, ComponentSpec]
    pipeline: dict[str, Any]
    tokenizer: dict[str, Any]
    raw: dict[str, Any]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.pipeline["latent_shape"])

    @property
    def scheduler(self) -> dict[str, Any]:
        return self.pipeline["scheduler"]

    def component(self, name: str) -> ComponentSpec:
        if name not in self.components:
            have = ", ".join(sorted(self.components)) or "none"
            raise ModelLoadError(f"bundle {self.root} has no {name} component (it has: {have}); re-run edgediff convert")
        return self.components[name]


def find_manifest(path: Path, backend: str | None = None) -> Path:
    """Accept DIR/manifest.json, DIR, or a convert output DIR holding DIR/<backend>/manifest.json."""
    path = Path(path)
    if path.is_file() and path.name == "manifest.json":
        return path
    if (path / "manifest.json").is_file():
        return path / "manifest.json"
    candidates = sorted(p for p in path.glob("*/manifest.json")) if path.is_dir() else []
    if backend:
        candidates = [p for p in candidates if p.parent.name == backend]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelLoadError(
            f"no manifest.json in {path}" + (f" for backend {backend}" if backend else "")
            + "; pass a bundle folder written by `edgediff convert`"
        )
    names = ", ".join(p.parent.name for p in candidates)
    raise ModelLoadError(f"{path} holds several bundles ({names}); choose one with --backend or pass its folder")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file; for a directory (a Core ML .mlpackage), of each file's relative path followed by its
    hex sha256, in sorted order (the convention edgediff/bundle.py writes)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def _check_file(root: Path, rel: str, sha: str | None, size: int | None, verify: bool) -> Path:
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise ModelLoadError(f"manifest file {rel!r} points outside the bundle folder {root}; the manifest is corrupt")
    if not path.exists():
        raise ModelLoadError(f"bundle file {path} is missing; copy the whole bundle folder, not just manifest.json")
    if size is not None and path.is_file() and path.stat().st_size != int(size):
        raise ModelLoadError(
            f"{path} has {path.stat().st_size} bytes but the manifest says {size}; the copy is incomplete, copy it again"
        )
    if verify and sha:
        actual = sha256_path(path)
        if actual != sha:
            raise ModelLoadError(f"{path} has sha256 {actual[:12]}… but the manifest says {sha[:12]}…; the file is corrupt or was replaced")
    return path


def _check_entry(root: Path, entry: dict[str, Any], verify: bool) -> Path:
    """The model file of a manifest entry, plus its side files (e.g. ONNX external weights), all checked."""
    for extra in entry.get("extra_files", []):
        _check_file(root, extra["file"], extra.get("sha256"), extra.get("bytes"), verify)
    size = None if entry.get("extra_files") else entry.get("bytes")  # then `bytes` counts the side files too
    return _check_file(root, entry["file"], entry.get("sha256"), size, verify)


def load_manifest(path: Path, backend: str | None = None, verify_checksums: bool = True) -> Manifest:
    """Parse and check a bundle. Every component file must exist with the recorded size and sha256."""
    manifest_path = find_manifest(path, backend)
    root = manifest_path.parent
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{manifest_path} is not valid JSON ({exc})") from exc
    fmt = raw.get("format")
    if fmt != BUNDLE_FORMAT:
        raise ModelLoadError(f"{manifest_path} has format {fmt!r}; this runtime reads {BUNDLE_FORMAT!r}")
    if raw.get("backend") not in BACKENDS:
        raise UnsupportedError(f"bundle backend {raw.get('backend')!r} is unknown; expected one of {', '.join(BACKENDS)}")
    for key in ("components", "pipeline", "tokenizer"):
        if key not in raw:
            raise ModelLoadError(f"{manifest_path} lacks the {key!r} section; re-create the bundle with edgediff convert")
    components = {}
    for name, data in raw["components"].items():
        inputs = tuple(TensorSpec.from_json(t) for t in data.get("inputs", []))
        outputs = tuple(TensorSpec.from_json(t) for t in data.get("outputs", []))
        chunk_data = data.get("chunks")
        if chunk_data:
            chunks = tuple(
                ChunkSpec(
                    file=_check_entry(root, c, verify_checksums),
                    inputs=tuple(TensorSpec.from_json(t) for t in c["inputs"]),
                    outputs=tuple(TensorSpec.from_json(t) for t in c["outputs"]),
                    sha256=c.get("sha256"),
                    bytes=c.get("bytes"),
                )
                for c in chunk_data
            )
        else:
            if "file" not in data:
                raise ModelLoadError(f"component {name} in {manifest_path} has neither 'file' nor 'chunks'")
            chunks = (
                ChunkSpec(
                    file=_check_entry(root, data, verify_checksums),
                    inputs=inputs,
                    outputs=outputs,
                    sha256=data.get("sha256"),
                    bytes=data.get("bytes"),
                ),
            )
        if not inputs:
            inputs = chunks[0].inputs
        if not outputs:
            outputs = chunks[-1].outputs
        components[name] = ComponentSpec(name, inputs, outputs, chunks, dict(data.get("verify") or {}))
    tokenizer = dict(raw["tokenizer"])
    for key in ("vocab", "merges"):
        if key not in tokenizer:
            raise ModelLoadError(f"{manifest_path} tokenizer section lacks {key!r}")
        _check_file(root, tokenizer[key], None, None, False)
    return Manifest(
        root=root,
        backend=raw["backend"],
        precision=str(raw.get("precision", "fp32")),
        components=components,
        pipeline=dict(raw["pipeline"]),
        tokenizer=tokenizer,
        raw=raw,
    )
