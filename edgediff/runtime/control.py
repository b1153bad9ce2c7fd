"""ControlNet in the torch-free runtime: the conditioning image, its hint extraction (canny edges, depth maps) and
the per-step ControlNet call whose residuals feed the UNet.

As diffusers' StableDiffusionControlNetPipeline (guess_mode off): the control image is RGB, channel-first, in
[0, 1] (no [-1, 1] normalisation), repeated to the UNet's batch (uncond + cond get the same image); each step runs
the ControlNet on exactly the UNet's inputs plus the image and the conditioning scale, then the UNet with the
residuals. Without a control image a ControlNet bundle's UNet gets zero residuals, which is the plain UNet.

Canny follows OpenCV's cv2.Canny (what the ControlNet annotators and diffusers' examples call): 3x3 Sobel with
replicated borders, L1 magnitude, per pixel the channel with the largest magnitude, OpenCV's integer
non-maximum suppression, hysteresis with 8-connectivity; an optional Gaussian blur first (off by default, as in
the annotators). Edges are 255 on 0, replicated to 3 channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.errors import ModelLoadError, RecipeError

KINDS = ("canny", "depth", "raw")
COMPONENT = "controlnet"
COND_INPUT = "controlnet_cond"
SCALE_INPUT = "conditioning_scale"
MAX_SCALE = 10.0
EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "1")
DEPTH_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "F", "RGB", "RGBA", "LA")
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)  # OpenCV's tan(22.5 deg) in Q15

Call = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ControlInput:
    """A prepared control image [1, C, H, W] float32 in [0, 1] and the conditioning scale."""

    image: np.ndarray
    scale: float = 1.0
    kind: str = "raw"


def check_scale(scale: Any) -> float:
    """The conditioning scale: a finite number in [0, MAX_SCALE] (diffusers multiplies every residual by it)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise RecipeError(f"the control scale must be a number, got {scale!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_SCALE:
        raise RecipeError(f"the control scale must be a finite number in [0, {MAX_SCALE:g}], got {scale!r} "
                          "(1.0 is the ControlNet's trained strength)")
    return value


# ---- reading the image -----------------------------------------------------------------------------------------


def open_image(path: Path):
    """A PIL image from an untrusted file: missing files, folders, non-images and decompression bombs are one
    clear error each."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"control image {path} does not exist" if not path.exists()
                          else f"control image {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RecipeError(f"control image {path} is not a readable image ({type(exc).__name__}); give a PNG or "
                          "JPEG of the bundle's size") from None
    except OSError as exc:
        raise RecipeError(f"control image {path} cannot be read ({exc}); it may be truncated") from None
    return image


def _rgb8(image, where: str) -> np.ndarray:
    """HxWx3 uint8, as diffusers' `convert("RGB")`; modes that are not 8-bit pictures are refused."""
    if image.mode not in EIGHT_BIT_MODES:
        raise RecipeError(f"{where} has mode {image.mode} (16-bit, float or another colour space); the ControlNet "
                          "takes an 8-bit RGB or grayscale image (for a 16-bit depth map use --control-kind depth)")
    if image.mode in ("RGBA", "LA") and np.asarray(image.getchannel("A")).min() < 255:
        raise RecipeError(f"{where} has transparent pixels; flatten it onto a background first (the ControlNet "
                          "sees RGB only)")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _depth(image, where: str) -> np.ndarray:
    """A depth map as HxW float in [0, 1]: 8-bit maps as they are (value / 255, what diffusers feeds when given
    the image), 16-bit and float maps min-max normalised (as depth estimators' 8-bit outputs are made)."""
    if image.mode not in DEPTH_MODES:
        raise RecipeError(f"{where} has mode {image.mode}; a depth map is grayscale (8 or 16 bit, or float)")
    if image.mode in ("RGB", "RGBA", "LA"):
        rgb = _rgb8(image, where)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise RecipeError(f"{where} is a colour image, not a depth map (its channels differ; a colour-mapped "
                              "visualisation cannot be read back as depth): give the grayscale depth")
        return rgb[..., 0].astype(np.float32) / 255.0
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    values = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise RecipeError(f"{where} holds non-finite depth values")
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def prepare(image, kind: str, height: int, width: int, low: float = 100.0, high: float = 200.0,
            sigma: float = 0.0, where: str = "the control image") -> np.ndarray:
    """A PIL image (or HxW[xC] uint8 array) -> the ControlNet's input [1, 3, H, W] float32 in [0, 1].

    The size must match the bundle's: resizing would change what the ControlNet sees, so it is the caller's
    choice, not a silent step."""
    from PIL import Image

    if kind not in KINDS:
        raise RecipeError(f"unknown control kind {kind!r} (valid: {', '.join(KINDS)})")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise RecipeError(f"{where}: expected an HxW or HxWxC uint8 array, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if (image.height, image.width) != (height, width):
        raise RecipeError(f"{where} is {image.width}x{image.height} (width x height) but the bundle generates "
                          f"{width}x{height}; resize or crop it to that size")
    if kind == "depth":
        plane = _depth(image, where)
        pixels = np.repeat(plane[..., None], 3, axis=2)
    elif kind == "canny":
        pixels = np.repeat(canny(_rgb8(image, where), low, high, sigma)[..., None], 3, axis=2) / np.float32(255)
    else:
        pixels = _rgb8(image, where) / np.float32(255)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def read_control(path: Path, kind: str, height: int, width: int, scale: float = 1.0, low: float = 100.0,
                 high: float = 200.0, sigma: float = 0.0) -> ControlInput:
    """A control image file -> what the pipeline feeds, every problem one RecipeError."""
    scale = check_scale(scale)
    if kind not in KINDS:
        raise RecipeError(f"unknown control kind {kind!r} (valid: {', '.join(KINDS)})")
    image = open_image(path)
    return ControlInput(prepare(image, kind, height, width, low, high, sigma, where=f"control image {path}"),
                        scale, kind)


# ---- canny ----------------------------------------------------------------------------------------------------


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 HxW[xC] blurred with a separable Gaussian (OpenCV's kernel size for 8-bit images and its default
    reflect-101 border), rounded back to uint8."""
    if sigma <= 0:
        return image
    size = int(round(sigma * 3 * 2 + 1)) | 1
    radius = size // 2
    x = np.arange(size) - radius
    kernel = np.exp(-(x**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    data = image.astype(np.float64)
    squeeze = data.ndim == 2
    if squeeze:
        data = data[..., None]
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(data, pad, mode="reflect")
        n = data.shape[axis]
        data = sum(kernel[i] * np.take(padded, np.arange(i, i + n), axis=axis) for i in range(size))
    out = np.clip(np.rint(data), 0, 255).astype(np.uint8)
    return out[..., 0] if squeeze else out


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel x and y of each channel with replicated borders (int32, HxWxC)."""
    p = np.pad(image.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    dx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    dy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return dx, dy


def canny(image: np.ndarray, low: float = 100.0, high: float = 200.0, sigma: float = 0.0) -> np.ndarray:
    """Canny edges of an HxW or HxWxC uint8 image: uint8 HxW, 255 on edges, 0 elsewhere (cv2.Canny's output)."""
    for name, value in (("low", low), ("high", high), ("sigma", sigma)):
        if not math.isfinite(value) or value < 0:
            raise RecipeError(f"canny {name} threshold must be a finite number >= 0, got {value!r}")
    if low > high:
        low, high = high, low
    data = np.asarray(image)
    if data.dtype != np.uint8 or data.ndim not in (2, 3):
        raise RecipeError(f"canny takes an HxW or HxWxC uint8 image, got {data.dtype} {data.shape}")
    data = gaussian_blur(data, sigma)
    if data.ndim == 2:
        data = data[..., None]
    dx_all, dy_all = _sobel(data)
    mag_all = np.abs(dx_all) + np.abs(dy_all)
    pick = np.argmax(mag_all, axis=2)[..., None]  # the first channel with the largest magnitude, as OpenCV
    dx = np.take_along_axis(dx_all, pick, 2)[..., 0]
    dy = np.take_along_axis(dy_all, pick, 2)[..., 0]
    mag = np.take_along_axis(mag_all, pick, 2)[..., 0]
    lo, hi = math.floor(low), math.floor(high)

    m = np.pad(mag, 1)  # magnitudes outside the image are 0
    h, w = mag.shape

    def at(di: int, dj: int) -> np.ndarray:
        return m[1 + di:1 + di + h, 1 + dj:1 + dj + w]

    xs, ys = np.abs(dx).astype(np.int64), np.abs(dy).astype(np.int64) << 15
    tg22x = xs * _TG22
    tg67x = tg22x + (xs << 16)
    horizontal = ys < tg22x
    vertical = ~horizontal & (ys > tg67x)
    diagonal = ~horizontal & ~vertical
    s = np.where((dx ^ dy) < 0, -1, 1)
    keep = np.zeros_like(mag, dtype=bool)
    keep |= horizontal & (mag > at(0, -1)) & (mag >= at(0, 1))
    keep |= vertical & (mag > at(-1, 0)) & (mag >= at(1, 0))
    diag_neg = (mag > at(-1, 1)) & (mag > at(1, -1))  # s = -1: previous row j + 1, next row j - 1
    diag_pos = (mag > at(-1, -1)) & (mag > at(1, 1))
    keep |= diagonal & np.where(s < 0, diag_neg, diag_pos)
    candidate = keep & (mag > lo)
    strong = candidate & (mag > hi)
    return _hysteresis(candidate, strong)


def _hysteresis(candidate: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Candidates 8-connected (through candidates) to a strong pixel, as uint8 0 / 255."""
    h, w = candidate.shape
    cand = np.pad(candidate, 1).ravel()
    edge = np.zeros_like(cand)
    width = w + 2
    offsets = (-width - 1, -width, -width + 1, -1, 1, width - 1, width, width + 1)
    stack = list((np.flatnonzero(np.pad(strong, 1).ravel())))
    edge[stack] = True
    while stack:
        index = stack.pop()
        for offset in offsets:
            n = index + offset
            if cand[n] and not edge[n]:
                edge[n] = True
                stack.append(n)
    return (edge.reshape(h + 2, w + 2)[1:-1, 1:-1] * np.uint8(255)).astype(np.uint8)


def synthetic_hint(height: int, width: int) -> np.ndarray:
    """A deterministic canny hint [1, 3, H, W] in [0, 1] (a disc and a bar), for the end-to-end check and
    calibration when no control image is given."""
    yy, xx = np.mgrid[0:height, 0:width]
    picture = np.zeros((height, width, 3), np.uint8)
    disc = (yy - height * 0.4) ** 2 + (xx - width * 0.35) ** 2 < (min(height, width) * 0.25) ** 2
    picture[disc] = (220, 40, 40)
    bar = (yy > height * 0.7) & (yy < height * 0.85) & (xx > width * 0.2)
    picture[bar] = (40, 200, 90)
    return prepare(picture, "canny", height, width)


# ---- running --------------------------------------------------------------------------------------------------


def controlled(controlnet: Call, unet: Call, image: np.ndarray, scale: float,
               residuals: tuple[str, ...] | None = None) -> Call:
    """A UNet call that first runs the ControlNet on the same inputs plus the control image (repeated to the
    batch) and the scale, then the UNet with the residuals: one ControlNet step as diffusers runs it."""
    def call(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = feeds["sample"].shape[0]
        out = controlnet({"sample": feeds["sample"], "timestep": feeds["timestep"],
                          "encoder_hidden_states": feeds["encoder_hidden_states"],
                          COND_INPUT: np.repeat(image, batch, axis=0).astype(np.float32),
                          SCALE_INPUT: np.full((batch,), scale, np.float32)})
        names = residuals or tuple(out)
        return unet({**feeds, **{n: out[n] for n in names}})
    return call


class ControlStage:
    """The bundle's ControlNet session and the UNet's residual inputs, checked against each other."""

    def __init__(self, manifest, options) -> None:
        from edgediff.runtime.sessions import open_component

        spec, unet = manifest.component(COMPONENT), manifest.component("unet")
        self.residuals = tuple(o.name for o in spec.outputs)
        missing = [n for n in self.residuals if unet.input(n) is None]
        cond = spec.input(COND_INPUT)
        if not self.residuals or missing or cond is None or spec.input(SCALE_INPUT) is None or len(cond.shape) != 4:
            raise ModelLoadError(f"{manifest.root / 'manifest.json'}: the controlnet component and the unet's "
                                 f"residual inputs do not fit together (missing {', '.join(missing) or 'inputs'}); "
                                 "re-create the bundle")
        self.image_size = (cond.fixed_dim(2), cond.fixed_dim(3))
        self.zero_shapes = {n: tuple(unet.input(n).shape[1:]) for n in self.residuals}  # type: ignore[union-attr]
        self.session = open_component(manifest, COMPONENT, options)

    def check(self, control: ControlInput) -> None:
        """A prepared control image of the size and channels the bundle's ControlNet takes, and a valid scale."""
        check_scale(control.scale)
        shape = tuple(np.shape(control.image))
        want = (1, 3, *self.image_size)
        if shape != want:
            raise RecipeError(f"the control image is {list(shape)} but this bundle's ControlNet takes {list(want)} "
                              "(1 x RGB x height x width in [0, 1])")
        if not np.all(np.isfinite(control.image)):
            raise RecipeError("the control image holds non-finite values")

    def feeds(self, feeds: Mapping[str, np.ndarray], control: ControlInput | None) -> dict[str, np.ndarray]:
        """The residual inputs for one UNet call: the ControlNet's, or zeros without a control image."""
        batch = feeds["sample"].shape[0]
        if control is None:
            return {n: np.zeros((batch, *shape), np.float32) for n, shape in self.zero_shapes.items()}
        out = self.session.run({"sample": feeds["sample"], "timestep": feeds["timestep"],
                                "encoder_hidden_states": feeds["encoder_hidden_states"],
                                COND_INPUT: np.repeat(control.image, batch, axis=0).astype(np.float32),
                                SCALE_INPUT: np.full((batch,), control.scale, np.float32)})
        return {n: out[n] for n in self.residuals}
