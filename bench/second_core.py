"""What work on a second thread costs the sketching thread: the same-work loop of
`bench/build_dataset.py` alone, and with a thread beside it that does, at the pace of the rows,
what a 1-worker build does beside its sketching (GIL-free hashing of each row's file, a few tens
of µs of Python for its record), or hashes without a pause. Were the second core truly spare,
every ratio would be 1.00; the further below, the less of a worker's own work another core can hide.

    python bench/second_core.py CATALOG [--id-column id --caption-column productDisplayName
        --image-pattern 'images/{id}.jpg'] [--rows 500] [--rounds 16]
"""
from __future__ import annotations

import hashlib
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from build_dataset import catalog_parser, make_catalog, same_work_loop, usable_rows


def _hash_per_row(stop: threading.Event, data: bytes, period: float) -> None:
    while not stop.is_set():
        hashlib.sha256(data).hexdigest()
        time.sleep(period)


def _python_per_row(stop: threading.Event, seconds: float, period: float) -> None:
    while not stop.is_set():
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            pass
        time.sleep(period)


def _hash_without_pause(stop: threading.Event, data: bytes) -> None:
    while not stop.is_set():
        hashlib.sha256(data).hexdigest()


def main() -> None:
    ap = catalog_parser(__doc__)
    ap.add_argument("--rows", type=int, default=500, help="rows of each timed loop")
    ap.add_argument("--rounds", type=int, default=16, help="rounds, each running every case once in a random order")
    args = ap.parse_args()
    rows = usable_rows(args)
    with tempfile.TemporaryDirectory() as tmp:
        _, items = make_catalog(rows, Path(tmp), args.rows)
        file_bytes = Path(items[0][0]).read_bytes()
        per_row = same_work_loop(items[:50], args.image_size) / 50  # also warms the page cache
        cases = {
            "same-work loop alone": None,
            "+ a thread hashing each row's file (the read-ahead's load)": (_hash_per_row, (file_bytes, per_row)),
            "+ a thread running 40 µs of Python a row (a record's load)": (_python_per_row, (40e-6, per_row)),
            "+ a thread hashing without a pause": (_hash_without_pause, (file_bytes * 20,)),
        }
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name in random.sample(list(cases), len(cases)):
                stop = threading.Event()
                thread = None
                if cases[name] is not None:
                    target, extra = cases[name]
                    thread = threading.Thread(target=target, args=(stop, *extra), daemon=True)
                    thread.start()
                seconds[name].append(same_work_loop(items, args.image_size))
                stop.set()
                if thread is not None:
                    thread.join()
    alone = seconds["same-work loop alone"]
    table = Table(title=f"the same-work loop over {args.rows} rows of {args.catalog}, {args.rounds} rounds in random order")
    for col in ("case", "µs a row", "× alone (total)", "× alone (median round, range)"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, runs in seconds.items():
        ratios = sorted(a / s for a, s in zip(alone, runs))
        table.add_row(name, f"{sum(runs) / len(runs) / args.rows * 1e6:.0f}", f"{sum(alone) / sum(runs):.3f}",
                      f"{statistics.median(ratios):.3f} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
