"""Per-row cost of the sketch styles on one core, side by side on the same photos: the Canny style
(`make_pair`, the baseline) against the hed style (decode and letterbox, the HED detector at
--hed-size in batches of --batch, thinning, encode), at each detector size asked for.

    python bench/sketch_styles.py CATALOG [--id-column id --caption-column productDisplayName
        --image-pattern 'images/{id}.jpg'] [--image-size 256] [--rows 64] [--sizes 128 160 256] [--batch 8]

One thread (torch and OpenCV), as a build worker runs with one worker per core; the rows/s of a
build with N workers is about N times this on N free cores.
"""
from __future__ import annotations

import time
from dataclasses import replace

import cv2
import torch
from rich.console import Console
from rich.table import Table

from fsbir.retrieval.hed import ContourDetector
from fsbir.sketchgen import ContourParams, SketchSettings, detector_input, finish_pair, make_pair, prepare_pair
from fsbir.sketchgen.pair import PairSettings

from build_dataset import catalog_parser, usable_rows


def canny_seconds(images: list[tuple[bytes, str]], settings: PairSettings) -> float:
    start = time.perf_counter()
    for data, caption in images:
        make_pair(data, caption, settings)
    return time.perf_counter() - start


def hed_seconds(images: list[tuple[bytes, str]], settings: PairSettings, detector: ContourDetector, batch: int) -> dict:
    """Seconds in all, and in the detector alone."""
    start, in_detector = time.perf_counter(), 0.0
    for i in range(0, len(images), batch):
        prepared = [prepare_pair(data, caption, settings) for data, caption in images[i:i + batch]]
        t = time.perf_counter()
        maps = detector([detector_input(p, settings) for p in prepared])
        in_detector += time.perf_counter() - t
        for p, m in zip(prepared, maps):
            finish_pair(p, settings, m)
    return {"total": time.perf_counter() - start, "detector": in_detector}


def main() -> None:
    ap = catalog_parser(__doc__)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 256])
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images = []
    for row in usable_rows(args)[:args.rows]:
        with open(row.image_path, "rb") as fh:
            images.append((fh.read(), row.caption))
    base = PairSettings(image_size=args.image_size)
    detector = ContourDetector(threads=1)
    canny = canny_seconds(images, base)
    table = Table(title=f"sketch styles, {len(images)} photos, one core")
    for column in ("style", "rows/s", "× canny time", "detector share"):
        table.add_column(column, justify="right")
    table.add_row("canny (baseline)", f"{len(images) / canny:.1f}", "1.0", "")
    for size in args.sizes:
        settings = replace(base, sketch=SketchSettings(style="hed", contour=ContourParams(detector_size=size)))
        hed_seconds(images[:args.batch], settings, detector, args.batch)  # warm-up
        t = hed_seconds(images, settings, detector, args.batch)
        table.add_row(f"hed at {size} px", f"{len(images) / t['total']:.1f}", f"{t['total'] / canny:.1f}",
                      f"{t['detector'] / t['total']:.0%}")
    Console().print(table)


if __name__ == "__main__":
    main()
