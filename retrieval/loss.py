"""Symmetric InfoNCE between fused queries and photos, with a learnable temperature."""
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
