"""Validation after each epoch and the choice of the best checkpoint."""
from __future__ import annotations

import math

from ..evaluate import catalog_metrics, embed_split
from .config import TrainConfig


def validate(model, cfg: TrainConfig, pp, tokenizer, device: str) -> dict:
    """Metrics of every query mode on the val split (each product's own sketch and caption)."""
    emb = embed_split(model, cfg.shards, "val", pp, tokenizer, 128, cfg.category_column, device)
    result = catalog_metrics(model, emb, cfg.eval_k)
    model.train()
    return result


def selection_score(val: dict | None, train_loss: float, k: int) -> float:
    """What `best.pt` maximises: val sketch+text R@k, or minus the train loss without a val split.
    NaN never wins."""
    score = val["modes"]["sketch+text"][f"R@{k}"] if val else -train_loss
    return score if math.isfinite(score) else -math.inf
