"""Fusion of a sketch embedding and a text embedding into one query embedding.

Every variant takes L2-normalised embeddings plus presence masks (a query may lack its sketch or
its text) and returns an L2-normalised query, so they are interchangeable behind one interface.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsbir import FsbirError


class Fusion(nn.Module):
    """Base: when one modality is absent the query is the other one's embedding."""

    def combine(self, sketch: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, sketch: torch.Tensor, text: torch.Tensor,
                has_sketch: torch.Tensor | None = None, has_text: torch.Tensor | None = None) -> torch.Tensor:
        n = sketch.shape[0] if sketch is not None else text.shape[0]
        device = sketch.device if sketch is not None else text.device
        ones = torch.ones(n, dtype=torch.bool, device=device)
        has_sketch = ones if has_sketch is None else has_sketch.bool()
        has_text = ones if has_text is None else has_text.bool()
        if sketch is None:
            sketch, has_sketch = torch.zeros_like(text), ~ones
        if text is None:
            text, has_text = torch.zeros_like(sketch), ~ones
        both = self.combine(sketch, text)
        out = torch.where(has_sketch[:, None] & has_text[:, None], both,
                          torch.where(has_sketch[:, None], sketch, text))
        return F.normalize(out, dim=-1)


class AvgFusion(Fusion):
    """The mean of the two unit vectors (the seed's fusion); no parameters."""

    def combine(self, sketch, text):
        return (sketch + text) / 2


class ConcatFusion(Fusion):
    """[sketch, text] → linear back to the embedding size; initialised to the average."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)
        with torch.no_grad():
            eye = torch.eye(dim) / 2
            self.proj.weight.copy_(torch.cat([eye, eye], dim=1))
            self.proj.bias.zero_()

    def combine(self, sketch, text):
        return self.proj(torch.cat([sketch, text], dim=-1))


class GatedFusion(Fusion):
    """A learned per-dimension gate g(sketch, text): query = g·sketch + (1−g)·text. The gate starts
    at 0.5 everywhere (the average) and learns which modality to trust for which dimension."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.gate = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)

    def combine(self, sketch, text):
        g = torch.sigmoid(self.gate(torch.cat([sketch, text, sketch * text], dim=-1)))
        return g * sketch + (1 - g) * text


class AgreementFusion(Fusion):
    """The sketch weighs by how far it agrees with the words: w = max_weight · clip((cos(s, t) −
    floor) / (full − floor), 0, 1), query = w·sketch + (1 − w)·text. A sketch the words contradict
    (a doodle the towers misread) leaves the words' query as it is, and one that agrees with them
    (the item's own outline) weighs as much as in the average. No parameters; `floor` and `full`
    are where people's doodles and catalog edge maps sit (median cos 0.06 and 0.23 with the default
    model on Myntra, docs/experiments.md)."""

    def __init__(self, floor: float = 0.0, full: float = 0.4, max_weight: float = 0.5):
        super().__init__()
        self.floor, self.full, self.max_weight = floor, full, max_weight

    def sketch_weight(self, sketch: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        agreement = (F.normalize(sketch, dim=-1) * F.normalize(text, dim=-1)).sum(-1, keepdim=True)
        return self.max_weight * ((agreement - self.floor) / (self.full - self.floor)).clamp(0, 1)

    def combine(self, sketch, text):
        w = self.sketch_weight(sketch, text)
        return w * sketch + (1 - w) * text


FUSIONS = {"avg": AvgFusion, "agree": AgreementFusion, "concat": ConcatFusion, "gated": GatedFusion}
QUERY_FUSIONS = ("avg", "agree")  # the parameter-free ones, which any trained model can query with


def create_fusion(name: str, dim: int) -> Fusion:
    if name not in FUSIONS:
        raise FsbirError(f"unknown fusion {name!r}; choose one of {', '.join(FUSIONS)}")
    return FUSIONS[name]() if name in ("avg", "agree") else FUSIONS[name](dim)
