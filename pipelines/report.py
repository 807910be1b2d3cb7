"""`fsbir report`: pictures a person would rather look at than read.

- a shards folder → a contact sheet: photos beside their sketches for each sketch branch, the
  failures by reason, and (with queries) human drawings beside them, so the gap between edge maps
  and drawings shows by eye;
- a run folder → training curves: the loss per step and per epoch, validation R@k per query mode
  and, when training had --val-queries, the drawings' score.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fsbir import FsbirError
from fsbir.retrieval.figures import font
from fsbir.shardformat import STATUS_OK, iter_shard_rows
from fsbir.sketchgen import decode_sketch
from fsbir.sketchgen.strokes import render_strokes

TILE = 128
GAP = 6
MODE_COLOURS = {"sketch": (200, 60, 60), "text": (60, 110, 200), "sketch+text": (40, 150, 80), "drawings": (150, 80, 170),
                "step": (150, 150, 150), "epoch mean": (230, 120, 20)}


def _thumb(img: Image.Image, size: int = TILE) -> Image.Image:
    canvas = Image.new("RGB", (size, size), "white")
    img = img.convert("RGB")
    img.thumbnail((size, size))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def _row(title: str, tiles: list[Image.Image], width: int) -> Image.Image:
    row = Image.new("RGB", (width, TILE + 24), (250, 250, 250))
    ImageDraw.Draw(row).text((GAP, 4), title, fill="black", font=font(13))
    for i, tile in enumerate(tiles):
        row.paste(tile, (GAP + i * (TILE + GAP), 22))
    return row


def _text_block(lines: list[str], width: int) -> Image.Image:
    block = Image.new("RGB", (width, 18 * len(lines) + 10), (250, 250, 250))
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(lines):
        draw.text((GAP, 5 + 18 * i), line, fill="black", font=font(13))
    return block


def _drawings(path: str, n: int) -> list[Image.Image]:
    """Up to n human drawings from a queries CSV or Quick, Draw! ndjson file/folder."""
    p = Path(path)
    out: list[Image.Image] = []
    if p.suffix.lower() == ".csv":
        import csv

        with open(p, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                ref = (p.parent / row["sketch"]).resolve()
                if ref.is_relative_to(p.parent.resolve()) and ref.is_file():
                    out.append(Image.fromarray(decode_sketch(ref.read_bytes())))
                if len(out) == n:
                    break
        return out
    for f in sorted(p.glob("*.ndjson")) if p.is_dir() else [p]:
        for line in f.read_text(encoding="utf-8").splitlines()[:1]:  # one per category file
            out.append(Image.fromarray(render_strokes(json.loads(line)["drawing"], 256, 3)))
        if len(out) == n:
            break
    return out


def contact_sheet(shards: str, per_row: int = 4, queries: str | None = None) -> Image.Image:
    """Photo | sketch pairs of the first rows of each sketch branch, failures by reason, and
    human drawings when given."""
    groups: dict[str, list[Image.Image]] = {}
    failures: dict[str, int] = {}
    for r in iter_shard_rows(shards, columns=["status", "sketch_method", "image", "sketch"]):
        if r["status"] != STATUS_OK:
            failures[r["status"]] = failures.get(r["status"], 0) + 1
            continue
        tiles = groups.setdefault(r["sketch_method"], [])
        if len(tiles) < 2 * per_row:
            tiles.append(_thumb(Image.open(io.BytesIO(r["image"]["bytes"]))))
            tiles.append(_thumb(Image.open(io.BytesIO(r["sketch"]["bytes"]))))
    if not groups:
        raise FsbirError(f"{shards} has no ok rows to show")
    width = GAP + 2 * per_row * (TILE + GAP)
    parts = [_text_block([f"contact sheet of {shards}: photo | edge-map sketch, by sketch branch"], width)]
    parts += [_row(f"branch {method}", tiles, width) for method, tiles in sorted(groups.items())]
    if queries:
        drawn = [_thumb(d) for d in _drawings(queries, 2 * per_row)]
        parts.append(_row(f"human drawings ({Path(queries).name})", drawn, width))
    lines = [f"failed rows: {n} {status}" for status, n in sorted(failures.items(), key=lambda kv: -kv[1])]
    parts.append(_text_block(lines or ["failed rows: none"], width))
    sheet = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height
    return sheet


def _panel(title: str, series: dict[str, list[tuple[float, float]]], size=(520, 300)) -> Image.Image:
    """A line chart of named (x, y) series with its y range written on the axis."""
    w, h = size
    left, right, top, bottom = 48, 12, 28, 28
    panel = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(panel)
    draw.text((left, 6), title, fill="black", font=font(13))
    points = [p for s in series.values() for p in s]
    if not points:
        draw.text((left, h // 2), "no data", fill="grey", font=font(13))
        return panel
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
    y0, y1 = ys.min(), max(ys.max(), ys.min() + 1e-6)
    draw.rectangle([left, top, w - right, h - bottom], outline=(180, 180, 180))
    for value, y in ((y1, top), (y0, h - bottom)):
        draw.text((4, y - 7), f"{value:.3g}", fill="black", font=font(11))
    draw.text((left, h - bottom + 6), f"{x0:g}", fill="black", font=font(11))
    draw.text((w - right - 30, h - bottom + 6), f"{x1:g}", fill="black", font=font(11))

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    for i, (name, s) in enumerate(series.items()):
        colour = MODE_COLOURS.get(name, (90, 90, 90))
        px = [to_px(x, y) for x, y in s]
        if len(px) > 1:
            draw.line(px, fill=colour, width=2)
        for x, y in px:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((w - right - 110, top + 4 + 14 * i), name, fill=colour, font=font(11))
    return panel


def training_curves(run: str) -> Image.Image:
    """Loss per step and epoch, validation R@k per mode, and the drawings' score when present."""
    folder = Path(run)
    metrics_path = folder / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FsbirError(f"{folder} has no metrics.jsonl: give a run folder written by `fsbir train`")
    epochs = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    steps_path = folder / "steps.jsonl"
    steps = [json.loads(line) for line in steps_path.read_text().splitlines() if line.strip()] if steps_path.is_file() else []
    loss = {"step": [(s["step"], s["loss"]) for s in steps], "epoch mean": [(e["step"], e["train_loss"]) for e in epochs]}
    val: dict[str, list[tuple[float, float]]] = {}
    k = None
    for e in epochs:
        if "val" not in e:
            continue
        k = e["val"]["k"]
        for mode, values in e["val"]["modes"].items():
            val.setdefault(mode, []).append((e["epoch"], values[f"R@{k}"]))
        if "human" in e["val"]:
            sketch = e["val"]["human"]["modes"]["sketch"]
            score = sketch.get(f"R@{k}", sketch.get(f"P@{k}_category"))
            val.setdefault("drawings", []).append((e["epoch"], score))
    panels = [_panel("training loss (by step)", loss), _panel(f"validation R@{k or '-'} by epoch", val)]
    sheet = Image.new("RGB", (sum(p.width for p in panels) + GAP * 3, max(p.height for p in panels) + 2 * GAP), (245, 245, 245))
    x = GAP
    for p in panels:
        sheet.paste(p, (x, GAP))
        x += p.width + GAP
    return sheet


def write_report(path: str, out: str, queries: str | None = None) -> str:
    """A run folder (metrics.jsonl) gives training curves, a shards folder a contact sheet; returns which."""
    kind = "curves" if (Path(path) / "metrics.jsonl").is_file() else "sheet"
    image = training_curves(path) if kind == "curves" else contact_sheet(path, queries=queries)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return kind
