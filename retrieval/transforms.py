"""Photos and sketches → model input tensors, with the model's own size and normalisation."""
from __future__ import annotations

import io
import math
from functools import lru_cache

import cv2
import numpy as np
import torch
from PIL import Image

from .factory import Preprocess


def decode_photo(data: bytes, size: int) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # DCT-domain downscale: we resize to `size` anyway
    return np.asarray(img.convert("RGB"))


def decode_sketch(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def fit_square(arr: np.ndarray, size: int, fill: int = 255) -> np.ndarray:
    """Letterbox onto a white square first if the input is not square, then resize."""
    h, w = arr.shape[:2]
    if h != w:
        side = max(h, w)
        canvas = np.full((side, side) + arr.shape[2:], fill, arr.dtype)
        canvas[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = arr
        arr = canvas
    if arr.shape[0] != size:
        arr = cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA if arr.shape[0] > size else cv2.INTER_CUBIC)
    return arr


@lru_cache(maxsize=8)
def _mean_std(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def _normalise(rgb: np.ndarray, pp: Preprocess) -> torch.Tensor:
    x = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255)
    mean, std = _mean_std(tuple(pp.mean), tuple(pp.std))
    return (x - mean) / std


def photo_tensor(rgb: np.ndarray, pp: Preprocess) -> torch.Tensor:
    return _normalise(fit_square(rgb, pp.image_size), pp)


def sketch_tensor(sketch: np.ndarray, pp: Preprocess) -> torch.Tensor:
    """Black-on-white (H, W) sketch → (3, S, S). Strokes are thickened in proportion to the
    downscale first, so a 1-pixel line at 256 px is still a dark line at the model's size."""
    side = max(sketch.shape[:2])
    factor = side / pp.image_size
    if factor >= 1.5:
        k = int(math.floor(factor))
        sketch = cv2.erode(sketch, np.ones((k, k), np.uint8))  # erode white = thicken black
    grey = fit_square(sketch, pp.image_size)
    return _normalise(np.repeat(grey[:, :, None], 3, axis=2), pp)
