"""Where training images and captions come from, for every teacher -> student run (step and consistency
distillation, pruning recovery and robust training, the prune search's output-agreement batch).

`TrainingData` is the interface: a name (it keys the latent cache), a size, and `batch(start, count)` returning
images in the VAE's range with their captions. Two providers:
- `ShapesData`: the built-in shapes task (the default model's world), procedurally rendered and endless;
- `ImageFolderData`: a user's own images and prompts in the common image-folder layout: a folder with
  `metadata.jsonl`, one `{"file_name": "...", "text": "..."}` per line (file names inside the folder).
`training_data("")` is the shapes task; `training_data("path/to/folder")` a folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgediff.contract import inside
from edgediff.errors import ModelLoadError
from edgediff.shapes import dataset as shapes

METADATA_FILE = "metadata.jsonl"
SHAPES_SIZE = 64  # the shapes task renders 64x64 images


class TrainingData(Protocol):
    """Images (float32 NCHW in [-1, 1]) and captions, addressed by index."""

    @property
    def name(self) -> str:
        """Identifies the data (it keys the latent cache)."""
        ...

    def __len__(self) -> int: ...

    def batch(self, start: int, count: int) -> tuple[np.ndarray, list[str]]: ...


@dataclass
class ShapesData:
    """The shapes task: sample i of seed s is always the same picture and caption."""

    seed: int

    @property
    def name(self) -> str:
        return f"shapes-seed{self.seed}"

    def __len__(self) -> int:
        return 2**31 - 1  # procedural

    def batch(self, start: int, count: int) -> tuple[np.ndarray, list[str]]:
        images, specs = shapes.batch(self.seed, start, count)
        return shapes.to_tensor_range(images), [spec.caption for spec in specs]


class ImageFolderData:
    """A folder of the user's images with `metadata.jsonl` captions, centre-cropped and resized to `size`."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = Path(folder).resolve(), int(size)
        metadata = self.folder / METADATA_FILE
        if not metadata.is_file():
            raise ModelLoadError(f"{self.folder} has no {METADATA_FILE}: training data is a folder of images with one "
                                 '{"file_name": "...", "text": "..."} line per image')
        self.entries: list[tuple[Path, str]] = []
        raw = metadata.read_bytes()
        for number, line in enumerate(raw.decode("utf-8", errors="strict").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"{metadata}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) \
                    or not isinstance(entry.get("text"), str):
                raise ModelLoadError(f"{metadata}:{number}: expected {{\"file_name\": str, \"text\": str}}")
            path = inside(self.folder, entry["file_name"], f"{metadata}:{number}")
            if not path.is_file():
                raise ModelLoadError(f"{metadata}:{number}: {entry['file_name']} is missing")
            self.entries.append((path, entry["text"]))
        if not self.entries:
            raise ModelLoadError(f"{metadata} lists no images")
        self.name = f"folder-{hashlib.sha256(raw).hexdigest()[:16]}-{self.size}px"

    def __len__(self) -> int:
        return len(self.entries)

    def batch(self, start: int, count: int) -> tuple[np.ndarray, list[str]]:
        from PIL import Image

        images, captions = [], []
        for path, text in self.entries[start:start + count]:
            with Image.open(path) as opened:
                rgb = opened.convert("RGB")
            side = min(rgb.size)
            left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
            square = rgb.crop((left, top, left + side, top + side)).resize((self.size, self.size),
                                                                           Image.Resampling.BICUBIC)
            images.append(np.asarray(square))
            captions.append(text)
        return shapes.to_tensor_range(np.stack(images)), captions


def training_data(source: str, seed: int, size: int) -> TrainingData:
    """"" (or "shapes") is the built-in shapes task; anything else a folder of the user's images."""
    if source in ("", "shapes"):
        return ShapesData(seed)
    return ImageFolderData(Path(source), size)
