"""`fsbir quickstart`: the whole pipeline on the built-in demo catalog, with default settings."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fsbir.retrieval.configs import EvalConfig, IndexConfig
from fsbir.retrieval.training import TrainConfig
from fsbir.shardformat import STATUS_OK, iter_shard_rows

from .build import BuildConfig
from .catalog import CatalogSpec
from .demo_catalog import write_demo_catalog
from .terminal import (SearchRequest, build_with_progress, console, eval_with_progress, index_with_progress,
                       run_search, train_with_progress)


@dataclass(frozen=True, kw_only=True)
class QuickstartConfig:
    out_dir: str = "runs/quickstart"
    n: int = 3000
    seed: int = 0
    workers: int = 2
    # `fsbir train`'s own defaults: the pretrained towers, locked on a CPU, their features cached.
    model: str = TrainConfig.__dataclass_fields__["model"].default
    epochs: int = TrainConfig.__dataclass_fields__["epochs"].default
    batch_size: int = TrainConfig.__dataclass_fields__["batch_size"].default


def run_quickstart(config: QuickstartConfig) -> dict:
    out = Path(config.out_dir)
    catalog = out / "catalog"
    if not (catalog / "metadata.jsonl").exists():
        console.print(f"[bold]1. demo catalog[/] → {catalog} ({config.n} items)")
        write_demo_catalog(catalog, n=config.n, seed=config.seed)
    shards = out / "shards"
    console.print(f"[bold]2. build-dataset[/] → {shards}")
    build = build_with_progress(BuildConfig(catalog=CatalogSpec(source=str(catalog)), out_dir=str(shards),
                                            workers=config.workers))
    run = out / "run"
    console.print(f"[bold]3. train[/] {config.model} → {run}")
    train_cfg = TrainConfig(shards=str(shards), out=str(run), model=config.model, epochs=config.epochs,
                            batch_size=config.batch_size, workers=1, seed=config.seed, category_column="category")
    started = (run / "checkpoints" / "last.pt").exists()
    if not (started and _epochs_done(run) >= config.epochs):
        train_with_progress(train_cfg, resume=started)
    # The demo catalog lists each item's colour and category: the index takes them, and the eval scores
    # the test split the same way, so its numbers are the served index's.
    console.print("[bold]4. eval[/] on the test split")
    result = eval_with_progress(EvalConfig(shards=str(shards), checkpoint=str(run), split="test", k=10,
                                           category_column="category", colour_column="colour",
                                           catalog_attributes=True, json_path=str(out / "eval.json")))
    index_dir = out / "index"
    console.print(f"[bold]5. index[/] all demo photos, with the catalog's colours and categories → {index_dir}")
    index_with_progress(IndexConfig(shards=str(shards), checkpoint=str(run), out=str(index_dir),
                                    colour_column="colour", category_column="category"))
    grid = out / "search-grid.png"
    query = _test_item(shards)
    sketch_file = out / "query-sketch.png"
    sketch_file.write_bytes(query["sketch"]["bytes"])
    console.print(f"[bold]6. search[/] with the sketch of test item {query['product_id']} + its caption → {grid}")
    run_search(SearchRequest(index_dir=str(index_dir), sketch=str(sketch_file), text=query["caption"], k=5,
                             grid=str(grid)))
    console.print(f"\ncatalog {catalog}\nshards  {shards}\nrun     {run}\neval    {out / 'eval.json'}\n"
                  f"index   {index_dir}\ngrid    {grid}\n"
                  f"try:    fsbir serve {index_dir}   (then open http://127.0.0.1:8000/)")
    return {"catalog": str(catalog), "shards": str(shards), "build": build, "run": str(run), "eval": result,
            "index": str(index_dir), "grid": str(grid)}


def _test_item(shards: Path) -> dict:
    """The first ok test-split row: a query the model never trained on."""
    return next(r for r in iter_shard_rows(shards) if r["status"] == STATUS_OK and r["split"] == "test")


def _epochs_done(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return max((l["epoch"] for l in lines), default=0)
