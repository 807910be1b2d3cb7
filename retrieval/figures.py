"""Result grids: the query (sketch and caption) followed by the top-k photos with captions and scores."""
from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _tile(img: Image.Image, lines: list[str], tile: int, font, border=(200, 200, 200)) -> Image.Image:
    text_h = 16 * len(lines) + 6
    canvas = Image.new("RGB", (tile, tile + text_h), "white")
    thumb = img.convert("RGB")
    thumb.thumbnail((tile - 8, tile - 8))
    canvas.paste(thumb, ((tile - thumb.width) // 2, (tile - thumb.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, tile - 1, tile - 1], outline=border)
    for i, line in enumerate(lines):
        draw.text((4, tile + 3 + 16 * i), line, fill="black", font=font)
    return canvas


def result_grid(sketch: np.ndarray | None, text: str | None, results: list, image_of, tile: int = 160,
                per_row: int = 6) -> Image.Image:
    """`results`: SearchResult-like (rank, product_id, caption, score, row); image_of(row) → JPEG bytes."""
    label_font = font(12)
    wrap = max(10, tile // 7)
    query_img = Image.fromarray(sketch) if sketch is not None else Image.new("L", (tile, tile), 255)
    query_lines = ["QUERY" + ("" if sketch is not None else " (no sketch)")]
    query_lines += textwrap.wrap(f'"{text}"', wrap)[:2] if text else ["(no text)"]
    tiles = [_tile(query_img, query_lines, tile, label_font, border=(220, 60, 60))]
    for r in results:
        cap = textwrap.wrap(r.caption or "", wrap)[:2] or [""]
        lines = [f"#{r.rank}  {r.score:.3f}  {r.product_id}"[: wrap + 4]] + cap
        tiles.append(_tile(Image.open(io.BytesIO(image_of(r.row))), lines, tile, label_font))
    h = max(t.height for t in tiles)
    rows = (len(tiles) + per_row - 1) // per_row
    cols = min(per_row, len(tiles))
    grid = Image.new("RGB", (cols * (tile + 6) + 6, rows * (h + 6) + 6), (245, 245, 245))
    for i, t in enumerate(tiles):
        grid.paste(t, (6 + (i % per_row) * (tile + 6), 6 + (i // per_row) * (h + 6)))
    return grid
