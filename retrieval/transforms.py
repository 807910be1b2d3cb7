"""Photos and sketches → model input tensors, with the model's own size and normalisation."""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch

from fsbir.sketchgen import letterbox, load_rgb
from fsbir.sketchgen.geometry import crop_to_content

from .factory import Preprocess


def decode_photo(data: bytes, size: int) -> np.ndarray:
    """A shard's photo → RGB array; JPEG decodes at no less than `size` (we resize to it anyway)."""
    return load_rgb(data, draft_size=size)[0]


@lru_cache(maxsize=8)
def _mean_std(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def _normalise(rgb: np.ndarray, pp: Preprocess) -> torch.Tensor:
    x = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255)
    mean, std = _mean_std(tuple(pp.mean), tuple(pp.std))
    return (x - mean) / std


def photo_tensor(rgb: np.ndarray, pp: Preprocess) -> torch.Tensor:
    if pp.crop_to_content:
        rgb = crop_to_content(rgb)
    return _normalise(letterbox(rgb, pp.image_size), pp)


def sketch_tensor(sketch: np.ndarray, pp: Preprocess) -> torch.Tensor:
    """Black-on-white (H, W) sketch → (3, S, S). Strokes are thickened in proportion to the
    downscale first, so a 1-pixel line at 256 px is still a dark line at the model's size."""
    if pp.crop_to_content:
        sketch = crop_to_content(sketch)
    side = max(sketch.shape[:2])
    factor = side / pp.image_size
    if factor >= 1.5:
        k = int(math.floor(factor))
        sketch = cv2.erode(sketch, np.ones((k, k), np.uint8))  # erode white = thicken black
    grey = letterbox(sketch, pp.image_size)
    return _normalise(np.repeat(grey[:, :, None], 3, axis=2), pp)
