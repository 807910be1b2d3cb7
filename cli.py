"""The `fsbir` command line: parses options into config objects and calls one function each."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="fsbir: search a fashion catalog by drawing an item and adding a few words.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _words(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if value is None else tuple(w.strip() for w in value.split(",") if w.strip())


@app.command("demo-catalog")
def demo_catalog(
    out: Path = typer.Argument(..., help="Folder to write (imagefolder layout: images/ + metadata.jsonl)."),
    n: int = typer.Option(500, "--n", help="Number of items."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same catalog."),
    size: int = typer.Option(256, help="Image side in pixels."),
) -> None:
    """Write the synthetic demo catalog: garments in colours, patterns and shape variants."""
    from pipelines.demo_catalog import write_demo_catalog

    folder = write_demo_catalog(out, n=n, seed=seed, size=size)
    typer.echo(f"wrote {n} items to {folder} (metadata.jsonl)")


@app.command("build-dataset")
def build_dataset(
    catalog: str = typer.Argument(..., help="Catalog: imagefolder dir, .csv/.jsonl table, .parquet file/dir, or hf:NAME_OR_PATH."),
    out: Path = typer.Argument(..., help="Output folder for shard-NNNNN.parquet, stats and manifest.json."),
    format: str = typer.Option("auto", "--format", help="auto|imagefolder|csv|jsonl|parquet|hf (auto sniffs the path)."),
    image_column: Optional[str] = typer.Option(None, help="Column with image paths (relative to the table) or bytes."),
    caption_column: Optional[str] = typer.Option(None, help="Column with the caption (default: caption/text/...)."),
    id_column: Optional[str] = typer.Option(None, help="Column with the product id (default: product_id/id, else file name)."),
    image_pattern: Optional[str] = typer.Option(None, help="Image path built from columns, e.g. 'images/{id}.jpg'."),
    hf_split: str = typer.Option("train", help="Split to read for hf: catalogs."),
    image_size: int = typer.Option(256, help="Side of the letterboxed square photo and sketch."),
    shard_size: int = typer.Option(1000, help="Rows per shard."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes (1 = in this process)."),
    max_pixels: int = typer.Option(40_000_000, help="Images above this many pixels are rejected as too_large (read from the header)."),
    min_side: int = typer.Option(16, help="Images with a side below this are rejected as too_small."),
    light_words: Optional[str] = typer.Option(None, help="Comma-separated light-colour words that replace the default list."),
    canny_low: int = typer.Option(60, help="Canny low threshold, plain branch."),
    canny_high: int = typer.Option(150, help="Canny high threshold, plain branch."),
    light_canny_low: int = typer.Option(110, help="Canny low threshold, light-item branch."),
    light_canny_high: int = typer.Option(230, help="Canny high threshold, light-item branch."),
    stroke_width: int = typer.Option(1, help="Dilate strokes to this width in pixels."),
    min_speck_size: int = typer.Option(12, help="Remove stroke fragments smaller than this many pixels."),
    val_fraction: float = typer.Option(0.1, help="Share of products in the val split."),
    test_fraction: float = typer.Option(0.1, help="Share of products in the test split."),
    max_failure_ratio: float = typer.Option(0.5, help="Exit 1 when more than this share of rows fail."),
    limit: Optional[int] = typer.Option(None, help="Only the first N catalog rows."),
) -> None:
    """Turn a caption-tagged catalog into Parquet shards of photo / edge-map sketch / caption rows.

    Re-running the same command resumes: finished shards are skipped.
    """
    from dataclasses import replace

    from pipelines.build import BuildConfig, build_dataset as run
    from pipelines.catalog import CatalogError, CatalogSpec
    from sketchgen import DEFAULT_LIGHT_WORDS, SketchSettings

    defaults = SketchSettings()
    config = BuildConfig(
        catalog=CatalogSpec(catalog, format, image_column, caption_column, id_column, image_pattern, hf_split),
        out_dir=str(out),
        image_size=image_size,
        shard_size=shard_size,
        workers=workers,
        max_pixels=max_pixels,
        min_side=min_side,
        light_words=_words(light_words) or DEFAULT_LIGHT_WORDS,
        sketch=SketchSettings(
            plain=replace(defaults.plain, canny_low=canny_low, canny_high=canny_high),
            light=replace(defaults.light, canny_low=light_canny_low, canny_high=light_canny_high),
            min_speck_size=min_speck_size,
            stroke_width=stroke_width,
        ),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_failure_ratio=max_failure_ratio,
        limit=limit,
    )
    try:
        summary = run(config)
    except CatalogError as exc:
        _fail(str(exc))
    raise typer.Exit(0 if summary.passed else 1)


@app.command()
def train(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, metrics.jsonl, checkpoints/{last,best}.pt."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of training settings; options given here override it."),
    model: Optional[str] = typer.Option(None, help="Shipped config (fsbir-tiny, fsbir-tiny-minilm), open_clip name (ViT-B-32) or a JSON config file. [default: fsbir-tiny]"),
    pretrained: Optional[str] = typer.Option(None, help="open_clip tag (laion2b_s34b_b79k, openai), a local checkpoint file, or none. [default: none]"),
    fusion: Optional[str] = typer.Option(None, help="avg | concat | gated. [default: avg]"),
    sketch_tower: Optional[str] = typer.Option(None, help="shared (photos and sketches through one vision tower) | separate. [default: shared]"),
    epochs: Optional[int] = typer.Option(None, help="[default: 10]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: 64]"),
    lr: Optional[float] = typer.Option(None, help="Learning rate of new parts; pretrained towers use lr × tower_lr_scale. [default: 1e-3]"),
    accum_steps: Optional[int] = typer.Option(None, help="Gradient accumulation steps. [default: 1]"),
    seed: Optional[int] = typer.Option(None, help="[default: 0]"),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes. [default: 2]"),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps."),
    category_column: Optional[str] = typer.Option(None, help="Gallery column for category precision in validation."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N. [default: auto]"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
) -> None:
    """Train the sketch+text → photo retrieval model with InfoNCE on the shards' train split."""
    from retrieval.train import load_config
    from retrieval.runner import train_with_progress

    overrides = dict(shards=shards, out=str(out), model=model, pretrained=pretrained, fusion=fusion,
                     sketch_tower=sketch_tower, epochs=epochs, batch_size=batch_size, lr=lr, accum_steps=accum_steps,
                     seed=seed, workers=workers, max_steps=max_steps, category_column=category_column, device=device)
    try:
        cfg = load_config(str(config) if config else None, overrides)
        train_with_progress(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:
        from retrieval.factory import ModelLoadError

        if isinstance(exc, ModelLoadError):
            _fail(str(exc))
        raise


@app.command("eval")
def evaluate(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset."),
    checkpoint: Optional[str] = typer.Option(None, help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    model: str = typer.Option("fsbir-tiny", help="Model to evaluate untuned when no --checkpoint is given."),
    pretrained: str = typer.Option("none", help="Weights for the untuned model: open_clip tag, local file, or none."),
    split: str = typer.Option("test", help="train | val | test | all."),
    k: int = typer.Option(10, "--k", help="K of Recall@K and P@K."),
    category_column: Optional[str] = typer.Option(None, help="Gallery column for category precision@K (e.g. articleType)."),
    queries: Optional[str] = typer.Option(None, help="Human drawings: a CSV (sketch + product_id|category), or Quick, Draw! .ndjson file/folder."),
    query_text: Optional[str] = typer.Option(None, help="Text added to every human query (a CSV 'text' column wins; '{word}' is a Quick, Draw! drawing's word)."),
    category_map: Optional[Path] = typer.Option(None, help="JSON mapping a query category to a list of gallery categories."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
    batch_size: int = typer.Option(128),
    device: str = typer.Option("auto"),
) -> None:
    """Recall@1/5/K, MRR and median rank for sketch, text and sketch+text queries."""
    from retrieval.evaluate import EvalConfig
    from retrieval.runner import eval_with_progress

    if not checkpoint and pretrained == "none":
        typer.secho("note: no --checkpoint and --pretrained none: evaluating a randomly initialised model", err=True)
    cfg = EvalConfig(shards, checkpoint, model, pretrained, split, k, batch_size, category_column, queries, query_text,
                     str(category_map) if category_map else None, str(json_path) if json_path else None, device)
    try:
        eval_with_progress(cfg)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        _fail(str(exc))


@app.command()
def index(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset (the gallery)."),
    checkpoint: str = typer.Option(..., help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    out: Path = typer.Option(..., "--out", help="Index folder to write."),
    split: str = typer.Option("all", help="Which split's photos to index: all | train | val | test."),
    index_type: str = typer.Option("flat", help="flat (exact inner product) | ivf | hnsw (approximate, for large galleries)."),
    nlist: int = typer.Option(0, help="IVF lists (0: about 4·sqrt(N))."),
    hnsw_m: int = typer.Option(32, help="HNSW graph degree."),
    batch_size: int = typer.Option(128),
    device: str = typer.Option("auto"),
) -> None:
    """Embed the gallery photos and write embeddings, metadata, a faiss index and the model's fingerprint."""
    from retrieval.index import IndexConfig
    from retrieval.runner import index_with_progress

    try:
        index_with_progress(IndexConfig(shards, checkpoint, str(out), split, index_type, nlist, hnsw_m, batch_size, device))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    sketch: Optional[Path] = typer.Option(None, help="Sketch image file (dark strokes on a light background)."),
    text: Optional[str] = typer.Option(None, help="A few words, e.g. 'a long ivory trouser'."),
    k: int = typer.Option(10, "--k", help="Number of results."),
    json_out: bool = typer.Option(False, "--json", help="Print {\"results\": [...]} as JSON instead of a table."),
    grid: Optional[Path] = typer.Option(None, help="Write a PNG: the query, then the top-k photos with captions and scores."),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the one the index was built with)."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit (approximate indexes)."),
    ef_search: Optional[int] = typer.Option(None, help="HNSW search breadth (approximate indexes)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Search the index with a sketch, a text, or both."""
    from retrieval.runner import SearchRequest, run_search

    if sketch is None and not text:
        _fail("give --sketch FILE, --text '...', or both")
    try:
        run_search(SearchRequest(str(index_dir), str(sketch) if sketch else None, text, k, json_out,
                                 str(grid) if grid else None, checkpoint, nprobe, ef_search, device))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def serve(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(8000),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the index's)."),
    max_upload_bytes: int = typer.Option(2_000_000, help="Largest accepted sketch upload."),
) -> None:
    """Serve the draw-and-search web page and its JSON API."""
    import uvicorn

    from pipelines.web import WebConfig, create_app

    try:
        app_ = create_app(WebConfig(str(index_dir), checkpoint, max_upload_bytes))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"fsbir: open http://{host}:{port}/")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Folder for everything the quickstart makes."),
    n: int = typer.Option(3000, "--n", help="Demo catalog size."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes for build-dataset."),
    model: str = typer.Option("fsbir-tiny-minilm", help="Model config to train (fsbir-tiny trains faster per epoch)."),
    epochs: int = typer.Option(4, help="Training epochs."),
) -> None:
    """End to end on the built-in demo catalog: catalog → shards → train → eval → index → result grid."""
    from pipelines.quickstart import QuickstartConfig, run_quickstart

    run_quickstart(QuickstartConfig(out_dir=str(out), n=n, workers=workers, model=model, epochs=epochs))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
