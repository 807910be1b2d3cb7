"""Terminal front-ends for training and evaluation: progress bars and result tables."""
from __future__ import annotations

import json
from dataclasses import dataclass

from pipelines.console import console, row_progress

from .evaluate import EvalConfig, results_table, run_eval
from .train import TrainConfig, train


def train_with_progress(cfg: TrainConfig, resume: bool = False) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}  {task.fields[rate]}"),
                        TimeElapsedColumn(), console=console)
    state = {"task": None, "epoch": -1, "seen": 0}
    import time

    def on_step(r: dict) -> None:
        if r["epoch"] != state["epoch"]:
            if state["task"] is not None:
                progress.remove_task(state["task"])
            state.update(epoch=r["epoch"], seen=0, t0=time.perf_counter(),
                         task=progress.add_task("train", total=r["steps_per_epoch"], epoch=r["epoch"] + 1,
                                                loss=0.0, lr=0.0, rate=""))
        state["seen"] += r["samples"]
        rate = state["seen"] / max(1e-9, time.perf_counter() - state["t0"])
        progress.update(state["task"], advance=1, loss=r["loss"], lr=r["lr"], rate=f"{rate:.0f} samples/s")

    def on_epoch(r: dict) -> None:
        line = f"epoch {r['epoch']}: train loss {r['train_loss']:.3f}, {r['samples_per_s']:.0f} samples/s"
        if "val" in r:
            modes = r["val"]["modes"]
            k = r["val"]["k"]
            line += "  val R@{}: ".format(k) + ", ".join(f"{m} {v[f'R@{k}']:.3f}" for m, v in modes.items())
        progress.console.print(line)

    with progress:
        record = train(cfg, resume=resume, on_step=on_step, on_epoch=on_epoch)
    console.print(f"checkpoints: {cfg.out}/checkpoints/last.pt, best.pt   metrics: {cfg.out}/metrics.jsonl")
    return record


def eval_with_progress(cfg: EvalConfig) -> dict:
    from retrieval.data import count_rows

    with row_progress(f"embedding {cfg.split}", count_rows(cfg.shards, cfg.split), unit="items") as advance:
        result = run_eval(cfg, on_batch=advance)
    console.print(results_table(result))
    if cfg.json_path:
        console.print(f"wrote {cfg.json_path}")
    return result


def index_with_progress(cfg) -> dict:
    from retrieval.data import count_rows
    from retrieval.index import build_index

    with row_progress("indexing photos", count_rows(cfg.shards, cfg.split), unit="photos") as advance:
        meta = build_index(cfg, on_batch=advance)
    console.print(f"indexed {meta['count']} photos ({meta['index_type']}, dim {meta['dim']}) → {cfg.out}")
    return meta


@dataclass(frozen=True)
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
    from rich.table import Table

    from retrieval.figures import result_grid
    from retrieval.index import SearchEngine
    from retrieval.transforms import decode_sketch

    engine = SearchEngine(req.index_dir, req.checkpoint, req.device, req.nprobe, req.ef_search)
    sketch = None
    if req.sketch:
        try:
            sketch = decode_sketch(open(req.sketch, "rb").read())
        except OSError as exc:
            raise ValueError(f"cannot read sketch {req.sketch}: {exc}") from None
    results = engine.search(sketch, req.text, req.k)
    if req.json_out:
        print(json.dumps({"results": [{"rank": r.rank, "product_id": r.product_id, "caption": r.caption,
                                       "score": r.score} for r in results]}, ensure_ascii=False, indent=2))
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
