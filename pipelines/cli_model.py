"""The model commands: `fsbir train`, `eval` and `probe`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fsbir.retrieval.configs import CatalogWeights, EvalConfig, ProbeConfig
from fsbir.retrieval.training import TrainConfig

from .cli_options import CATALOG_CATEGORY_WEIGHT, CATALOG_COLOUR_WEIGHT, default, given


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
