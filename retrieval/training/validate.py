"""Validation after each epoch and the choice of the best checkpoint."""
from __future__ import annotations

import math

from fsbir import FsbirError

from ..evaluate import catalog_metrics, embed_split, human_query_metrics, load_human_queries, read_category_map
from .config import TrainConfig


def load_val_queries(cfg: TrainConfig, pp) -> dict | None:
    """The human drawings that choose `best.pt` (`--val-queries`), read once before training."""
    if not cfg.val_queries:
        return None
    if cfg.val_category_map and not cfg.category_column:
        raise FsbirError("--val-category-map needs --category-column (the gallery column it maps to)")
    cmap = read_category_map(cfg.val_category_map) if cfg.val_category_map else None
    queries = load_human_queries(cfg.val_queries, pp, None, cmap)
    if any(a is not None for a in queries["accepted"]) and not cfg.category_column:
        raise FsbirError("category-level --val-queries (Quick, Draw! drawings) need --category-column")
    return queries


def validate(model, cfg: TrainConfig, pp, tokenizer, device: str, human: dict | None = None,
             emb: dict | None = None) -> dict:
    """Metrics of every query mode on the val split (each product's own sketch and caption), and,
    given human drawings, theirs against the same gallery under "human". `emb`: the val split's
    embeddings when already at hand (from cached tower features)."""
    if emb is None:
        emb = embed_split(model, cfg.shards, "val", pp, tokenizer, 128, cfg.category_column, device)
    result = catalog_metrics(model, emb, cfg.eval_k)
    if human is not None:
        result["human"] = human_query_metrics(model, emb, human, tokenizer, cfg.eval_k, device)
    model.train()
    return result


def selection_score(val: dict | None, train_loss: float, k: int) -> float:
    """What `best.pt` maximises: the human drawings' sketch score when validation has them (R@k
    for product queries, else category P@k), else val sketch+text R@k, else minus the train loss.
    NaN never wins."""
    if val and "human" in val:
        sketch = val["human"]["modes"]["sketch"]
        score = sketch.get(f"R@{k}", sketch.get(f"P@{k}_category", math.nan))
    else:
        score = val["modes"]["sketch+text"][f"R@{k}"] if val else -train_loss
    return score if math.isfinite(score) else -math.inf
