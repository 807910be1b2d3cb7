"""Edge-map sketches: Canny with the pre-processing the colour-word rule picks, then clean-up
so the result reads like a drawing (black strokes on white, no specks)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class EdgeParams:
    """Settings of one branch: median → CLAHE → (equalise) → Gaussian blur → Canny."""

    median_ksize: int = 0
    clahe_clip: float = 2.0
    clahe_tile: int = 8
    equalize: bool = False
    blur_ksize: int = 5
    blur_sigma: float = 0.0
    canny_low: int = 60
    canny_high: int = 150


@dataclass(frozen=True)
class SketchSettings:
    """Both branches plus the clean-up, all configurable and all recorded per row."""

    plain: EdgeParams = field(default_factory=EdgeParams)
    # Light item on a light background: equalisation stretches the few grey levels separating
    # garment and background; it also amplifies sensor/JPEG noise, so a median filter goes first and
    # a wider blur and higher thresholds follow.
    light: EdgeParams = field(
        default_factory=lambda: EdgeParams(
            median_ksize=5, clahe_clip=2.0, equalize=True, blur_ksize=7, canny_low=110, canny_high=230
        )
    )
    min_speck_size: int = 12
    stroke_width: int = 1
    # Apparel is photographed worn, and a doodle of a T-shirt has no face, arms or legs in it: drop
    # the edges on and around skin-coloured regions and draw the garment's seam with them instead.
    drop_skin: bool = False


def _preprocess(grey: np.ndarray, p: EdgeParams) -> np.ndarray:
    out = cv2.medianBlur(grey, p.median_ksize) if p.median_ksize > 1 else grey
    out = cv2.createCLAHE(clipLimit=p.clahe_clip, tileGridSize=(p.clahe_tile, p.clahe_tile)).apply(out)
    if p.equalize:
        out = cv2.equalizeHist(out)
    return cv2.GaussianBlur(out, (p.blur_ksize, p.blur_ksize), p.blur_sigma) if p.blur_ksize > 1 else out


def edge_map(rgb: np.ndarray, light_item: bool, settings: SketchSettings = SketchSettings()) -> np.ndarray:
    """Boolean (H, W) map of cleaned stroke pixels."""
    p = settings.light if light_item else settings.plain
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(_preprocess(grey, p), p.canny_low, p.canny_high) > 0
    if settings.drop_skin:
        edges = _without_skin(edges, rgb)
    if settings.min_speck_size > 1:
        edges = _remove_specks(edges, settings.min_speck_size)
    if settings.stroke_width > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (settings.stroke_width, settings.stroke_width))
        edges = cv2.dilate(edges.astype(np.uint8), kernel) > 0
    return edges


# Skin in YCrCb (Chai and Ngan's box), over a wide range of skin tones; Y > 40 leaves out shadows.
SKIN_CR, SKIN_CB, SKIN_MIN_Y = (135, 173), (77, 127), 40
# Skin-coloured pixels beyond this share of the item are the item itself (tan leather, a beige
# dress), not a person wearing it: such photos keep every edge.
MAX_SKIN_SHARE = 0.5


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) 0/1 map of skin-coloured regions, specks opened away and gaps closed."""
    y, cr, cb = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb))
    mask = ((cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])
            & (y > SKIN_MIN_Y)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))


def _without_skin(edges: np.ndarray, rgb: np.ndarray, bg_tolerance: int = 24) -> np.ndarray:
    """Edges with the person taken out: none on or next to skin, plus the seam where the garment
    meets the skin (a sleeve's hem, a neckline), which the removal would otherwise open. The
    background is the colour of the image's border; the garment is what is neither."""
    skin = skin_mask(rgb)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.abs(rgb.astype(np.int16) - np.median(border, axis=0)).max(axis=2) < bg_tolerance
    foreground = np.count_nonzero(~background)
    if not skin.any() or np.count_nonzero(skin.astype(bool) & ~background) > MAX_SKIN_SHARE * foreground:
        return edges
    near_skin = cv2.dilate(skin, np.ones((5, 5), np.uint8)) > 0
    garment = (~near_skin & ~background).astype(np.uint8)
    garment_rim = cv2.erode(garment, np.ones((3, 3), np.uint8)) == 0
    seam = (cv2.dilate(skin, np.ones((7, 7), np.uint8)) > 0) & (garment > 0) & garment_rim
    return (edges & ~near_skin) | seam


def _remove_specks(edges: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected stroke components smaller than min_size pixels (what scikit-image's
    remove_small_objects does, via OpenCV's labelling, which is several times faster)."""
    # 16-bit labels are enough while the image cannot hold 65535 separate components (size/4).
    ltype = cv2.CV_16U if edges.size <= 4 * 65535 else cv2.CV_32S
    _, labels, stats, _ = cv2.connectedComponentsWithStats(edges.view(np.uint8), connectivity=8, ltype=ltype)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # background
    if keep[1:].all():
        return edges
    return keep[labels]


@lru_cache(maxsize=32)
def _params_record(settings: SketchSettings, light_item: bool) -> dict:
    branch = settings.light if light_item else settings.plain
    return {"method": "light_item" if light_item else "canny", **asdict(branch),
            "min_speck_size": settings.min_speck_size, "stroke_width": settings.stroke_width,
            "drop_skin": settings.drop_skin}


def edge_sketch(
    rgb: np.ndarray, light_item: bool, settings: SketchSettings = SketchSettings()
) -> tuple[np.ndarray, dict]:
    """Sketch of an RGB image: (H, W) uint8, black (0) strokes on white (255), plus the parameters
    actually used and the stroke density, for the shard's `sketch_params` / `edge_density`."""
    edges = edge_map(rgb, light_item, settings)
    sketch = np.full(edges.shape, 255, np.uint8)
    sketch[edges] = 0
    density = np.count_nonzero(edges) / edges.size
    return sketch, {"params": dict(_params_record(settings, light_item)), "edge_density": float(density)}
