"""A content-keyed cache for slim stages: a stage whose inputs and settings did not change is not redone.

A stage's key is the sha256 of its kind, the digests of the weights it reads, its settings and the edgediff
version, so a changed input (another prune spec, a retrained teacher) or a new release recomputes it and a
rerun of a finished recipe only loads results. Each entry is a folder `<cache>/stages/<kind>-<key[:20]>/`:
`work/` holds what a killed run continues from (training checkpoints), `stage.json` is written last and
marks the entry finished (a folder without it is resumed, never read as a result).

Every lookup is recorded (`take_records`): the orchestrator puts the records in the manifest, so a bundle says
which stages it reused and which it computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff import __version__

STAGE_FILE = "stage.json"
_RECORDS: list[dict[str, Any]] = []


def cache_root() -> Path:
    """$EDGEDIFF_CACHE_DIR (or ~/.cache/edgediff)/stages: shared with the quantize step's calibration cache."""
    base = os.environ.get("EDGEDIFF_CACHE_DIR") or str(Path.home() / ".cache" / "edgediff")
    return Path(base).expanduser() / "stages"


def module_digest(module: Any) -> str:
    """sha256 over every tensor of a torch module's state dict (names, dtypes, shapes and bytes)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def settings_digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def stage_key(kind: str, inputs: dict[str, str], settings: dict[str, Any]) -> str:
    """The key of one stage: its kind, input digests, settings and the edgediff version."""
    return settings_digest({"kind": kind, "inputs": inputs, "settings": settings, "edgediff": __version__})


@dataclass
class StageEntry:
    """One stage's cache folder."""

    kind: str
    key: str
    folder: Path

    @property
    def work(self) -> Path:
        return self.folder / "work"

    @property
    def done(self) -> bool:
        return (self.folder / STAGE_FILE).is_file()

    def record(self) -> dict[str, Any]:
        return json.loads((self.folder / STAGE_FILE).read_text())

    def finish(self, record: dict[str, Any]) -> None:
        """Mark the entry finished (atomically: a killed write leaves it unfinished, never half-read)."""
        data = {"kind": self.kind, "key": self.key, "edgediff": __version__, **record}
        tmp = self.folder / (STAGE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
        os.replace(tmp, self.folder / STAGE_FILE)


def entry(kind: str, inputs: dict[str, str], settings: dict[str, Any], root: Path | None = None) -> StageEntry:
    key = stage_key(kind, inputs, settings)
    folder = (root or cache_root()) / f"{kind}-{key[:20]}"
    folder.mkdir(parents=True, exist_ok=True)
    return StageEntry(kind, key, folder)


def note(kind: str, key: str, hit: bool, **extra: Any) -> dict[str, Any]:
    """Record (and say on stderr) whether a stage was reused or computed. Returns the record, so the caller can
    add what the stage cost (`seconds`) once it is done."""
    record = {"stage": kind, "key": key[:20], "cache": "hit" if hit else "miss", **extra}
    _RECORDS.append(record)
    what = "reused from the stage cache" if hit else "computed"
    print(f"slim {kind}: {what} (key {key[:12]})", file=sys.stderr)
    return record


def take_records() -> list[dict[str, Any]]:
    """The records since the last call (one plan's worth), oldest first."""
    found = list(_RECORDS)
    _RECORDS.clear()
    return found
