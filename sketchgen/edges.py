"""Edge-map sketches: Canny with the pre-processing the colour-word rule picks, or the thinned
contours of a learned detector (HED), then clean-up so the result reads like a drawing (black
strokes on white, no specks). The detector itself is a model and runs outside this package: these
functions take its probability map."""
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


SKETCH_STYLES = ("canny", "hed")


@dataclass(frozen=True)
class ContourParams:
    """The `hed` style: the detector's edge probabilities → strokes. Thresholded, thinned to
    one-pixel skeletons, specks dropped, widened to `stroke_width`."""

    threshold: float = 0.3
    stroke_width: int = 2
    # The detector runs at this side and its map is scaled to the sketch's: VGG16's cost goes with
    # the square of the side, and the model sees sketches at 160 px anyway.
    detector_size: int = 160


@dataclass(frozen=True)
class SketchSettings:
    """Both branches plus the clean-up, all configurable and all recorded per row."""

    style: str = "canny"  # canny | hed (a learned contour detector: outlines, not textures)
    contour: ContourParams = field(default_factory=ContourParams)

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


def contour_input(rgb: np.ndarray, light_item: bool, settings: SketchSettings = SketchSettings()) -> np.ndarray:
    """What the contour detector is shown: the image at `contour.detector_size`. The colour-word
    rule keeps its meaning: a light item's lightness channel goes through the light branch's CLAHE
    and equalisation (colour kept), so the few grey levels between it and its background separate."""
    size = settings.contour.detector_size
    out = rgb if rgb.shape[:2] == (size, size) else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    if light_item:
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        p = settings.light
        lightness = cv2.createCLAHE(clipLimit=p.clahe_clip, tileGridSize=(p.clahe_tile, p.clahe_tile)).apply(lab[..., 0])
        lab[..., 0] = cv2.equalizeHist(lightness) if p.equalize else lightness
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return out


def _thin_contours(probabilities: np.ndarray, shape: tuple[int, int], p: ContourParams) -> np.ndarray:
    from skimage.morphology import skeletonize

    if probabilities.shape != shape:
        probabilities = cv2.resize(probabilities.astype(np.float32), shape[::-1], interpolation=cv2.INTER_LINEAR)
    strokes = probabilities > p.threshold
    # HED answers the image's own border (its convolutions see zero padding there) with a line no
    # one would draw: the outer pixels are never strokes.
    margin = max(2, round(3 * max(shape) / p.detector_size))
    strokes[:margin], strokes[-margin:], strokes[:, :margin], strokes[:, -margin:] = False, False, False, False
    return skeletonize(strokes)


def edge_map(rgb: np.ndarray, light_item: bool, settings: SketchSettings = SketchSettings(),
             contours: np.ndarray | None = None) -> np.ndarray:
    """Boolean (H, W) map of cleaned stroke pixels. The `hed` style needs `contours`: the
    detector's probabilities for `contour_input(rgb, ...)`."""
    if settings.style == "hed":
        if contours is None:
            raise ValueError("the hed sketch style needs the contour detector's probability map")
        edges, width = _thin_contours(contours, rgb.shape[:2], settings.contour), settings.contour.stroke_width
    else:
        p = settings.light if light_item else settings.plain
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        edges, width = cv2.Canny(_preprocess(grey, p), p.canny_low, p.canny_high) > 0, settings.stroke_width
    if settings.drop_skin:
        edges = _without_skin(edges, rgb)
    if settings.min_speck_size > 1:
        edges = _remove_specks(edges, settings.min_speck_size)
    if width > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
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


def sketch_method(settings: SketchSettings, light_item: bool) -> str:
    """The shard's `sketch_method`: the style and the colour-word rule's branch in one word."""
    if settings.style == "hed":
        return "hed_light_item" if light_item else "hed"
    return "light_item" if light_item else "canny"


@lru_cache(maxsize=32)
def _params_record(settings: SketchSettings, light_item: bool) -> dict:
    common = {"method": sketch_method(settings, light_item), "style": settings.style,
              "min_speck_size": settings.min_speck_size, "drop_skin": settings.drop_skin}
    if settings.style == "hed":
        p = settings.light
        light = {"clahe_clip": p.clahe_clip, "clahe_tile": p.clahe_tile, "equalize": p.equalize} if light_item else None
        return {**common, **asdict(settings.contour), "light_preprocess": light}
    branch = settings.light if light_item else settings.plain
    return {**common, **asdict(branch), "stroke_width": settings.stroke_width}


def edge_sketch(
    rgb: np.ndarray, light_item: bool, settings: SketchSettings = SketchSettings(),
    contours: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Sketch of an RGB image: (H, W) uint8, black (0) strokes on white (255), plus the parameters
    actually used and the stroke density, for the shard's `sketch_params` / `edge_density`."""
    edges = edge_map(rgb, light_item, settings, contours)
    sketch = np.full(edges.shape, 255, np.uint8)
    sketch[edges] = 0
    density = np.count_nonzero(edges) / edges.size
    return sketch, {"params": dict(_params_record(settings, light_item)), "edge_density": float(density)}
