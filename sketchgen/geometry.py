"""Square letterboxing, so a photo and its sketch share one pixel grid."""
from __future__ import annotations

import cv2
import numpy as np


def letterbox(rgb: np.ndarray, size: int, border: str = "white") -> np.ndarray:
    """Resize keeping aspect ratio and pad to size x size.

    border="white" pads with white (the stored photo); border="replicate" repeats the edge pixels,
    which is what the edge detector sees so the seam between photo and padding draws no line.
    """
    return letterbox_pair(rgb, size)[0 if border == "white" else 1]


def letterbox_pair(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(white-padded, edge-replicated) letterboxes of one resize: the photo and the edge input."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = rgb if (new_w, new_h) == (w, h) else cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    bottom, right = size - new_h - top, size - new_w - left
    if new_w == new_h == size:  # already square: nothing to pad
        return resized, resized
    replicated = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_REPLICATE)
    white = np.full_like(replicated, 255)
    white[top: top + new_h, left: left + new_w] = resized
    return white, replicated
