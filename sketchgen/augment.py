"""Sketch augmentation: make clean edge maps look more like human drawings (uneven strokes,
a slightly wobbly hand, missing strokes). Pure numpy/OpenCV on (H, W) uint8 black-on-white."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class SketchAugment:
    max_stroke_width: int = 3  # strokes thickened to a random width in 1..max
    rotate_deg: float = 8.0
    scale: float = 0.08  # ± relative
    translate: float = 0.05  # ± fraction of the side
    elastic_alpha: float = 2.0  # pixels of smooth displacement; 0 disables
    stroke_dropout: float = 0.15  # probability of dropping each connected stroke
    outline: float = 0.0  # probability of keeping only the outer contour and long inner edges

    @property
    def enabled(self) -> bool:
        return any((self.max_stroke_width > 1, self.rotate_deg, self.scale, self.translate,
                    self.elastic_alpha, self.stroke_dropout, self.outline))


def outline_strokes(strokes: np.ndarray, inner_extent: float = 0.25) -> np.ndarray:
    """A 0/1 stroke mask → the outer contour of its shape plus the strokes that span at least
    `inner_extent` of the side: what a person draws of an object (its silhouette and a few long
    lines), without the texture and print an edge detector also finds."""
    h, w = strokes.shape
    k = max(3, min(h, w) // 32) | 1
    closed = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    big = [c for c in contours if cv2.contourArea(c) >= 0.01 * h * w] or list(contours)
    out = np.zeros_like(strokes)
    cv2.drawContours(out, big, -1, 1, thickness=1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    long = extent >= inner_extent * max(h, w)
    long[0] = False
    return out | long[labels].astype(np.uint8)


def augment_sketch(sketch: np.ndarray, rng: np.random.Generator, cfg: SketchAugment = SketchAugment()) -> np.ndarray:
    """One random augmentation of a black-on-white sketch; returns the same shape and dtype."""
    strokes = (sketch < 128).astype(np.uint8)
    h, w = strokes.shape
    if cfg.outline > 0 and rng.random() < cfg.outline:
        strokes = outline_strokes(strokes)
    if cfg.stroke_dropout > 0:
        n, labels = cv2.connectedComponents(strokes, connectivity=8)
        if n > 2:
            keep = rng.random(n) >= cfg.stroke_dropout
            keep[0] = False
            if keep[1:].any():
                strokes = keep[labels].astype(np.uint8)
    if cfg.rotate_deg or cfg.scale or cfg.translate:
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
        scale = 1 + rng.uniform(-cfg.scale, cfg.scale)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += rng.uniform(-cfg.translate, cfg.translate, 2) * (w, h)
        strokes = cv2.warpAffine(strokes, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    if cfg.elastic_alpha > 0:
        grid = max(2, h // 32)
        field = cv2.resize(rng.normal(0, 1, (grid, grid, 2)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        xs, ys = _pixel_grid(h, w)
        strokes = cv2.remap(strokes, xs + cfg.elastic_alpha * field[..., 0], ys + cfg.elastic_alpha * field[..., 1],
                            cv2.INTER_NEAREST, borderValue=0)
    if cfg.max_stroke_width > 1:
        width = int(rng.integers(1, cfg.max_stroke_width + 1))
        if width > 1:
            strokes = cv2.dilate(strokes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    return cv2.threshold(strokes, 0, 255, cv2.THRESH_BINARY_INV)[1]


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys
