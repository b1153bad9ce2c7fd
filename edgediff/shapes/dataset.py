"""Deterministic captioned-shapes dataset: the data the embedded default model and its judge learn from.

Each sample is one shape (circle, square, triangle, star) of one palette colour, at a size and a
position, on a background of another palette colour, rendered 64x64 RGB with anti-aliasing.
Sample `i` of a dataset with seed `s` is a pure function of (s, i): no files, no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
# A palette chosen so every pair is far apart in RGB (the judge and the VAE must tell them apart).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
# Shape extent (bounding-box side) in pixels of the 64x64 canvas.
SIZES: dict[str, int] = {"small": 20, "medium": 28, "large": 38}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
POSITIONS: tuple[str, ...] = ("center", "top left", "top right", "bottom left", "bottom right")
RESOLUTION = 64
_SUPERSAMPLE = 4
_MARGIN = 3  # pixels between a cornered shape and the image border


@dataclass(frozen=True)
class ShapeSpec:
    """Every attribute of one image; `caption` spells them all out in plain English."""

    shape: str
    color: str
    background: str
    size: str
    position: str
    jitter: tuple[int, int] = (0, 0)  # small pixel offset so positions are not one exact point
    rotation: float = 0.0  # degrees; squares, triangles and stars are drawn slightly rotated

    @property
    def caption(self) -> str:
        where = "in the center" if self.position == "center" else self.position
        article = "an" if self.background[0] in "aeiou" else "a"
        return f"a {self.size} {self.color} {self.shape} on {article} {self.background} background, {where}"

    def labels(self) -> dict[str, int]:
        """Class indices for the judge's heads."""
        return {
            "shape": SHAPES.index(self.shape),
            "color": COLORS.index(self.color),
            "background": COLORS.index(self.background),
            "size": SIZE_NAMES.index(self.size),
            "position": POSITIONS.index(self.position),
        }


def sample_spec(seed: int, index: int) -> ShapeSpec:
    """The attributes of sample `index` in the dataset seeded `seed` (independent of any other index)."""
    rng = np.random.default_rng([seed, index])
    color, background = rng.choice(len(COLORS), size=2, replace=False)
    return ShapeSpec(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=COLORS[int(color)],
        background=COLORS[int(background)],
        size=SIZE_NAMES[rng.integers(len(SIZE_NAMES))],
        position=POSITIONS[rng.integers(len(POSITIONS))],
        jitter=(int(rng.integers(-2, 3)), int(rng.integers(-2, 3))),
        rotation=float(rng.uniform(-10.0, 10.0)),
    )


def _center(spec: ShapeSpec) -> tuple[float, float]:
    half = SIZES[spec.size] / 2
    lo, hi, mid = _MARGIN + half + 2, RESOLUTION - _MARGIN - half - 2, RESOLUTION / 2
    x = {"center": mid, "top left": lo, "bottom left": lo, "top right": hi, "bottom right": hi}[spec.position]
    y = {"center": mid, "top left": lo, "top right": lo, "bottom left": hi, "bottom right": hi}[spec.position]
    return x + spec.jitter[0], y + spec.jitter[1]


def _polygon(cx: float, cy: float, radii: list[float], start_deg: float) -> list[tuple[float, float]]:
    n = len(radii)
    return [
        (cx + r * math.cos(math.radians(start_deg + 360.0 * k / n)), cy + r * math.sin(math.radians(start_deg + 360.0 * k / n)))
        for k, r in enumerate(radii)
    ]


def render(spec: ShapeSpec) -> np.ndarray:
    """Draw the spec as a uint8 HxWx3 array (supersampled then box-filtered, so edges are anti-aliased)."""
    s = _SUPERSAMPLE
    canvas = Image.new("RGB", (RESOLUTION * s, RESOLUTION * s), PALETTE[spec.background])
    draw = ImageDraw.Draw(canvas)
    fill = PALETTE[spec.color]
    cx, cy = (v * s for v in _center(spec))
    half = SIZES[spec.size] / 2 * s
    if spec.shape == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
    elif spec.shape == "square":
        side = half * 0.9  # a rotated square's corners would otherwise poke past the nominal size
        draw.polygon(_polygon(cx, cy, [side * math.sqrt(2)] * 4, 45 + spec.rotation), fill=fill)
    elif spec.shape == "triangle":
        # Equilateral, pointing up; shifted down so its bounding box is centred.
        draw.polygon(_polygon(cx, cy + half * 0.2, [half * 1.1] * 3, -90 + spec.rotation), fill=fill)
    elif spec.shape == "star":
        radii = [half * 1.05, half * 0.45] * 5
        draw.polygon(_polygon(cx, cy + half * 0.05, radii, -90 + spec.rotation), fill=fill)
    else:
        raise ValueError(f"unknown shape {spec.shape!r}; expected one of {SHAPES}")
    small = canvas.resize((RESOLUTION, RESOLUTION), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def sample(seed: int, index: int) -> tuple[np.ndarray, ShapeSpec]:
    spec = sample_spec(seed, index)
    return render(spec), spec


def batch(seed: int, start: int, count: int) -> tuple[np.ndarray, list[ShapeSpec]]:
    """`count` consecutive samples as a uint8 [N,64,64,3] array plus their specs."""
    specs = [sample_spec(seed, i) for i in range(start, start + count)]
    return np.stack([render(s) for s in specs]), specs


def to_tensor_range(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (the range diffusers VAEs use)."""
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()


def caption_to_spec(caption: str) -> ShapeSpec:
    """Parse a caption made by `ShapeSpec.caption` back into the attributes it asks for."""
    words = caption.strip().rstrip(".").replace(",", " ").split()
    try:
        size, color, shape = words[1], words[2], words[3]
        background = words[6]
        tail = " ".join(words[8:])
    except IndexError as exc:
        raise ValueError(f"caption {caption!r} is not in the shapes dataset format") from exc
    position = "center" if tail == "in the center" else tail
    if shape not in SHAPES or color not in PALETTE or background not in PALETTE or size not in SIZES or position not in POSITIONS:
        raise ValueError(f"caption {caption!r} is not in the shapes dataset format")
    return ShapeSpec(shape=shape, color=color, background=background, size=size, position=position)
