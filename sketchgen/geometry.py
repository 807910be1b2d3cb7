"""Square letterboxing, so a photo and its sketch share one pixel grid; the one letterbox for
shard building, model inputs and query drawings alike."""
from __future__ import annotations

import cv2
import numpy as np


def _fit(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Resize keeping aspect ratio so the longer side is `size`; (resized, (top, bottom, left, right))."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = img if (new_w, new_h) == (w, h) else cv2.resize(img, (new_w, new_h), interpolation=interp)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return resized, (top, size - new_h - top, left, size - new_w - left)


def _pad_white(resized: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    h, w = resized.shape[:2]
    out = np.full((h + top + bottom, w + left + right) + resized.shape[2:], 255, resized.dtype)
    out[top: top + h, left: left + w] = resized
    return out


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) uint8 image keeping aspect ratio and pad it with white to
    size x size."""
    resized, pads = _fit(img, size)
    return resized if not any(pads) else _pad_white(resized, pads)


def letterbox_pair(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(white-padded, edge-replicated) letterboxes of one resize: the stored photo, and what the edge
    detector sees, where repeating the edge pixels draws no line at the seam with the padding."""
    resized, pads = _fit(rgb, size)
    if not any(pads):
        return resized, resized
    return _pad_white(resized, pads), cv2.copyMakeBorder(resized, *pads, cv2.BORDER_REPLICATE)
