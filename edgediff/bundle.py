"""Bundle folders: `DIR/<backend>/` with the artifacts, `manifest.json`, `recipe.toml` and `report.md`.

The manifest schema (`edgediff-bundle/1`) is shared with the runtime and the apps. A bundle is written into a
hidden staging folder and moved into place only when complete, so a failed or interrupted run never leaves a
folder that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from edgediff.backends.base import Artifact
from edgediff.errors import EdgediffError, ModelLoadError
from edgediff.model.components import TensorSpec

FORMAT = "edgediff-bundle/1"
MANIFEST = "manifest.json"
RECIPE_FILE = "recipe.toml"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (sorted relative names + contents) for .mlpackage dirs."""
    if path.is_file():
        return sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode())
        digest.update(sha256(f).encode())
    return digest.hexdigest()


def artifact_entry(artifact: Artifact, bundle_dir: Path) -> dict[str, Any]:
    """The manifest entry of one component: files, checksums and I/O contract."""

    def file_entry(a: Artifact) -> dict[str, Any]:
        entry = {
            "file": a.path.name,
            "sha256": tree_sha256(bundle_dir / a.path.name),
            "bytes": path_bytes(bundle_dir / a.path.name),
            "inputs": [s.to_dict() for s in a.inputs],
            "outputs": [s.to_dict() for s in a.outputs],
        }
        extra = a.meta.get("extra_files", {}).get(a.path.name, [])
        if extra:
            entry["extra_files"] = [{"file": f, "sha256": sha256(bundle_dir / f), "bytes": path_bytes(bundle_dir / f)}
                                    for f in extra]
            entry["bytes"] += sum(e["bytes"] for e in entry["extra_files"])
        return entry

    entry = file_entry(artifact)
    if artifact.chunks:
        entry["chunks"] = [file_entry(c) for c in artifact.chunks]
        entry["bytes"] = sum(c["bytes"] for c in entry["chunks"])
    meta = {k: v for k, v in artifact.meta.items() if k != "extra_files"}
    if meta:
        entry["meta"] = meta
    return entry


def artifact_from_entry(bundle_dir: Path, name: str, entry: dict[str, Any]) -> Artifact:
    """Rebuild an Artifact from its manifest entry (used by verify, profile and the runtime)."""

    def one(e: dict[str, Any]) -> Artifact:
        extra = [x["file"] for x in e.get("extra_files", [])]
        return Artifact(name, bundle_dir / e["file"], tuple(TensorSpec.from_dict(s) for s in e["inputs"]),
                        tuple(TensorSpec.from_dict(s) for s in e["outputs"]),
                        meta={"extra_files": {e["file"]: extra} if extra else {}})

    artifact = one(entry)
    artifact.chunks = [one(c) for c in entry.get("chunks", [])]
    artifact.meta.update(entry.get("meta", {}))
    return artifact


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST
    if not path.exists():
        raise ModelLoadError(f"{bundle_dir} is not a bundle: {MANIFEST} is missing (run `edgediff convert` first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc.msg})") from None
    if manifest.get("format") != FORMAT:
        raise ModelLoadError(f"{path} has format {manifest.get('format')!r}; this edgediff reads {FORMAT}")
    return manifest


def check_files(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Every file listed in the manifest exists and has its recorded sha256."""
    for name, entry in manifest["components"].items():
        for e in entry.get("chunks", [entry]):
            for f in [e] + e.get("extra_files", []):
                path = bundle_dir / f["file"]
                if not path.exists():
                    raise ModelLoadError(f"{bundle_dir}: {name} file {f['file']} is missing")
                if tree_sha256(path) != f["sha256"]:
                    raise ModelLoadError(f"{bundle_dir}: {f['file']} does not match its sha256 in the manifest "
                                         "(modified or truncated copy): re-run convert or re-copy the bundle")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def copy_tokenizer(tokenizer_dir: Path | None, bundle_dir: Path) -> dict[str, Any] | None:
    """Devices tokenize themselves: ship the CLIP BPE files next to the models."""
    if tokenizer_dir is None:
        return None
    target = bundle_dir / "tokenizer"
    target.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy2(tokenizer_dir / name, target / name)
    config = {}
    if (tokenizer_dir / "tokenizer_config.json").exists():
        config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    return {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt",
            "max_length": int(config.get("model_max_length", 77)) if config.get("model_max_length", 77) < 10**6
            else 77, "config": "tokenizer/tokenizer_config.json"}


@contextmanager
def staged_output(final_dir: Path) -> Iterator[Path]:
    """Yield a staging folder beside `final_dir`; on success it replaces `final_dir`, on failure it is removed.

    A run that fails verification keeps its files for inspection, but under `<name>.failed`, never `<name>`.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = final_dir.parent / f".{final_dir.name}.partial-{os.getpid()}-{int(time.time())}"
    staging.mkdir()
    try:
        yield staging
    except EdgediffError as exc:
        if getattr(exc, "keep_output", False):
            failed = final_dir.parent / f"{final_dir.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            staging.rename(failed)
            exc.args = (f"{exc.args[0]} (artifacts and report kept in {failed})",)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}"
        final_dir.rename(old)
    staging.rename(final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
