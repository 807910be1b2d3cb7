"""FsbirModel: an open_clip CLIP whose vision tower encodes photos and sketches, its text tower
encodes captions, and a fusion module turns (sketch, text) into one query."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fsbir import FsbirError

from .fusion import QUERY_FUSIONS, create_fusion


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
        layout = F.adaptive_avg_pool2d(images.float(), self.grid).flatten(1)
        return torch.cat([layout, images.float().flatten(2).std(dim=2)], dim=1)


class FsbirModel(nn.Module):
    """`pretrained_modules` names the submodules whose weights came pretrained ("clip.visual" for
    a whole CLIP tower, "clip.visual.trunk" for a trunk whose projection is new), so training can
    give them a smaller learning rate and lock them. `colour_grid` > 0 adds `ColourStats` to the
    vision tower's output (photos and sketches alike)."""

    def __init__(self, clip: nn.Module, embed_dim: int, fusion: str = "avg", sketch_tower: str = "shared",
                 pretrained_modules: frozenset[str] = frozenset(), colour_grid: int = 0, query_fusion: str | None = None):
        super().__init__()
        self.clip = clip
        self.embed_dim = embed_dim
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
        → the unit embedding of a photo or sketch."""
        return F.normalize(features if self.colour is None else features + self.colour.proj(colour_stats), dim=-1)

    def _colour_stats(self, images: torch.Tensor) -> torch.Tensor | None:
        return None if self.colour is None else self.colour.stats(images)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual_embedding(self.clip.encode_image(images), self._colour_stats(images))

    def encode_sketch(self, sketches: torch.Tensor) -> torch.Tensor:
        tower = self.sketch_visual if self.sketch_visual is not None else self.clip.visual
        return self.visual_embedding(tower(sketches), self._colour_stats(sketches))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def encode_query(self, sketches: torch.Tensor | None, tokens: torch.Tensor | None,
                     has_sketch: torch.Tensor | None = None, has_text: torch.Tensor | None = None) -> torch.Tensor:
        s = self.encode_sketch(sketches) if sketches is not None else None
        t = self.encode_text(tokens) if tokens is not None else None
        return self.query_fusion(s, t, has_sketch, has_text)

    def forward(self, images, sketches, tokens, has_sketch=None, has_text=None):
        """(photo, fused query, sketch, text) embeddings, all L2-normalised, and the log logit
        scale, returned as open_clip's CLIP returns its scale: a DDP wrapper must see every
        parameter the loss uses come out of forward (a copy, since a bare leaf is not traced)."""
        if self.sketch_visual is None:
            # One pass through the shared tower for photos and sketches together.
            both = self.encode_image(torch.cat([images, sketches]))
            photos, sketch_emb = both[: len(images)], both[len(images):]
        else:
            photos, sketch_emb = self.encode_image(images), self.encode_sketch(sketches)
        text_emb = self.encode_text(tokens)
        return photos, self.fusion(sketch_emb, text_emb, has_sketch, has_text), sketch_emb, text_emb, self.logit_scale.clone()
