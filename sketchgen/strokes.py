"""Human stroke drawings (Quick, Draw! format) → sketch images like the training sketches."""
from __future__ import annotations

import cv2
import numpy as np


def render_strokes(drawing: list, size: int = 256, stroke_width: int = 2, margin: float = 0.08) -> np.ndarray:
    """Render `drawing` = [[xs, ys], ...] (any coordinate box) as black strokes on a white
    size x size canvas, centred and scaled to fit with a margin, aspect ratio kept."""
    strokes = [np.asarray(s[:2], dtype=np.float64).T for s in drawing if len(s) >= 2 and len(s[0])]
    canvas = np.full((size, size), 255, np.uint8)
    if not strokes:
        return canvas
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    extent = max(float((hi - lo).max()), 1e-6)
    scale = size * (1 - 2 * margin) / extent
    offset = (size - (hi - lo) * scale) / 2
    for s in strokes:
        xy = np.round((s - lo) * scale + offset).astype(np.int32)
        if len(xy) == 1:
            cv2.circle(canvas, tuple(int(v) for v in xy[0]), max(1, stroke_width // 2), 0, -1)
        else:
            cv2.polylines(canvas, [xy.reshape(-1, 1, 2)], False, 0, stroke_width, lineType=cv2.LINE_8)
    return canvas
