"""Square letterboxing, so a photo and its sketch share one pixel grid."""
from __future__ import annotations

import cv2
import numpy as np


def letterbox(rgb: np.ndarray, size: int, border: str = "white") -> np.ndarray:
    """Resize keeping aspect ratio and pad to size x size.

    border="white" pads with white (the stored photo); border="replicate" repeats the edge pixels,
    which is what the edge detector sees so the seam between photo and padding draws no line.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    bottom, right = size - new_h - top, size - new_w - left
    if border == "replicate":
        return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))
