"""`fsbir quickstart`: the whole pipeline on the built-in demo catalog, with default settings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .build import BuildConfig, build_dataset
from .catalog import CatalogSpec
from .console import console
from .demo_catalog import write_demo_catalog


@dataclass(frozen=True)
class QuickstartConfig:
    out_dir: str = "runs/quickstart"
    n: int = 3000
    seed: int = 0
    workers: int = 2


def run_quickstart(config: QuickstartConfig) -> dict:
    out = Path(config.out_dir)
    catalog = out / "catalog"
    if not (catalog / "metadata.jsonl").exists():
        console.print(f"[bold]1. demo catalog[/] → {catalog} ({config.n} items)")
        write_demo_catalog(catalog, n=config.n, seed=config.seed)
    shards = out / "shards"
    console.print(f"[bold]2. build-dataset[/] → {shards}")
    summary = build_dataset(BuildConfig(CatalogSpec(str(catalog)), str(shards), workers=config.workers))
    console.print(f"\nshards: {shards}/shard-*.parquet   manifest: {shards}/manifest.json")
    return {"catalog": str(catalog), "shards": str(shards), "build": summary}
