"""Golden files at every size of a bundle with several sizes (pipeline.sizes), for the apps' cores.

The first size's golden files are the usual folder (so a reader that knows one size reads them as before); each
other size gets a complete golden folder of its own under `sizes/WxH/`, made by the same run at that size (same
prompt, seed, steps and guidance: only the latent shape differs). golden.json says which size it is (`size`,
[height, width]) and, in the top folder, lists the others (`sizes`: size name, [height, width], folder), so an
app checks itself at every size its bundle makes. Torch-free, like the rest of runtime/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from edgediff.runtime.sizes import bundle_sizes, current_size, use_size

SIZES_FOLDER = "sizes"


def size_name(size: tuple[int, int]) -> str:
    """(height, width) -> 'WIDTHxHEIGHT', the spelling users type (as edgediff.model.sizes.size_name)."""
    return f"{size[1]}x{size[0]}"


def write_every_size(pipe: Any, out_dir: Path, write_one: Callable[[Any, Path], Path]) -> Path:
    """`write_one(pipe, folder)` at the pipeline's first size into `out_dir`, then at each other size into
    out_dir/sizes/WxH; golden.json records the size and lists the others. Returns the top golden.json."""
    sizes = bundle_sizes(pipe.manifest)
    start = current_size(pipe)
    others: list[dict[str, Any]] = []
    try:
        use_size(pipe, *sizes[0])
        top = write_one(pipe, Path(out_dir))
        _note_size(top, sizes[0], [])
        for size in sizes[1:]:
            use_size(pipe, *size)
            folder = Path(out_dir) / SIZES_FOLDER / size_name(size)
            _note_size(write_one(pipe, folder), size, [])
            others.append({"name": size_name(size), "size": list(size), "golden": f"{SIZES_FOLDER}/{size_name(size)}"})
    finally:
        use_size(pipe, *start)
    if others:
        _note_size(top, sizes[0], others)
    return top


def _note_size(path: Path, size: tuple[int, int], others: list[dict[str, Any]]) -> None:
    golden = json.loads(path.read_text())
    golden["size"] = list(size)
    if others:
        golden["sizes"] = others
    path.write_text(json.dumps(golden, indent=1) + "\n")
