"""What a suite runs: one row = one model's UNet through one converter, timed against PyTorch eager.

Rows are UNet rows because the UNet is where conversion memory and per-step time go (it is called once or twice
per step; the text encoder once per image). Full-size architectures are built with seeded random weights (no
weights can be downloaded here); speed, memory and size do not depend on the weight values, and every converter
of a row sees the same seeded weights, so parity is still measured against the same PyTorch module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import RecipeError

ARCHITECTURES = Path("/work/shared/architectures")


@dataclass(frozen=True)
class BenchModel:
    """A model a suite converts: a folder whose `unet/` (or itself) is a diffusers UNet folder."""

    key: str
    title: str
    folder: str  # a path, or a name under models/ ("" = the embedded default model)
    random_weights: bool

    def unet_folder(self) -> Path:
        from edgediff.model.load import resolve_model_path

        root = resolve_model_path(self.folder or None)
        return root / "unet" if (root / "unet" / "config.json").exists() else root


def _architecture(name: str) -> str:
    """The shared full-size configs; EDGEDIFF_ARCHITECTURES points elsewhere on another machine."""
    import os

    return str(Path(os.environ.get("EDGEDIFF_ARCHITECTURES", ARCHITECTURES)) / name)


MODELS = {
    "default": BenchModel("default", "default model (shapes-sd, 20 MB)", "", False),
    "sd15": BenchModel("sd15", "SD 1.5 UNet (random weights)", _architecture("stable-diffusion-v1-5"), True),
    "sd21": BenchModel("sd21", "SD 2.1-base UNet (random weights)", _architecture("stable-diffusion-2-1-base"), True),
    "bksdm": BenchModel("bksdm", "BK-SDM-small UNet (random weights)", _architecture("bk-sdm-small"), True),
}

# converter -> (the runtime its artifact runs on, who wrote the converter)
CONVERTERS = {
    "edgediff-onnxruntime": ("onnxruntime", "edgediff"),
    "optimum-onnxruntime": ("onnxruntime", "anchor"),
    "edgediff-litert": ("litert", "edgediff"),
    "litert-torch": ("litert", "anchor"),
    "edgediff-coreml": ("coreml", "edgediff"),
}

SUITES = {
    "default": ["default"],
    "sd15": ["sd15"],
    "sd21": ["sd21"],
    "bksdm": ["bksdm"],
    "all": ["default", "sd15", "sd21", "bksdm"],
}


@dataclass(frozen=True)
class Settings:
    """How every row of a run is converted and timed (recorded with each row; a changed setting redoes it)."""

    batch: int = 1  # 2 = batched classifier-free guidance
    runs: int = 5  # interleaved timed runs per engine
    warmup: int = 1
    threads: int = 0  # 0 = every logical CPU of the machine
    size: int = 0  # image size; 0 = the UNet's native resolution (sample_size x 8)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RowSpec:
    model: BenchModel
    converter: str
    settings: Settings

    @property
    def key(self) -> str:
        return f"{self.model.key}__{self.converter}__b{self.settings.batch}"

    @property
    def backend(self) -> str:
        return CONVERTERS[self.converter][0]

    @property
    def kind(self) -> str:
        return CONVERTERS[self.converter][1]


def plan_rows(suite: str, backends: list[str] | None, settings: Settings) -> list[RowSpec]:
    """Rows of a suite, filtered by converter or runtime name (`onnxruntime` keeps both ONNX Runtime rows)."""
    if suite not in SUITES:
        raise RecipeError(f"unknown suite {suite!r} (valid: {', '.join(SUITES)})")
    wanted = set(backends or CONVERTERS)
    valid = set(CONVERTERS) | {b for b, _ in CONVERTERS.values()}
    unknown = sorted(wanted - valid)
    if unknown:
        raise RecipeError(f"unknown backend(s) {', '.join(unknown)} for --backends (valid: {', '.join(sorted(valid))})")
    if settings.batch not in (1, 2):
        raise RecipeError(f"--batch must be 1 or 2, got {settings.batch}")
    if settings.runs < 1 or settings.warmup < 0:
        raise RecipeError("--runs must be at least 1 and --warmup at least 0")
    return [RowSpec(MODELS[m], c, settings) for m in SUITES[suite] for c, (b, _) in CONVERTERS.items()
            if c in wanted or b in wanted]
