"""build-dataset throughput and memory against bare loops run side by side:

- same-work loop: read each file and run the same required per-row work as a shard row (decode with
  JPEG draft, letterbox, colour-word rule, CLAHE / equalise, blur, Canny, speck removal, 1-bit PNG and
  JPEG encode: `sketchgen.make_pair`), in one process, writing nothing. Its ratio is the framework's
  own cost (catalog reading, hashing, records, Parquet, stats, the worker pool).
- the same-work loop with cv2 on one thread, in 1 and in 2 processes: what one core does, and
  how far this machine scales with no framework at all (the ceiling for "2 workers × 1 worker").
- skip-steps loop: decode, letterbox, plain Canny and encode only (no CLAHE, speck removal, hashing,
  Parquet). It decodes at full size where `make_pair` uses JPEG draft, so on large photos it is
  slower than the same-work loop, not a floor.

    python bench/build_dataset.py CATALOG [--id-column id --caption-column productDisplayName
        --image-pattern 'images/{id}.jpg'] [--rows 24000] [--memory-rows 10000 100000]
        [--repeats 3]

The catalog's images are listed again and again (new product ids) up to --rows.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import shutil
import statistics
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
from fsbir.sketchgen import make_pair
from fsbir.sketchgen.pair import PairSettings


def skip_steps_loop(items: list[tuple[str, str]], size: int) -> float:
    start = time.perf_counter()
    for path, _ in items:
        with open(path, "rb") as fh:
            data = fh.read()
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        h, w = rgb.shape[:2]
        s = size / max(h, w)
        r = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        t, l = (size - r.shape[0]) // 2, (size - r.shape[1]) // 2
        sq = cv2.copyMakeBorder(r, t, size - r.shape[0] - t, l, size - r.shape[1] - l, cv2.BORDER_CONSTANT,
                                value=(255,) * 3)
        edges = cv2.Canny(cv2.cvtColor(sq, cv2.COLOR_RGB2GRAY), 60, 150)
        cv2.imencode(".png", 255 - edges)
        cv2.imencode(".jpg", sq)
    return time.perf_counter() - start


def same_work_loop(items: list[tuple[str, str]], size: int) -> float:
    settings = PairSettings(image_size=size)
    start = time.perf_counter()
    for path, caption in items:
        with open(path, "rb") as fh:
            data = fh.read()
        make_pair(data, caption, settings)
    return time.perf_counter() - start


def _one_thread_loop(items: list[tuple[str, str]], size: int) -> float:
    cv2.setNumThreads(1)
    return same_work_loop(items, size)


def one_thread_loops(items: list[tuple[str, str]], size: int, processes: int) -> float:
    """Seconds for `processes` fresh processes, cv2 on one thread each, to run the same-work loop
    over an equal part of the items: the machine's own scaling, with no framework at all."""
    parts = [items[i::processes] for i in range(processes)]
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.starmap(_one_thread_loop, [(p[:20], size) for p in parts])  # imports and page cache, untimed
        start = time.perf_counter()
        pool.starmap(_one_thread_loop, [(p, size) for p in parts])
        return time.perf_counter() - start


def _peak_rss(pid: int) -> int | None:
    """The process's own peak resident set (VmHWM, bytes), read from /proc; None where that is not there."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_fsbir(catalog: Path, out: Path, workers: int, size: int, shard_size: int) -> tuple[float, float]:
    """(run_build seconds, peak RSS MiB of the process tree) of one build in a fresh process;
    run_build's time leaves out the interpreter start and imports but includes the worker pool's.
    Each process's own peak (VmHWM) is read once a second and the peaks are summed, so the
    watching takes no share of the cores worth measuring (polling the tree's RSS 20 times a
    second took 3 % of a core) and misses no peak (an upper bound: the peaks need not coincide)."""
    code = (
        "import time; from fsbir.pipelines.build import BuildConfig, run_build; "
        "from fsbir.pipelines.catalog import CatalogSpec; t = time.perf_counter(); "
        f"run_build(BuildConfig(catalog=CatalogSpec(source={str(catalog)!r}), out_dir={str(out)!r}, "
        f"workers={workers}, image_size={size}, shard_size={shard_size})); print(time.perf_counter() - t)"
    )
    proc = psutil.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        try:
            for p in [proc, *proc.children(recursive=True)]:
                peak = _peak_rss(p.pid) or p.memory_info().rss
                peaks[p.pid] = max(peaks.get(p.pid, 0), peak)
        except psutil.Error:
            pass
        time.sleep(1.0)
    if proc.returncode != 0:
        raise SystemExit(f"build-dataset failed with exit code {proc.returncode}")
    return float(proc.stdout.read().decode().strip()), sum(peaks.values()) / 2**20


def make_catalog(rows, folder: Path, n: int) -> tuple[Path, list[tuple[str, str]]]:
    """Copy the images into one folder and list them round-robin until n rows, as a JSONL catalog."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    sources = []
    for r in rows:
        dst = folder / "img" / f"{r.index}{Path(r.image_path).suffix}"
        if not dst.exists():
            shutil.copyfile(r.image_path, dst)
        sources.append((dst, r.caption))
    items = []
    with open(folder / "catalog.jsonl", "w") as fh:
        for i in range(n):
            dst, caption = sources[i % len(sources)]
            fh.write(json.dumps({"image": f"img/{dst.name}", "caption": caption, "product_id": f"p{i}"}) + "\n")
            items.append((str(dst), caption))
    return folder / "catalog.jsonl", items


def catalog_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every build bench takes: the catalog, how to read it, the image size."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("catalog")
    ap.add_argument("--id-column")
    ap.add_argument("--caption-column")
    ap.add_argument("--image-pattern")
    ap.add_argument("--image-size", type=int, default=256)
    return ap


def usable_rows(args: argparse.Namespace) -> list:
    """The catalog's rows that are ok and whose image file is there."""
    spec = CatalogSpec(args.catalog, id_column=args.id_column, caption_column=args.caption_column,
                       image_pattern=args.image_pattern)
    return [r for r in read_catalog(spec) if r.status == "ok" and Path(r.image_path).exists()]


def main() -> None:
    ap = catalog_parser(__doc__)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=24_000, help="rows of the timed runs")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every timed run (the machine's speed drifts)")
    ap.add_argument("--memory-rows", type=int, nargs="*", default=[], help="catalog sizes of the peak-RSS runs (2 workers)")
    args = ap.parse_args()
    rows = usable_rows(args)
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        catalog, items = make_catalog(rows, tmp / "timed", args.rows)
        same_work_loop(items[:50], args.image_size)  # warm the page cache and imports
        runs: dict[str, list[float]] = {}
        rss: dict[int, float] = {}
        for _ in range(args.repeats):  # interleaved, so slow drift of the machine hits every run alike
            runs.setdefault("same", []).append(same_work_loop(items, args.image_size))
            runs.setdefault("skip", []).append(skip_steps_loop(items, args.image_size))
            for processes in (1, 2):
                runs.setdefault(f"loop{processes}", []).append(one_thread_loops(items, args.image_size, processes))
            for workers in (1, 2):
                seconds, peak = run_fsbir(catalog, tmp / f"out-{workers}", workers, args.image_size, args.shard_size)
                runs.setdefault(workers, []).append(seconds)
                rss[workers] = max(rss.get(workers, 0.0), peak)
                shutil.rmtree(tmp / f"out-{workers}")
        n = len(items)

        def ratio(num, den) -> str:
            """Median over repeats of the ratio within each repeat, with its range."""
            r = sorted(d / m for m, d in zip(runs[num], runs[den]))
            return f"{statistics.median(r):.2f}" + (f" ({r[0]:.2f}–{r[-1]:.2f})" if len(r) > 1 else "")

        table = Table(title=f"build-dataset, {n} rows of {args.catalog} at {args.image_size} px, "
                            f"median of {args.repeats} interleaved repeats (range)")
        for col in ("run", "seconds", "rows/s", "× same-work loop", "× skip-steps loop", "× 1 worker",
                    "× 1-thread loops, same processes", "peak RSS MiB"):
            table.add_column(col, justify="right" if col != "run" else "left")
        names = {"same": "same-work loop (1 process, cv2 threads)", "skip": "skip-steps loop (1 process)",
                 "loop1": "same-work loop, cv2 on 1 thread", "loop2": "same, 2 processes (machine's scaling)",
                 1: "fsbir, 1 worker", 2: "fsbir, 2 workers"}
        for key, name in names.items():
            seconds = statistics.median(runs[key])
            table.add_row(name, f"{seconds:.1f}", f"{n / seconds:.0f}", ratio(key, "same"), ratio(key, "skip"),
                          ratio(key, 1) if key in (1, 2) else ratio(key, "loop1") if key == "loop2" else "",
                          ratio(key, f"loop{key}") if key in (1, 2) else "", f"{rss[key]:.0f}" if key in rss else "")
        console.print(table)
        if args.memory_rows:
            mem = Table(title="peak RSS of the build's process tree (2 workers) as the catalog grows")
            for col in ("rows", "seconds", "rows/s", "peak RSS MiB"):
                mem.add_column(col, justify="right")
            for m in args.memory_rows:
                big, _ = make_catalog(rows, tmp / f"mem-{m}", m)
                seconds, rss = run_fsbir(big, tmp / f"mem-out-{m}", 2, args.image_size, args.shard_size)
                mem.add_row(f"{m:,}", f"{seconds:.1f}", f"{m / seconds:.0f}", f"{rss:.0f}")
                shutil.rmtree(tmp / f"mem-out-{m}")
            console.print(mem)


if __name__ == "__main__":
    main()
