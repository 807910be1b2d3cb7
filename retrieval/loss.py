"""Symmetric InfoNCE between fused queries and photos, with a learnable temperature, and a
supervised-contrastive term over categories."""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0


def info_nce(queries: torch.Tensor, photos: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """queries, photos: (N, D) L2-normalised, row i of each is the same product.
    logit_scale is log(1/temperature); the scale is clamped at 100 as in CLIP."""
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * queries @ photos.t()
    labels = torch.arange(queries.shape[0], device=queries.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def same_category(categories: list) -> torch.Tensor:
    """(N, N) float: 1 where rows i and j share a category; a row without one matches only itself."""
    codes = {c: i for i, c in enumerate(dict.fromkeys(c for c in categories if c is not None))}
    ids = torch.tensor([codes[c] if c is not None else -1 - i for i, c in enumerate(categories)])
    return (ids[:, None] == ids[None, :]).float()


def category_nce(queries: torch.Tensor, photos: torch.Tensor, logit_scale: torch.Tensor,
                 same: torch.Tensor) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020): every photo of a query's category is a
    positive, so a query learns what its category looks like, not only its one product; what a
    rough drawing can still convey."""
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * queries @ photos.t()
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    return -((log_prob * same).sum(1) / same.sum(1)).mean()
