"""Robust image decoding: any common photo file in, 8-bit RGB array out (or a SketchgenError)."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BAD_ASPECT, DECODE_ERROR, TOO_LARGE, TOO_SMALL, SketchgenError

# We enforce our own pixel cap from the header (before decoding), so PIL's bomb check is redundant.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MIN_SIDE = 16
# A drawing is a canvas, not a catalog photo: smaller, and never a thin strip. Both are checked
# from the header, so a few-KB PNG of 8 × 500,000 pixels is refused before it is decoded.
DRAWING_MAX_PIXELS = 4_000_000
DRAWING_MAX_ASPECT = 20.0


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a high-bit-depth array to 0..255 instead of clipping it (PIL's 'L' conversion clips)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.nan_to_num((arr - lo) * scale).astype(np.uint8)
    top = 65535 if arr.max(initial=0) > 255 else 255
    return (arr.astype(np.float64) * (255.0 / top)).round().clip(0, 255).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    )


def _open(data: bytes, max_pixels: int, min_side: int, max_aspect: float | None = None) -> Image.Image:
    """Open without decoding and check the size from the header."""
    if not data:
        raise SketchgenError(DECODE_ERROR, "empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise SketchgenError(DECODE_ERROR, "not a readable image: unknown or damaged format") from None
    except (OSError, ValueError) as exc:
        raise SketchgenError(DECODE_ERROR, f"not a readable image: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise SketchgenError(
            TOO_LARGE, f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"
        )
    if min(width, height) < min_side:
        raise SketchgenError(TOO_SMALL, f"{width}x{height} is below min_side={min_side}")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        raise SketchgenError(BAD_ASPECT, f"{width}x{height} is more than {max_aspect:g} times longer than wide")
    return img


def _decode(img: Image.Image, draft_size: int | None, grey: bool) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if draft_size and img.format == "JPEG" and img.mode in ("RGB", "L"):
                fit = draft_size / max(img.size)  # the letterbox scale: longer side → draft_size
                img.draft(img.mode, (math.ceil(img.width * fit), math.ceil(img.height * fit)))
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
                img = ImageOps.exif_transpose(img)
            if grey and img.mode in ("1", "L"):  # the common case of a stored sketch: no copy via RGB
                return np.asarray(img.convert("L"))
            rgb = _convert(img)
            return np.ascontiguousarray(rgb.min(axis=2)) if grey else rgb
    except Exception as exc:  # PIL raises many types for corrupt data
        raise SketchgenError(DECODE_ERROR, f"{type(exc).__name__}: {exc}") from None


def load_rgb(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    draft_size: int | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode image bytes to an (H, W, 3) uint8 RGB array and the original (width, height).

    Applies EXIF orientation, composites transparency on white, converts CMYK / 16-bit / grey /
    palette images to 8-bit RGB. The pixel cap is checked from the header before the full decode.
    `draft_size` lets JPEG decoding downscale in the DCT domain to no less than that size (we
    resize to it anyway; decoding 4-16x fewer pixels is the biggest saving on large photos).
    Raises SketchgenError with reason decode_error, too_large or too_small.
    """
    img = _open(data, max_pixels, min_side)
    size = img.size
    return _decode(img, draft_size, grey=False), size


def decode_sketch(data: bytes, max_pixels: int = DRAWING_MAX_PIXELS, min_side: int = 8,
                  max_aspect: float = DRAWING_MAX_ASPECT) -> np.ndarray:
    """The one decoder for a drawing, whatever door it comes in by (CLI file, eval query, web upload,
    training shard): (H, W) uint8, dark strokes on white.

    Transparency (RGBA, LA, palette) is flattened on white and 16-bit input scaled, as for photos;
    the darkest channel becomes the grey level, so a stroke in any saturated colour stays dark.
    Raises SketchgenError (decode_error, too_large, too_small, bad_aspect).
    """
    return _decode(_open(data, max_pixels, min_side, max_aspect), None, grey=True)


def _convert(img: Image.Image) -> np.ndarray:
    if _has_alpha(img):
        return np.asarray(_composite_on_white(img))
    if img.mode == "RGB":
        return np.asarray(img)
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV", "P", "L", "1"):
        return np.asarray(img.convert("RGB"))
    arr = np.asarray(img)  # I;16*, I, F and other high-bit-depth modes
    grey = _to_uint8(arr)
    if grey.ndim == 2:
        grey = np.repeat(grey[:, :, None], 3, axis=2)
    return np.ascontiguousarray(grey[:, :, :3])
