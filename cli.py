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
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Folder for everything the quickstart makes."),
    n: int = typer.Option(3000, "--n", help="Demo catalog size."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes for build-dataset."),
) -> None:
    """End to end on the built-in demo catalog: catalog → shards (→ train → eval → index)."""
    from pipelines.quickstart import QuickstartConfig, run_quickstart

    run_quickstart(QuickstartConfig(out_dir=str(out), n=n, workers=workers))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
