"""Colour names: the model reads which colour a photo shows and which colour a query's words ask
for, and the search adds `weight` × P(the photo is that colour) to the cosine.

A pretrained trunk is trained to ignore colour, and in-batch negatives rarely differ by colour
alone, so InfoNCE never needs it (docs/experiments.md: "a red shirt" finds about half red ones).
Here colour is learned as what it is, a class: a photo head over the tower's embedding and the
photo's colour layout, supervised by the colour words of its caption, and a text head that says
which colour (or none) a text names, supervised by the colour words of that text. The embeddings
carry the answer as a block of `len(COLOUR_NAMES)` numbers after the joint embedding:
√weight · P(colour | photo) for a photo, √weight · P(colour | words) for a text (zeros when the
words name no colour word), zeros for a sketch, so one inner product scores both and any index serves it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsbir.sketchgen import find_words

# Colour words of English product captions; a compound ("navy blue") is one colour, not two.
COLOUR_NAMES: tuple[str, ...] = (
    "black", "white", "off white", "cream", "beige", "grey", "charcoal", "silver", "blue", "navy blue",
    "turquoise blue", "teal", "green", "sea green", "olive", "lime green", "red", "maroon", "burgundy",
    "rust", "pink", "magenta", "peach", "orange", "yellow", "mustard", "gold", "brown", "coffee brown",
    "tan", "khaki", "copper", "bronze", "purple", "lavender", "mauve", "nude",
)
# Other words for the same colours, so "a gray shirt" or "navy jeans" asks for one of them.
COLOUR_ALIASES: dict[str, str] = {
    "gray": "grey", "navy": "navy blue", "off-white": "off white", "ivory": "off white", "steel": "silver",
    "golden": "gold", "violet": "purple", "fuchsia": "magenta", "wine": "burgundy", "camel": "tan",
}
# Every colour word, a name or an alias → its class.
_CLASS_OF: dict[str, int] = {**{n: i for i, n in enumerate(COLOUR_NAMES)},
                             **{a: COLOUR_NAMES.index(n) for a, n in COLOUR_ALIASES.items()}}


def layout_stats(images: torch.Tensor, grid: int) -> torch.Tensor:
    """The image's mean colour on a grid × grid layout plus each channel's spread: (N, 3·grid² + 3)."""
    layout = F.adaptive_avg_pool2d(images.float(), grid).flatten(1)
    return torch.cat([layout, images.float().flatten(2).std(dim=2)], dim=1)


def names_a_colour(texts: list[str]) -> torch.Tensor:
    """(N,) bool: which texts name a colour word (or an alias). The text head, trained on captions
    that nearly all name one, guesses a colour for "a shoe" (pink, P 0.33); a query's colour block
    is kept only where its words name one."""
    return torch.tensor([bool(find_words(t, _CLASS_OF)) for t in texts], dtype=torch.bool)


def colour_targets(texts: list[str], with_none: bool = False) -> torch.Tensor:
    """(N, C) distributions over `COLOUR_NAMES`, uniform over the colours each text names (an
    alias counts as its colour); a text naming none is a zero row, or, `with_none`, all on an extra
    last column (C + 1 columns)."""
    out = torch.zeros(len(texts), len(COLOUR_NAMES) + int(with_none))
    for row, text in enumerate(texts):
        named = sorted({_CLASS_OF[w] for w in find_words(text, _CLASS_OF)})
        if named:
            out[row, named] = 1.0 / len(named)
        elif with_none:
            out[row, -1] = 1.0
    return out


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions, over the rows that have one (0 when none do)."""
    has = targets.sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0  # keeps the graph, so every rank's backward sees the head
    return -(targets[has] * F.log_softmax(logits[has].float(), dim=1)).sum(1).mean()


class ColourHead(nn.Module):
    """P(colour | photo) from the photo's unit embedding and its colour layout (`layout_stats` at
    `grid`), and P(colour or none | text) from the text's unit embedding. Both read the embeddings
    detached, so the colour loss trains the heads, not the joint space, and scaled by √embed_dim:
    a unit vector's coordinates are about 1/√dim, too small for the MLP to learn from quickly."""

    width = len(COLOUR_NAMES)

    def __init__(self, embed_dim: int, weight: float, grid: int = 8, hidden: int = 256):
        super().__init__()
        self.weight, self.grid, self.scale = weight, grid, embed_dim ** 0.5
        self.stats_width = 3 * grid * grid + 3
        self.photo = nn.Sequential(nn.Linear(embed_dim + self.stats_width, hidden), nn.GELU(),
                                   nn.Linear(hidden, self.width))
        self.text = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, self.width + 1))

    def stats(self, images: torch.Tensor) -> torch.Tensor:
        return layout_stats(images, self.grid)

    def photo_logits(self, photo: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return self.photo(torch.cat([photo.detach().float() * self.scale, stats.float()], dim=1))

    def text_logits(self, text: torch.Tensor) -> torch.Tensor:
        return self.text(text.detach().float() * self.scale)

    def photo_block(self, logits: torch.Tensor) -> torch.Tensor:
        return self.weight ** 0.5 * logits.softmax(dim=1)

    def text_block(self, logits: torch.Tensor) -> torch.Tensor:
        return self.weight ** 0.5 * logits.softmax(dim=1)[:, :-1]


def colour_loss(photo_logits: torch.Tensor, text_logits: torch.Tensor, captions: list[str], texts: list[str]) -> torch.Tensor:
    """A photo learns the colours its caption names; a text the colours it names, or none."""
    device = photo_logits.device
    return (soft_cross_entropy(photo_logits, colour_targets(captions).to(device))
            + soft_cross_entropy(text_logits, colour_targets(texts, with_none=True).to(device)))
