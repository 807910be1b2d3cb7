"""Benchmark `fsbir build-dataset` against a bare single-process loop on the same catalog.

    python bench/build_dataset.py CATALOG [--id-column id --caption-column productDisplayName
                                           --image-pattern 'images/{id}.jpg'] [--repeat 4]

The bare loop does only read → decode → letterbox → Canny → encode PNG/JPEG, nothing else.
fsbir runs in a subprocess with 1 and 2 workers; peak RSS is the whole process tree's, sampled.
A second, `--repeat` times larger catalog (the same images listed again under new ids) shows
whether memory grows with catalog size.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
from PIL import Image
from rich.console import Console
from rich.table import Table

from fsbir.pipelines.catalog import CatalogSpec, read_catalog 


def bare_loop(paths: list[str], size: int) -> float:
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        img = Image.open(io.BytesIO(data)).convert("RGB")
        rgb = np.asarray(img)
        h, w = rgb.shape[:2]
        s = size / max(h, w)
        r = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        t, l = (size - r.shape[0]) // 2, (size - r.shape[1]) // 2
        sq = cv2.copyMakeBorder(r, t, size - r.shape[0] - t, l, size - r.shape[1] - l, cv2.BORDER_CONSTANT, value=(255,) * 3)
        edges = cv2.Canny(cv2.cvtColor(sq, cv2.COLOR_RGB2GRAY), 60, 150)
        cv2.imencode(".png", 255 - edges)
        cv2.imencode(".jpg", sq)
    return time.perf_counter() - start


def run_fsbir(catalog: Path, out: Path, workers: int, size: int, shard_size: int) -> tuple[float, float, float]:
    """(wall seconds, run_build seconds, peak RSS MiB of the process tree) of one build-dataset run;
    run_build's time leaves out the interpreter start and imports but includes the worker pool's start."""
    code = (
        "import time; from fsbir.pipelines.build import BuildConfig, run_build; from fsbir.pipelines.catalog import CatalogSpec;"
        f"t = time.perf_counter(); run_build(BuildConfig(catalog=CatalogSpec(source={str(catalog)!r}), out_dir={str(out)!r}, workers={workers},"
        f" image_size={size}, shard_size={shard_size})); print(time.perf_counter() - t)"
    )
    start = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build-dataset failed with exit code {proc.returncode}")
    return seconds, float(proc.stdout.read().decode().strip()), peak / 2**20


def make_catalog(rows, folder: Path, repeat: int) -> tuple[Path, list[str]]:
    """Copy the images into one folder and list them `repeat` times as a JSONL catalog."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines, paths = [], []
    for r in rows:
        dst = folder / "img" / f"{r.index}{Path(r.image_path).suffix}"
        if not dst.exists():
            shutil.copyfile(r.image_path, dst)
        for k in range(repeat):
            lines.append(json.dumps({"image": f"img/{dst.name}", "caption": r.caption, "product_id": f"{r.product_id}-{k}"}))
            paths.append(str(dst))
    (folder / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "catalog.jsonl", paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("catalog")
    ap.add_argument("--id-column")
    ap.add_argument("--caption-column")
    ap.add_argument("--image-pattern")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2, help="list the catalog this many times for the timed runs")
    ap.add_argument("--large", type=int, default=4, help="size factor of the larger catalog (memory check)")
    args = ap.parse_args()
    spec = CatalogSpec(args.catalog, id_column=args.id_column, caption_column=args.caption_column,
                       image_pattern=args.image_pattern)
    rows = [r for r in read_catalog(spec) if r.status == "ok" and Path(r.image_path).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, small_paths = make_catalog(rows, tmp / "small", args.repeat)
        large, large_paths = make_catalog(rows, tmp / "large", args.repeat * args.large)
        bare_loop(small_paths[:20], args.image_size)  # warm the page cache and imports
        bare = bare_loop(small_paths, args.image_size)
        n = len(small_paths)
        table = Table(title=f"build-dataset vs bare loop — {args.catalog}, image size {args.image_size}")
        for col in ("run", "rows", "wall s", "run_build s", "rows/s", "× bare", "× bare (wall)", "peak RSS MiB"):
            table.add_column(col, justify="right" if col != "run" else "left")
        table.add_row("bare loop (1 process)", str(n), f"{bare:.2f}", f"{bare:.2f}", f"{n / bare:.1f}", "1.00", "1.00", "-")
        runs = [(f"fsbir, {w} worker(s)", small, n, w) for w in (1, 2)]
        runs.append((f"fsbir, 2 workers, ×{args.large} catalog", large, len(large_paths), 2))
        for i, (label, catalog, rows_n, workers) in enumerate(runs):
            wall, work, rss = run_fsbir(catalog, tmp / f"out-{i}", workers, args.image_size, args.shard_size)
            bare_equiv = bare * rows_n / n
            table.add_row(label, str(rows_n), f"{wall:.2f}", f"{work:.2f}", f"{rows_n / work:.1f}",
                          f"{bare_equiv / work:.2f}", f"{bare_equiv / wall:.2f}", f"{rss:.0f}")
        Console(width=150).print(table)
        print("run_build s: the build itself (reader, worker pool start, shards, manifest); wall s adds the "
              "interpreter start and imports of a fresh `fsbir` process.")


if __name__ == "__main__":
    main()
