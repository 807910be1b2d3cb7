"""Categories: the model reads which of the catalog's categories (a column such as articleType) a
photo shows and a query's words name, and the search adds `weight` × the Bhattacharyya coefficient
of the two category distributions to the cosine.

The joint space ranks the asked type only so well: "a red tshirt" beside the item's sketch found
the sketched type in 0.55 of its top 10 on Myntra, and a doodle beside "a pants" pulled the words
towards other kinds of item (docs/experiments.md). A catalog's own category column says what each
product is; two small heads learn it from the detached joint embeddings of photos and of texts
(captions, caption templates and each class's own name), and photos and words end in a block
√weight · √P(category). A sketch's block is zeros: a head reading sketches (every augmented view)
named 10 of 95 people's doodles right and moved no measure (docs/experiments.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .colour import class_block, class_mlp

KINDS = ("photo", "text")


def category_names(values) -> tuple[str, ...]:
    """The classes a head learns: the distinct non-empty values of a category column, sorted."""
    return tuple(sorted({str(v) for v in values if v is not None and str(v).strip() and str(v) != "nan"}))


def singular(phrase: str) -> str:
    """An English plural's last word in the singular ("casual shoes" → "casual shoe", "dresses" →
    "dress"): catalogs name their categories in the plural, shoppers type "a trouser"."""
    head, _, last = phrase.rpartition(" ")
    if last.endswith(("sses", "shes", "ches", "xes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith("ss"):
        last = last[:-1]
    return f"{head} {last}".strip()


def category_texts(names: tuple[str, ...]) -> list[str]:
    """The texts that teach the text head the catalog's own words for its categories, which long
    captions rarely say alone: each name in lower case, then "a" and its singular ("trousers",
    "a trouser"). The i-th text names class i mod len(names)."""
    lower = [n.lower() for n in names]
    return lower + [f"a {singular(n)}" for n in lower]


def category_targets(values: list, names: tuple[str, ...]) -> torch.Tensor:
    """(N,) class index of each row's category, -1 where it has none or one the head never learned."""
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index.get(str(v), -1) if v is not None else -1 for v in values], dtype=torch.long)


class CategoryHead(nn.Module):
    """P(category | photo) and P(category | words), each an MLP over the detached unit embedding
    scaled by √embed_dim (as the colour head reads it). `names` are the categories, saved with the
    model so that a checkpoint knows its classes."""

    def __init__(self, embed_dim: int, names: tuple[str, ...], weight: float, hidden: int = 256):
        super().__init__()
        self.names, self.weight, self.scale = tuple(names), weight, embed_dim ** 0.5
        self.width = len(self.names)
        self.photo, self.text = (class_mlp(embed_dim, self.width, hidden) for _ in KINDS)

    def logits(self, kind: str, joint: torch.Tensor) -> torch.Tensor:
        return getattr(self, kind)(joint.detach().float() * self.scale)

    def block(self, logits: torch.Tensor) -> torch.Tensor:
        return class_block(self.weight, logits.softmax(dim=1), version=2)


def category_loss(logits: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each kind's logits (photo, text) against the rows' categories,
    over the rows that have one (0 when none do, keeping the graph for every rank's backward)."""
    known = targets >= 0
    total = sum(l.sum() * 0.0 for l in logits.values())
    if not known.any():
        return total
    return total + sum(F.cross_entropy(l[known].float(), targets[known].to(l.device)) for l in logits.values())
