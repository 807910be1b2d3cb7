"""FsbirModel: an open_clip CLIP whose vision tower encodes photos and sketches, its text tower
encodes captions, and a fusion module turns (sketch, text) into one query."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fsbir import FsbirError

from .category import CategoryHead, category_targets
from .colour import ColourHead, class_block, colour_targets, layout_stats, names_a_colour
from .configs import CatalogWeights
from .fusion import QUERY_FUSIONS, create_fusion


def trim_padding(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Tokens without the trailing columns that are padding in every row. A Hugging Face text tower
    masks padding, so those columns change nothing but the cost: 50 four-word queries in MiniLM's
    32-token context take 3.4× the time of their 8 used columns (docs/benchmarks.md)."""
    used = (tokens != pad_id).any(0).nonzero()
    return tokens[:, :int(used.max()) + 1] if len(used) else tokens[:, :1]


class ColourStats(nn.Module):
    """Where the image's colours are: its mean colour on a grid × grid layout plus each channel's
    spread, projected into the embedding and added to the vision tower's output. A pretrained
    classification trunk is trained to ignore colour; "an ivory trouser" needs it. The projection
    starts at zero, so a model starts as it would without it."""

    def __init__(self, grid: int, embed_dim: int):
        super().__init__()
        self.grid = grid
        self.proj = nn.Linear(3 * grid * grid + 3, embed_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def stats(self, images: torch.Tensor) -> torch.Tensor:
        return layout_stats(images, self.grid)


def catalog_block(head_weight: float, weight: float, targets: torch.Tensor, version: int) -> torch.Tensor:
    """A photo's block from the catalog's value (`targets`: its class distribution), scaled so that a
    query's block (√head_weight · √P, `class_block`) meets it at `weight` instead of `head_weight`."""
    return class_block(head_weight, targets, version) * (weight / head_weight)


class FsbirModel(nn.Module):
    """`pretrained_modules` names the submodules whose weights came pretrained ("clip.visual" for
    a whole CLIP tower, "clip.visual.trunk" for a trunk whose projection is new), so training can
    give them a smaller learning rate and lock them. `colour_grid` > 0 adds `ColourStats` to the
    vision tower's output (photos and sketches alike). `colour_weight` > 0 adds a `ColourHead`,
    `category_names` with `category_weight` > 0 a `CategoryHead`: the embeddings then end in their
    blocks, colour first, and `embed_dim` = `joint_dim` + the blocks' widths. `head_version` and
    `pixel_mean`/`pixel_std` are the colour head's (retrieval/colour.py)."""

    def __init__(self, clip: nn.Module, embed_dim: int, fusion: str = "avg", sketch_tower: str = "shared",
                 pretrained_modules: frozenset[str] = frozenset(), colour_grid: int = 0, query_fusion: str | None = None,
                 colour_weight: float = 0.0, category_names: tuple[str, ...] = (), category_weight: float = 0.0,
                 head_version: int = 2, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5)):
        super().__init__()
        self.clip = clip
        self.joint_dim = embed_dim
        self.pretrained_modules = frozenset(pretrained_modules)
        self._frozen_norms: list[nn.Module] = []
        if sketch_tower not in ("shared", "separate"):
            raise FsbirError("sketch_tower must be 'shared' or 'separate'")
        # A separate sketch tower starts as a copy of the photo tower (pretrained weights included).
        self.sketch_visual = copy.deepcopy(clip.visual) if sketch_tower == "separate" else None
        self.fusion = create_fusion(fusion, embed_dim)
        # Queries (eval, index, search, validation) may be fused by another parameter-free rule than
        # the one trained with: trained as the average, queried by agreement.
        if query_fusion not in (None, *QUERY_FUSIONS):
            raise FsbirError(f"query fusion must be one of {', '.join(QUERY_FUSIONS)} (parameter-free), not {query_fusion!r}")
        self.query_fusion = create_fusion(query_fusion, embed_dim) if query_fusion else self.fusion
        self.colour = ColourStats(colour_grid, embed_dim) if colour_grid else None
        self.colour_head = (ColourHead(embed_dim, colour_weight, head_version, pixel_mean, pixel_std)
                            if colour_weight > 0 else None)
        self.category_head = (CategoryHead(embed_dim, category_names, category_weight)
                              if category_names and category_weight > 0 else None)

    @property
    def block_widths(self) -> tuple[int, int]:
        """The widths of the colour block and the category block (0 where there is no head)."""
        return (self.colour_head.width if self.colour_head is not None else 0,
                self.category_head.width if self.category_head is not None else 0)

    @property
    def embed_dim(self) -> int:
        """The width of what encode_image / encode_sketch / encode_text / encode_query return."""
        return self.joint_dim + sum(self.block_widths)

    def lock_pretrained_towers(self, unlocked_groups: int = 0) -> None:
        """Freeze the pretrained towers but their projections and the vision tower's last
        `unlocked_groups` layer groups (open_clip's tower locks; the text tower is locked whole).
        Batch-norm layers of a locked vision tower keep their pretrained statistics: they stay in
        eval mode while training."""
        if "visual" in self.pretrained_towers:
            for tower in (self.clip.visual, self.sketch_visual):
                if tower is not None:
                    tower.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=False)
                    self._frozen_norms += [m for m in tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if "text" in self.pretrained_towers:
            self.clip.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)

    @property
    def pretrained_towers(self) -> frozenset[str]:
        """The towers ("visual", "text") that hold pretrained weights."""
        return frozenset(path.split(".")[1] for path in self.pretrained_modules)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters that came pretrained; a separate sketch tower's copies of them included."""
        paths = set(self.pretrained_modules)
        if self.sketch_visual is not None:
            paths |= {"sketch_visual" + p[len("clip.visual"):] for p in paths if p.startswith("clip.visual")}
        return [p for path in sorted(paths) for p in self.get_submodule(path).parameters()]

    def train(self, mode: bool = True) -> "FsbirModel":
        super().train(mode)
        for norm in self._frozen_norms:
            norm.eval()
        return self

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def visual_embedding(self, features: torch.Tensor, colour_stats: torch.Tensor | None) -> torch.Tensor:
        """A vision tower's output (plus the projected colour statistics, when the model has them)
        → the unit joint embedding of a photo or sketch."""
        return F.normalize(features if self.colour is None else features + self.colour.proj(colour_stats), dim=-1)

    def _stats_readers(self, kind: str) -> list[nn.Module]:
        """Who reads a "photo"'s or a "sketch"'s pixels beside the tower: ColourStats both; the
        colour head photos alone (a sketch has no colour)."""
        return [m for m in (self.colour, self.colour_head if kind == "photo" else None) if m is not None]

    def pixel_stats(self, images: torch.Tensor, kind: str = "photo") -> torch.Tensor | None:
        """What the model reads from the pixels beside the tower, side by side (None when nothing)."""
        parts = [m.stats(images) for m in self._stats_readers(kind)]
        return torch.cat(parts, dim=1) if parts else None

    def pixel_stats_width(self, kind: str = "photo") -> int:
        return sum(m.proj.in_features if m is self.colour else m.stats_width for m in self._stats_readers(kind))

    def split_pixel_stats(self, stats: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`pixel_stats`' output → (ColourStats' part, the colour head's part; None where absent)."""
        if stats is None:
            return None, None
        first = self.colour.proj.in_features if self.colour is not None else 0
        return (stats[:, :first] if self.colour is not None else None,
                stats[:, first:] if stats.shape[1] > first else None)

    def visual_outputs(self, features: torch.Tensor, stats: torch.Tensor | None, kind: str) -> tuple[torch.Tensor, dict]:
        """A vision tower's output and `pixel_stats` → (unit joint embedding, the heads' logits by
        head name) of a "photo" or a "sketch": a photo's colour and category; a sketch has none."""
        colour_stats, head_stats = self.split_pixel_stats(stats)
        joint = self.visual_embedding(features, colour_stats)
        logits = {}
        if kind == "photo" and self.colour_head is not None:
            logits["colour"] = self.colour_head.photo_logits(joint, head_stats)
        if kind == "photo" and self.category_head is not None:
            logits["category"] = self.category_head.logits(kind, joint)
        return joint, logits

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower's output; a Hugging Face tower, which masks padding, is spared the columns
        that are padding in every row (`trim_padding`)."""
        config = getattr(getattr(self.clip, "text", None), "config", None)
        return self.clip.encode_text(trim_padding(tokens, config.pad_token_id) if config is not None else tokens)

    def text_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The text tower's output → (unit joint embedding, the heads' logits by head name)."""
        joint = F.normalize(features, dim=-1)
        logits = {}
        if self.colour_head is not None:
            logits["colour"] = self.colour_head.text_logits(joint)
        if self.category_head is not None:
            logits["category"] = self.category_head.logits("text", joint)
        return joint, logits

    def vector(self, joint: torch.Tensor, logits: dict, kind: str, texts: list[str] | None = None) -> torch.Tensor:
        """The joint embedding followed by the heads' blocks (zeros where a head says nothing: a
        sketch's). A text's colour block, with `texts` (the strings the embedding came from), only
        where the words name a colour (`names_a_colour`)."""
        blocks = [joint]
        if self.colour_head is not None:
            colour = logits.get("colour")
            if colour is None:
                blocks.append(joint.new_zeros(len(joint), self.colour_head.width))
            elif kind == "photo":
                blocks.append(self.colour_head.photo_block(colour))
            else:
                named = self.colour_head.text_block(colour)
                if texts is not None:
                    named = named * names_a_colour(texts).to(named.device, named.dtype)[:, None]
                blocks.append(named)
        if self.category_head is not None:
            category = logits.get("category")
            blocks.append(self.category_head.block(category) if category is not None
                          else joint.new_zeros(len(joint), self.category_head.width))
        return torch.cat(blocks, dim=1) if len(blocks) > 1 else joint

    def with_catalog_attributes(self, photos: torch.Tensor, colours: list | None = None, categories: list | None = None,
                                weights: CatalogWeights = CatalogWeights()) -> tuple[torch.Tensor, dict[str, int]]:
        """Photos' vectors (`encode_image`'s) with the heads' guesses replaced by what the catalog
        says of each product, where it says something the head knows: the colour block is the
        catalog colour's (shared among the colours a value names, "Navy Blue" one, "Multi" none),
        the category block the catalog type's (one of the head's classes). Other rows keep the
        heads' guesses. A shop's catalog knows its products' colours better than a head that reads
        them from pixels (0.58 right on unseen Myntra products), so its values count `weights`,
        more than the heads' guesses. Returns the vectors and how many rows took
        the catalog's colour and category."""
        out, taken = photos.clone(), {"colour": 0, "category": 0}
        d, (colour_width, _) = self.joint_dim, self.block_widths
        if colours is not None:
            if self.colour_head is None:
                raise FsbirError("a catalog colour column needs a model with a colour head (trained with --colour-weight > 0)")
            targets = colour_targets([str(c or "").lower() for c in colours])
            named = targets.sum(1) > 0
            block = catalog_block(self.colour_head.weight, weights.colour, targets, self.colour_head.version)
            out[named, d:d + colour_width] = block[named].to(out.dtype)
            taken["colour"] = int(named.sum())
        if categories is not None:
            if self.category_head is None:
                raise FsbirError("a catalog category column needs a model with a category head "
                                 "(trained with --category-column and --category-head-weight > 0)")
            classes = category_targets(categories, self.category_head.names)
            known = classes >= 0
            one_hot = F.one_hot(classes[known], len(self.category_head.names)).to(out.dtype)
            out[known, d + colour_width:] = catalog_block(self.category_head.weight, weights.category, one_hot,
                                                          version=2)
            taken["category"] = int(known.sum())
        return out, taken

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.vector(*self.visual_outputs(self.clip.encode_image(images), self.pixel_stats(images), "photo"), "photo")

    def encode_sketch(self, sketches: torch.Tensor) -> torch.Tensor:
        tower = self.sketch_visual if self.sketch_visual is not None else self.clip.visual
        return self.vector(*self.visual_outputs(tower(sketches), self.pixel_stats(sketches, "sketch"), "sketch"), "sketch")

    def encode_text(self, tokens: torch.Tensor, texts: list[str] | None = None) -> torch.Tensor:
        """`texts`: the strings `tokens` came from; every search and eval passes them (`vector`)."""
        return self.vector(*self.text_outputs(self.text_features(tokens)), "text", texts)

    def fuse_queries(self, sketch: torch.Tensor | None, text: torch.Tensor | None,
                     has_sketch: torch.Tensor | None = None, has_text: torch.Tensor | None = None) -> torch.Tensor:
        """Encoded sketches and texts (either may be None) → queries: the query fusion joins their
        joint embeddings; the heads' blocks are the words', where a query has words."""
        d = self.joint_dim
        joint = self.query_fusion(sketch[:, :d] if sketch is not None else None, text[:, :d] if text is not None else None,
                                  has_sketch, has_text)
        if self.embed_dim == d:
            return joint
        block = text[:, d:] if text is not None else joint.new_zeros(len(joint), self.embed_dim - d)
        if has_text is not None:
            block = block * has_text.to(block.device, block.dtype)[:, None]
        return torch.cat([joint, block], dim=1)

    def encode_query(self, sketches: torch.Tensor | None, tokens: torch.Tensor | None,
                     has_sketch: torch.Tensor | None = None, has_text: torch.Tensor | None = None,
                     texts: list[str] | None = None) -> torch.Tensor:
        s = self.encode_sketch(sketches) if sketches is not None else None
        t = self.encode_text(tokens, texts) if tokens is not None else None
        return self.fuse_queries(s, t, has_sketch, has_text)

    def forward(self, images, sketches, tokens, has_sketch=None, has_text=None, category_texts=None):
        """(photo, fused query, sketch, text) joint embeddings, all L2-normalised, the log logit
        scale, returned as open_clip's CLIP returns its scale, and the heads' logits by kind and
        head ({"photo": {"colour": ..., "category": ...}, "sketch": {}, "text": {...}}; empty without
        heads): a DDP wrapper must see every parameter the loss uses come out of forward (the scale
        a copy, since a bare leaf is not traced). `category_texts`: the tokens of the category
        head's class names, whose text logits come out under "names"."""
        n = len(images)
        if self.sketch_visual is None:
            # One pass through the shared tower for photos and sketches together.
            features = self.clip.encode_image(torch.cat([images, sketches]))
            photo_f, sketch_f = features[:n], features[n:]
        else:
            photo_f, sketch_f = self.clip.encode_image(images), self.sketch_visual(sketches)
        photo_s, sketch_s = self.pixel_stats(images, "photo"), self.pixel_stats(sketches, "sketch")
        photos, photo_logits = self.visual_outputs(photo_f, photo_s, "photo")
        sketch_emb, sketch_logits = self.visual_outputs(sketch_f, sketch_s, "sketch")
        text_emb, text_logits = self.text_outputs(self.text_features(tokens))
        logits = {"photo": photo_logits, "sketch": sketch_logits, "text": text_logits}
        if category_texts is not None:
            logits["names"] = self.text_outputs(self.text_features(category_texts))[1]
        return self.joint_outputs(photos, sketch_emb, text_emb, logits, has_sketch, has_text)

    def joint_outputs(self, photos, sketch_emb, text_emb, logits: dict, has_sketch, has_text) -> tuple:
        """forward's return, shared with the cached-feature model (training/features.py)."""
        return (photos, self.fusion(sketch_emb, text_emb, has_sketch, has_text), sketch_emb, text_emb,
                self.logit_scale.clone(), logits)
