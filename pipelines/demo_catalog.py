"""The built-in demo catalog: synthetic garments on white, in the Hugging Face imagefolder layout.

Deterministic per seed. Items come in families: a base item, a sibling that differs only in colour
and a sibling that differs only in shape variant, plus per-item geometry jitter that only a sketch
can see. So neither the sketch alone (blind to colour) nor the caption alone (blind to the exact
silhouette, and sometimes silent about pattern or length) can single out an item.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 248),
    "ivory": (246, 242, 226),
    "cream": (240, 232, 208),
    "light gray": (214, 214, 214),
    "sky blue": (160, 205, 238),
    "pale pink": (244, 208, 214),
    "black": (30, 30, 32),
    "navy": (28, 40, 92),
    "red": (196, 30, 40),
    "green": (40, 130, 60),
    "yellow": (238, 200, 40),
    "brown": (120, 78, 44),
    "orange": (236, 120, 30),
    "purple": (110, 50, 140),
}
PATTERNS = ("solid", "stripes", "check", "dots")
PATTERN_WORDS = {"solid": "plain", "stripes": "striped", "check": "checked", "dots": "polka-dot"}

# category -> its shape variants; the variant word appears in captions ("a long ivory trouser").
VARIANTS: dict[str, tuple[str, str]] = {
    "t-shirt": ("short", "long"),
    "shirt": ("short", "long"),
    "trousers": ("long", "short"),
    "shorts": ("short", "long"),
    "skirt": ("mini", "maxi"),
    "dress": ("mini", "maxi"),
    "coat": ("long", "short"),
    "bag": ("tote", "clutch"),
    "shoe": ("sneaker", "boot"),
    "hat": ("cap", "brimmed"),
}
SLEEVED = {"t-shirt", "shirt", "coat"}
NOUNS = {"trousers": "trouser", "shorts": "shorts", "bag": "bag", "shoe": "shoe", "hat": "hat"}


@dataclass(frozen=True)
class DemoItem:
    product_id: str
    category: str
    variant: str
    colour: str
    pattern: str
    jitter_seed: int


def _outline(category: str, variant: str, rng: random.Random) -> list[list[tuple[float, float]]]:
    """Polygons (unit square coordinates) of one garment; the jitter is what only a sketch shows."""
    wx = rng.uniform(0.85, 1.15)
    hy = rng.uniform(0.9, 1.08)
    flare = rng.uniform(-0.05, 0.05)

    def x(v: float) -> float:
        return 0.5 + (v - 0.5) * wx

    def y(v: float) -> float:
        return 0.5 + (v - 0.5) * hy

    def pts(seq):
        return [(x(a), y(b)) for a, b in seq]

    if category in SLEEVED:
        hem = {"t-shirt": 0.82, "shirt": 0.86, "coat": 0.95 if variant == "long" else 0.68}[category]
        long_sleeve = variant == "long" or category == "coat"
        cuff = 0.78 if long_sleeve else 0.42
        sx = 0.08 if long_sleeve else 0.12
        body = [(0.42, 0.14), (0.24, 0.2), (sx, cuff - 0.04), (sx + 0.1, cuff), (0.28, 0.38),
                (0.28 - flare, hem), (0.72 + flare, hem), (0.72, 0.38), (0.9 - sx + 0.1 - 0.1 + (0.0), cuff),
                (1 - sx, cuff - 0.04), (0.76, 0.2), (0.58, 0.14), (0.5, 0.22 if category == "t-shirt" else 0.3)]
        polys = [pts(body)]
        if category in ("shirt", "coat"):
            polys.append(pts([(0.42, 0.14), (0.5, 0.3), (0.46, 0.34 if category == "coat" else 0.22)]))
            polys.append(pts([(0.58, 0.14), (0.5, 0.3), (0.54, 0.34 if category == "coat" else 0.22)]))
        return polys
    if category in ("trousers", "shorts"):
        if category == "trousers":
            hem = 0.94 if variant == "long" else 0.66
        else:
            hem = 0.42 if variant == "short" else 0.55
        return [pts([(0.3, 0.1), (0.7, 0.1), (0.76 + flare, hem), (0.54, hem), (0.5, 0.32),
                     (0.46, hem), (0.24 - flare, hem)])]
    if category == "skirt":
        hem = 0.55 if variant == "mini" else 0.92
        spread = 0.12 if variant == "mini" else 0.2
        return [pts([(0.36, 0.15), (0.64, 0.15), (0.64 + spread + flare, hem), (0.36 - spread - flare, hem)])]
    if category == "dress":
        hem = 0.6 if variant == "mini" else 0.94
        spread = 0.14 if variant == "mini" else 0.22
        return [pts([(0.4, 0.06), (0.44, 0.06), (0.46, 0.16), (0.54, 0.16), (0.56, 0.06), (0.6, 0.06),
                     (0.63, 0.4), (0.6 + spread + flare, hem), (0.4 - spread - flare, hem), (0.37, 0.4)])]
    if category == "bag":
        if variant == "tote":
            return [pts([(0.22, 0.4), (0.78, 0.4), (0.82 + flare, 0.88), (0.18 - flare, 0.88)]),
                    pts([(0.34, 0.4), (0.38, 0.16), (0.62, 0.16), (0.66, 0.4), (0.6, 0.4), (0.57, 0.22),
                         (0.43, 0.22), (0.4, 0.4)])]
        return [pts([(0.14, 0.4), (0.86, 0.4), (0.86, 0.68 + flare), (0.14, 0.68 + flare)]),
                pts([(0.14, 0.4), (0.86, 0.4), (0.5, 0.56)])]
    if category == "shoe":
        if variant == "sneaker":
            return [pts([(0.1, 0.55), (0.32, 0.5), (0.5, 0.58), (0.88, 0.62), (0.92, 0.72),
                         (0.9, 0.78), (0.1, 0.78)])]
        return [pts([(0.3, 0.12), (0.56, 0.12), (0.58, 0.55), (0.86, 0.64), (0.9, 0.78), (0.26, 0.78),
                     (0.28, 0.4 + flare)])]
    if category == "hat":
        if variant == "cap":
            crown = [(0.5 + 0.26 * np.cos(t), 0.56 - 0.3 * np.sin(t)) for t in np.linspace(0, np.pi, 24)]
            return [pts(crown), pts([(0.7, 0.56), (0.94 + flare, 0.6), (0.9, 0.64), (0.5, 0.6)])]
        crown = [(0.5 + 0.2 * np.cos(t), 0.56 - 0.3 * np.sin(t)) for t in np.linspace(0, np.pi, 24)]
        return [pts(crown), pts([(0.1 - flare, 0.56), (0.9 + flare, 0.56), (0.86, 0.64), (0.14, 0.64)])]
    raise ValueError(f"unknown category {category!r}")


def _pattern_colour(rgb: tuple[int, int, int]) -> np.ndarray:
    base = np.array(rgb, dtype=np.float32)
    return base * 0.55 if base.mean() > 110 else base + (255 - base) * 0.55


def render_item(item: DemoItem, size: int = 256) -> np.ndarray:
    """Pure drawing: (size, size, 3) uint8 photo of one item, shaded, on white."""
    rng = random.Random(item.jitter_seed)
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    polys = _outline(item.category, item.variant, rng)
    for poly in polys:
        draw.polygon([(px * size, py * size) for px, py in poly], fill=255)
    mask = np.asarray(mask_img, dtype=np.float32) / 255.0

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.array(COLOURS[item.colour], dtype=np.float32)
    cloth = np.broadcast_to(base, (size, size, 3)).copy()
    period = rng.uniform(0.06, 0.1)
    if item.pattern == "stripes":
        on = (yy % period) < period * 0.45
    elif item.pattern == "check":
        on = ((yy % period) < period * 0.3) | ((xx % period) < period * 0.3)
    elif item.pattern == "dots":
        on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period * 0.22) ** 2
    else:
        on = np.zeros((size, size), dtype=bool)
    cloth[on] = _pattern_colour(COLOURS[item.colour])
    # Soft light from the upper left and a darker fold line: shading without drawn outlines, so a
    # white garment stays low-contrast against the white background, as in real product photos.
    light_dir = rng.uniform(0.6, 1.0)
    shade = 0.9 + 0.08 * (1 - (xx * light_dir + yy) / 2) - 0.04 * np.exp(-((xx - 0.5) ** 2) / 0.002)
    cloth *= shade[:, :, None]
    background = np.full((size, size, 3), 255.0, dtype=np.float32)
    photo = background * (1 - mask[:, :, None]) + cloth * mask[:, :, None]
    noise = np.random.default_rng(item.jitter_seed).normal(0, 1.5, photo.shape)
    return np.clip(photo + noise, 0, 255).astype(np.uint8)


CAPTION_TEMPLATES = (
    "a {variant} {colour} {noun}",
    "{colour} {pattern} {noun} {detail}",
    "{pattern} {noun} in {colour}",
    "{colour} {noun}, {variant}",
    "{variant} {pattern} {colour} {noun}",
    "women's {colour} {noun}",
)


def caption_for(item: DemoItem, rng: random.Random) -> str:
    noun = NOUNS.get(item.category, item.category)
    detail = f"with {item.variant} sleeves" if item.category in ("t-shirt", "shirt") else f"({item.variant})"
    template = rng.choice(CAPTION_TEMPLATES)
    text = template.format(
        variant=item.variant, colour=item.colour, noun=noun, detail=detail,
        pattern=PATTERN_WORDS[item.pattern],
    )
    return " ".join(text.split())


def demo_items(n: int, seed: int = 0) -> list[DemoItem]:
    """n items in families of (base, other colour, other variant), deterministic per seed."""
    rng = random.Random(seed)
    items: list[DemoItem] = []
    categories = list(VARIANTS)
    colours = list(COLOURS)
    while len(items) < n:
        category = rng.choice(categories)
        variant = rng.choice(VARIANTS[category])
        colour, pattern = rng.choice(colours), rng.choice(PATTERNS)
        other_colour = rng.choice([c for c in colours if c != colour])
        other_variant = next(v for v in VARIANTS[category] if v != variant)
        for c, v in ((colour, variant), (other_colour, variant), (colour, other_variant)):
            if len(items) < n:
                items.append(DemoItem(f"demo-{len(items):06d}", category, v, c, pattern, rng.getrandbits(32)))
    return items


def write_demo_catalog(out_dir: str | os.PathLike, n: int = 500, seed: int = 0, size: int = 256) -> Path:
    """Write images/*.jpg and metadata.jsonl (imagefolder layout); returns the folder."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    lines = []
    for item in demo_items(n, seed):
        file_name = f"images/{item.product_id}.jpg"
        Image.fromarray(render_item(item, size)).save(out / file_name, quality=92)
        lines.append(json.dumps({
            "file_name": file_name,
            "product_id": item.product_id,
            "caption": caption_for(item, rng),
            "category": item.category,
            "colour": item.colour,
            "pattern": item.pattern,
            "length": item.variant,
        }))
    tmp = out / "metadata.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out / "metadata.jsonl")
    return out
