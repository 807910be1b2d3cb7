"""Colour names: the model reads which colour a photo shows and which colour a query's words ask
for, and the search adds `weight` × P(the photo is that colour) to the cosine.

A pretrained trunk is trained to ignore colour, and in-batch negatives rarely differ by colour
alone, so InfoNCE never needs it (docs/experiments.md: "a red shirt" finds about half red ones).
Here colour is learned as what it is, a class: a photo head over the tower's embedding and the
photo's colour layout, supervised by the colour words of its caption, and a text head that says
which colour (or none) a text names, supervised by the colour words of that text. The embeddings
carry the answer as a block of `len(COLOUR_NAMES)` numbers after the joint embedding:
√weight · √P(colour | photo) for a photo, √weight · √P(colour | words) for a text (zeros when the
words name no colour word), zeros for a sketch, so one inner product adds weight × the two
distributions' Bhattacharyya coefficient and any index serves it.

Heads of version 1 (checkpoints before 2026-12-06) read the photo's mean colour layout alone and
wrote P, not √P; version 2 also reads the colours of the product's own pixels (`product_stats`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsbir.sketchgen import find_words
from fsbir.sketchgen.edges import MAX_SKIN_SHARE, SKIN_CB, SKIN_CR, SKIN_MIN_Y

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


# Hue × saturation × value bins of chromatic pixels, then value bins of greys (black to white).
HUE_BINS, GREY_BINS = 12, 5
PRODUCT_GRID = 4
PRODUCT_STATS_WIDTH = HUE_BINS * 4 + GREY_BINS + 4 * PRODUCT_GRID ** 2 + 3


def _rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB in [0, 1] → hue in [0, 1), saturation, value, each (N, H, W)."""
    r, g, b = rgb.unbind(1)
    value, top = rgb.max(dim=1)
    spread = value - rgb.min(dim=1).values
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-6), torch.zeros_like(value))
    safe = spread.clamp_min(1e-6)
    hue = torch.where(top == 0, ((g - b) / safe) % 6, torch.where(top == 1, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    return torch.where(spread > 0, hue, torch.zeros_like(hue)) % 1.0, saturation, value


def product_mask(rgb: torch.Tensor, tolerance: float = 24 / 255) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(foreground, skin, product) bool maps (N, H, W) of RGB images in [0, 1]. The background is
    what lies within `tolerance` of white (the letterbox's padding) or of the studio's colour (the
    median of the border pixels that are not padding). Skin is Chai and Ngan's YCrCb box, as the
    drop-skin sketches use it. The product is the foreground that is not skin; the whole foreground
    when skin is most of it (a tan bag, a beige dress: the item itself is skin-coloured); the whole
    image when the foreground is almost nothing."""
    border = torch.cat([rgb[:, :, 0], rgb[:, :, -1], rgb[:, :, :, 0], rgb[:, :, :, -1]], dim=2)
    padding = (border > 250 / 255).all(dim=1, keepdim=True)
    studio = torch.where(padding, torch.full_like(border, float("nan")), border).nanmedian(dim=2).values
    studio = torch.nan_to_num(studio, nan=1.0)

    def near(colour: torch.Tensor) -> torch.Tensor:
        return (rgb - colour[:, :, None, None]).abs().amax(dim=1) <= tolerance

    foreground = ~(near(studio) | near(torch.ones_like(studio)))
    r, g, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr, cb = ((r - y) * 0.713 + 0.5) * 255, ((b - y) * 0.564 + 0.5) * 255  # OpenCV's 8-bit YCrCb
    skin = ((y * 255 > SKIN_MIN_Y) & (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0])
            & (cb <= SKIN_CB[1]))
    area = foreground.flatten(1).sum(1)
    mostly_skin = (skin & foreground).flatten(1).sum(1) > MAX_SKIN_SHARE * area
    product = torch.where(mostly_skin[:, None, None], foreground, foreground & ~skin)
    empty = product.flatten(1).sum(1) < 0.002 * rgb.shape[2] * rgb.shape[3]
    return foreground, skin, product | empty[:, None, None]


def product_stats(rgb: torch.Tensor) -> torch.Tensor:
    """Colour statistics of the product's own pixels (`product_mask`), not of the background or
    the person wearing it: a histogram of hue × saturation × value (its square root, so a few
    pixels of a colour still count), the mean colour and product share of each cell of a 4 × 4
    layout, and the foreground, skin and product shares: (N, PRODUCT_STATS_WIDTH). `rgb` in [0, 1].
    On Myntra the trained head names the catalog colour of 0.58 of unseen products with these,
    against 0.52 from the 8 × 8 mean layout alone (docs/experiments.md)."""
    rgb = rgb.float().clamp(0, 1)
    foreground, skin, product = product_mask(rgb)
    hue, saturation, value = _rgb_to_hsv(rgb)
    chromatic = (saturation > 0.2) & (value > 0.15)
    colour_bin = ((hue * HUE_BINS).long().clamp(max=HUE_BINS - 1) * 4 + (saturation > 0.55).long() * 2
                  + (value > 0.6).long())
    grey_bin = HUE_BINS * 4 + (value * GREY_BINS).long().clamp(max=GREY_BINS - 1)
    bins = torch.where(chromatic, colour_bin, grey_bin).flatten(1)
    weights = product.flatten(1).float()
    histogram = torch.zeros(len(rgb), HUE_BINS * 4 + GREY_BINS, device=rgb.device).scatter_add_(1, bins, weights)
    histogram = (histogram / weights.sum(1, keepdim=True).clamp_min(1)).sqrt()
    share = F.adaptive_avg_pool2d(product[:, None].float(), PRODUCT_GRID)
    cell_colour = F.adaptive_avg_pool2d(rgb * product[:, None], PRODUCT_GRID) / share.clamp_min(1e-6)
    layout = torch.cat([cell_colour, share], dim=1).flatten(1) * 2 - 1
    shares = torch.stack([m.flatten(1).float().mean(1) for m in (foreground, skin, product)], dim=1) * 2 - 1
    return torch.cat([histogram * 2, layout, shares], dim=1)


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


def class_mlp(inputs: int, classes: int, hidden: int = 256) -> nn.Sequential:
    """The two-layer MLP every class head reads its input with."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, classes))


def class_block(weight: float, probabilities: torch.Tensor, version: int) -> torch.Tensor:
    """A class head's block: √weight · √P, so that one inner product adds weight × the
    Bhattacharyya coefficient of a query's and a photo's distributions (version 2); √weight · P
    (version 1, checkpoints before 2026-12-06). The square root keeps a photo the head is less
    sure of from falling far behind its surer neighbours: on Myntra, caption + sketch R@1 0.569
    with P against 0.598 with √P at the same weights (docs/experiments.md)."""
    return weight ** 0.5 * (probabilities.sqrt() if version >= 2 else probabilities)


class ColourHead(nn.Module):
    """P(colour | photo) from the photo's unit embedding and its colour statistics (`stats`), and
    P(colour or none | text) from the text's unit embedding. Both read the embeddings detached,
    so the colour loss trains the heads, not the joint space, and scaled by √embed_dim: a unit
    vector's coordinates are about 1/√dim, too small for the MLP to learn from quickly. `mean`
    and `std` undo the model's input normalisation, for `product_stats`."""

    width = len(COLOUR_NAMES)

    def __init__(self, embed_dim: int, weight: float, version: int = 2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                 grid: int = 8, hidden: int = 256):
        super().__init__()
        self.weight, self.version, self.grid, self.scale = weight, version, grid, embed_dim ** 0.5
        self.mean, self.std = tuple(mean), tuple(std)
        self.stats_width = 3 * grid * grid + 3 + (PRODUCT_STATS_WIDTH if version >= 2 else 0)
        self.photo = class_mlp(embed_dim + self.stats_width, self.width, hidden)
        self.text = class_mlp(embed_dim, self.width + 1, hidden)

    def stats(self, images: torch.Tensor) -> torch.Tensor:
        layout = layout_stats(images, self.grid)
        if self.version < 2:
            return layout
        mean, std = (images.new_tensor(v).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return torch.cat([layout, product_stats(images.float() * std + mean)], dim=1)

    def photo_logits(self, photo: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return self.photo(torch.cat([photo.detach().float() * self.scale, stats.float()], dim=1))

    def text_logits(self, text: torch.Tensor) -> torch.Tensor:
        return self.text(text.detach().float() * self.scale)

    def photo_block(self, logits: torch.Tensor) -> torch.Tensor:
        return class_block(self.weight, logits.softmax(dim=1), self.version)

    def text_block(self, logits: torch.Tensor) -> torch.Tensor:
        return class_block(self.weight, logits.softmax(dim=1)[:, :-1], self.version)


def colour_loss(photo_logits: torch.Tensor, text_logits: torch.Tensor, captions: list[str], texts: list[str]) -> torch.Tensor:
    """A photo learns the colours its caption names; a text the colours it names, or none."""
    device = photo_logits.device
    return (soft_cross_entropy(photo_logits, colour_targets(captions).to(device))
            + soft_cross_entropy(text_logits, colour_targets(texts, with_none=True).to(device)))
