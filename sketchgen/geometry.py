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


def crop_to_content(img: np.ndarray, margin: float = 0.04) -> np.ndarray:
    """The image cut to the box around its content, plus `margin` of the box's longer side, so a
    doodle that fills its canvas and a product that fills a third of its photo are framed alike.
    Content: a sketch's dark strokes; in a photo, pixels unlike the colour of its border. An image
    with no content is returned whole."""
    if img.ndim == 2:
        mask = img < 128
    else:
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        background = np.median(border, axis=0)
        mask = (np.abs(img.astype(np.int16) - background.astype(np.int16)) > 24).any(axis=2)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return img
    h, w = mask.shape
    pad = round(margin * max(ys.max() - ys.min(), xs.max() - xs.min()))
    return img[max(0, ys.min() - pad): min(h, ys.max() + pad + 1), max(0, xs.min() - pad): min(w, xs.max() + pad + 1)]
