"""The terminal front end: progress bars, result tables and one-line summaries around each
command's library function. Only the CLI and the quickstart import it.

The retrieval functions (torch, the model library) are imported by the commands that run them, so
`fsbir build-dataset` starts without loading torch."""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from fsbir import FsbirError
from fsbir.retrieval.configs import EvalConfig, IndexConfig, ProbeConfig
from fsbir.retrieval.training import TrainConfig
from fsbir.shardformat import STATUS_OK, count_ok_rows
from fsbir.sketchgen import SketchgenError, decode_sketch

from .build import BuildConfig, BuildSummary, prepare_build
from .catalog import count_catalog_rows

console = Console(stderr=True)


@contextmanager
def row_progress(description: str, total: int | None, unit: str = "rows") -> Iterator:
    """A progress bar with a rate column; yields a function advance(n). The bar appears at the
    first advance, so an error raised before any work is the only thing printed."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
    task = progress.add_task(description, total=total, rate="", start=False)

    def advance(n: int) -> None:
        if not progress.live.is_started:
            progress.start()
            progress.start_task(task)
        progress.advance(task, n)
        t = progress.tasks[task]
        if t.elapsed:
            progress.update(task, rate=f"{t.completed / t.elapsed:.1f} {unit}/s")

    try:
        yield advance
    finally:
        if progress.live.is_started:
            progress.stop()


def status_table(title: str, counts: dict[str, int], total: int) -> Table:
    table = Table(title=title)
    table.add_column("status")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for status, n in sorted(counts.items(), key=lambda kv: (kv[0] != STATUS_OK, -kv[1])):
        table.add_row(status, str(n), f"{n / total:.1%}" if total else "-")
    table.add_row("[bold]total", f"[bold]{total}", "")
    return table


def build_with_progress(config: BuildConfig) -> BuildSummary:
    """run_build with a progress bar and a summary table."""
    total = count_catalog_rows(config.catalog)
    if total is not None and config.limit is not None:
        total = min(total, config.limit)
    build = prepare_build(config)
    with row_progress("build-dataset", total) as advance:
        summary = build.run(on_rows=advance)
    console.print(status_table(f"{summary.inputs} input rows → {summary.out_dir}", summary.by_status, summary.inputs))
    console.print(
        f"sketch branch: {summary.by_method}  ok rows by split: {summary.by_split}  "
        f"shards written {summary.shards_written} (redone after catalog changes {summary.shards_redone}), "
        f"already done {summary.shards_skipped}  "
        f"({summary.seconds:.1f}s)"
    )
    if not summary.passed:
        console.print(f"[red]build-dataset: {summary.message}")
    return summary


def train_with_progress(cfg: TrainConfig, resume: bool = False) -> dict:
    """train() with a progress bar and a line per epoch; under torchrun, only rank 0 draws them."""
    from fsbir.retrieval.training import train
    from fsbir.retrieval.training.distributed import launched_world

    if not launched_world().is_main:
        return train(cfg, resume=resume)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console)
    state = {"task": None, "epoch": -1, "seen": 0}

    def on_features(rows: int, total: int) -> None:
        if state["task"] is None:
            state["task"] = progress.add_task("locked-tower features", total=total, detail="cached once per run")
        progress.update(state["task"], advance=rows)

    def on_step(r: dict) -> None:
        if r["epoch"] != state["epoch"]:
            if state["task"] is not None:
                progress.remove_task(state["task"])
            state.update(epoch=r["epoch"], seen=0, t0=time.perf_counter(),
                         task=progress.add_task(f"epoch {r['epoch'] + 1}", total=r["steps_per_epoch"], detail=""))
        state["seen"] += r["samples"]
        rate = state["seen"] / max(1e-9, time.perf_counter() - state["t0"])
        progress.update(state["task"], advance=1,
                        detail=f"loss {r['loss']:.3f}  lr {r['lr']:.2e}  {rate:.0f} samples/s")

    def on_epoch(r: dict) -> None:
        line = f"epoch {r['epoch']}: train loss {r['train_loss']:.3f}, {r['samples_per_s']:.0f} samples/s"
        if "val" in r:
            modes = r["val"]["modes"]
            k = r["val"]["k"]
            line += "  val R@{}: ".format(k) + ", ".join(f"{m} {v[f'R@{k}']:.3f}" for m, v in modes.items())
            if "human" in r["val"]:
                sketch = r["val"]["human"]["modes"]["sketch"]
                line += "  drawings: " + ", ".join(f"{m} {v:.3f}" for m, v in sketch.items() if m.startswith(("R@", "P@")))
        progress.console.print(line)

    with progress:
        record = train(cfg, resume=resume, on_step=on_step, on_epoch=on_epoch, on_features=on_features)
    if record:
        console.print(f"checkpoints: {cfg.out}/checkpoints/last.pt, best.pt   metrics: {cfg.out}/metrics.jsonl")
    else:
        console.print(f"stopped before the end of an epoch: {cfg.out}/checkpoints/last.pt (continue with --resume)")
    return record


def eval_with_progress(cfg: EvalConfig) -> dict:
    from fsbir.retrieval.evaluate import by_category_table, results_table, run_eval

    with row_progress(f"embedding {cfg.split}", count_ok_rows(cfg.shards, cfg.split), unit="items") as advance:
        result = run_eval(cfg, on_batch=advance)
    console.print(results_table(result))
    if "by_category" in result:
        console.print(by_category_table(result))
    if cfg.json_path:
        console.print(f"wrote {cfg.json_path}")
    return result


def index_with_progress(cfg: IndexConfig) -> dict:
    from fsbir.retrieval.index import build_index

    with row_progress("indexing photos", count_ok_rows(cfg.shards, cfg.split), unit="photos") as advance:
        meta = build_index(cfg, on_batch=advance)
    console.print(f"indexed {meta['count']} photos ({meta['index_type']}, dim {meta['dim']}) → {cfg.out}")
    attrs = meta["catalog_attributes"]
    for head in ("colour", "category"):
        if attrs[f"{head}_column"]:
            console.print(f"{head}: the catalog's {attrs[f'{head}_column']!r} for {attrs[f'{head}_rows']} photos, "
                          f"the head's guess for {meta['count'] - attrs[f'{head}_rows']}")
    return meta


@dataclass(frozen=True, kw_only=True)
class SearchRequest:
    index_dir: str
    sketch: str | None = None
    text: str | None = None
    k: int = 10
    json_out: bool = False
    grid: str | None = None
    checkpoint: str | None = None
    nprobe: int | None = None
    ef_search: int | None = None
    device: str = "cpu"


def run_search(req: SearchRequest) -> list:
    from fsbir.retrieval.figures import result_grid
    from fsbir.retrieval.index import SearchEngine, results_json

    sketch = read_sketch_file(req.sketch) if req.sketch else None
    engine = SearchEngine(req.index_dir, req.checkpoint, req.device, req.nprobe, req.ef_search)
    results = engine.search(sketch, req.text, req.k)
    if req.json_out:
        print(json.dumps(results_json(results), ensure_ascii=False, indent=2))
    else:
        table = Table(title=f"top {len(results)} of {len(engine)}")
        for col in ("rank", "product_id", "caption", "score"):
            table.add_column(col, justify="right" if col in ("rank", "score") else "left")
        for r in results:
            table.add_row(str(r.rank), r.product_id, r.caption or "", f"{r.score:.3f}")
        console.print(table)
    if req.grid:
        result_grid(sketch, req.text, results, engine.image_bytes).save(req.grid)
        console.print(f"wrote {req.grid}")
    return results


def read_sketch_file(path: str):
    """A drawing from a file, decoded like every sketch; a missing or unreadable file is an FsbirError."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 * 1024 * 1024 + 1)
    except OSError as exc:
        raise FsbirError(f"cannot read the sketch {path}: {exc.strerror or exc}") from None
    try:
        return decode_sketch(data)
    except SketchgenError as exc:
        raise FsbirError(f"sketch {path}: {exc.reason}: {exc}") from None


def probe_with_table(cfg: ProbeConfig) -> dict:
    """run_probe, printed as one table of probes beside their base rates."""
    from fsbir.retrieval.probe import run_probe

    result = run_probe(cfg)
    table = Table(title=f"probes on the {result['split']} split — gallery {result['gallery_size']}, k={result['k']}")
    for col in ("probe", "measure", "value", "base rate", "ceiling"):
        table.add_column(col, justify="left" if col in ("probe", "measure") else "right")
    for probe in ("colour_swap", "text_colour", "caption_ablation", "brand_words"):
        values = result[probe]
        for name, value in values.items():
            if "_P@" in name:
                measure = name.split("_P@")[0]
                base, ceiling = values.get(f"{measure}_base_rate"), values.get(f"{measure}_ceiling")
                table.add_row(probe, name, f"{value:.3f}", "" if base is None else f"{base:.3f}",
                              "" if ceiling is None else f"{ceiling:.3f}")
    console.print(table)
    return result
