"""Training on cached tower features.

When the pretrained towers are locked, everything below their first trained layer is a fixed
function of the input: a photo's and a caption's features never change, and a sketch's change only
with its augmentation. So they are computed once per run (the photo and caption once, the sketch
once per augmentation view: view 0 clean, the others augmented) and every step trains only what is
above: the projections, the fusion and the temperature when the towers are locked whole; also the
vision trunk's last layer groups, from cached feature maps, with `unlocked_groups`. Same model,
same loss, same checkpoint; a step costs the trained layers instead of two passes through the
whole trunk."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data import LoaderConfig, caption_choices, make_loader, template_columns
from ..model import trim_padding


def _frozen(module: nn.Module) -> bool:
    return all(not p.requires_grad for p in module.parameters())


def trunk_split(trunk: nn.Module) -> tuple[nn.Module, nn.Sequential] | None:
    """(locked body, trained rest) of a vision trunk: the body is the longest run of its layers,
    in order, whose parameters are all frozen. Layers are the trunk's children with every
    `Sequential` opened (timm's stages and their blocks), so timm's layer groups fall on a cut. A trunk
    locked whole is its own body. None when the first layer is trained or when running the layers
    in order is not what the trunk's forward does (checked on a probe input)."""
    if _frozen(trunk):
        return trunk, nn.Sequential()
    layers = list(_layers(trunk))
    first = next(i for i, layer in enumerate(layers) if not _frozen(layer))
    if first == 0:
        return None
    body, rest = nn.Sequential(*layers[:first]), nn.Sequential(*layers[first:])
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            probe = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0),
                                device=next(trunk.parameters()).device)
            same = torch.allclose(rest(body(probe)), trunk(probe), atol=1e-5)
    except (RuntimeError, TypeError, ValueError):  # a layer that needs more than its predecessor's output
        same = False
    finally:
        trunk.train(was_training)
    return (body, rest) if same else None


def _layers(module: nn.Module) -> Iterator[nn.Module]:
    for child in module.children():
        if isinstance(child, nn.Sequential):
            yield from _layers(child)
        else:
            yield child


class CachedTowers(nn.Module):
    """An FsbirModel seen from above its locked tower bodies: `forward` takes the bodies' outputs
    (photo and sketch trunk features, pooled caption features) where FsbirModel takes pixels and
    tokens, and returns what FsbirModel returns. The wrapped model's weights are the ones trained.
    A body's output is kept flat, one row per input; a feature map is reshaped for the trained
    layers above it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._splits = {id(tower): trunk_split(tower.trunk) for tower in self._towers(model)}
        self._map_shape: dict[int, tuple[int, ...]] = {}

    @staticmethod
    def _towers(model: nn.Module) -> list[nn.Module]:
        return [model.clip.visual] + ([model.sketch_visual] if model.sketch_visual is not None else [])

    @staticmethod
    def supported(model: nn.Module) -> bool:
        """Whether every tower is an open_clip timm or Hugging Face tower, the text body locked
        whole and each vision trunk with a locked body below its trained layers (`trunk_split`)."""
        text = getattr(model.clip, "text", None)
        return (all(hasattr(t, "trunk") and hasattr(t, "head") and trunk_split(t.trunk) is not None
                    for t in CachedTowers._towers(model))
                and text is not None and all(hasattr(text, a) for a in ("transformer", "pooler", "proj"))
                and _frozen(text.transformer))

    @property
    def sketch_tower(self) -> nn.Module:
        return self.model.sketch_visual if self.model.sketch_visual is not None else self.model.clip.visual

    def _body(self, tower: nn.Module, images: torch.Tensor, kind: str) -> torch.Tensor:
        """A trunk's locked body output, flat, followed by what the model reads from a "photo"'s or
        a "sketch"'s pixels beside the tower (`pixel_stats`), when it reads any."""
        features = self._splits[id(tower)][0](images).float()
        self._map_shape[id(tower)] = tuple(features.shape[1:])
        features = features.flatten(1)
        stats = self.model.pixel_stats(images, kind)
        return features if stats is None else torch.cat([features, stats], dim=1)

    def _head(self, tower: nn.Module, body: torch.Tensor, kind: str) -> tuple[torch.Tensor, dict]:
        """(unit joint embedding, the heads' logits) of a "photo" or "sketch" from a body's output."""
        width = self.model.pixel_stats_width(kind)
        split = body.shape[1] - width
        features = self._splits[id(tower)][1](body[:, :split].reshape(-1, *self._map_shape[id(tower)]))
        return self.model.visual_outputs(tower.head(features), body[:, split:] if width else None, kind)

    @torch.no_grad()
    def bodies(self, images: torch.Tensor | None, sketches: torch.Tensor, tokens: torch.Tensor | None) -> dict:
        """The locked bodies' outputs for a batch (photo and caption only when given)."""
        out = {"sketches": self._body(self.sketch_tower, sketches, "sketch")}
        if images is not None:
            out["images"] = self._body(self.model.clip.visual, images, "photo")
        if tokens is not None:
            out["tokens"] = self.text_body(tokens)
        return out

    @torch.no_grad()
    def text_body(self, tokens: torch.Tensor) -> torch.Tensor:
        text = self.model.clip.text
        tokens = trim_padding(tokens, text.config.pad_token_id)
        mask = (tokens != text.config.pad_token_id).long()
        return text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask).float()

    def heads(self, photo_features, sketch_features, text_features) -> tuple:
        """(photo, sketch, text) joint embeddings and the heads' logits by kind ({} without heads)."""
        photos, photo_logits = self._head(self.model.clip.visual, photo_features, "photo")
        sketch_emb, sketch_logits = self._head(self.sketch_tower, sketch_features, "sketch")
        text_emb, text_logits = self.model.text_outputs(self.model.clip.text.proj(text_features))
        return photos, sketch_emb, text_emb, {"photo": photo_logits, "sketch": sketch_logits, "text": text_logits}

    def forward(self, images, sketches, tokens, has_sketch=None, has_text=None, category_texts=None):
        """As FsbirModel's forward; `category_texts` are the class names' cached text features."""
        *outputs, logits = self.heads(images, sketches, tokens)
        if category_texts is not None:
            logits["names"] = self.model.text_outputs(self.model.clip.text.proj(category_texts))[1]
        return self.model.joint_outputs(*outputs, logits, has_sketch, has_text)

    @torch.no_grad()
    def embed(self, table: "FeatureTable") -> dict:
        """Embeddings of a cached split in `embed_split`'s form (clean sketches, view 0)."""
        photo, sketch, text, logits = self.heads(table.photo, table.sketch[0], table.text[0])
        m = self.model
        return {"photo": m.vector(photo, logits["photo"], "photo").cpu(),
                "sketch": m.vector(sketch, logits["sketch"], "sketch").cpu(),
                "text": m.vector(text, logits["text"], "text", table.texts[0]).cpu(), "product_id": table.product_id,
                "caption": table.caption, "category": table.category}


@dataclass
class FeatureTable:
    """One split's body features, one row per product: photo (N, D), sketch (views, N, D), text
    (1 + caption templates, N, D): the caption, then each template's text, whose strings are
    `texts` (1 + caption templates lists of N)."""

    photo: torch.Tensor
    sketch: torch.Tensor
    text: torch.Tensor
    product_id: list[str]
    caption: list[str]
    category: list
    texts: list[list[str]]
    columns: dict[str, list] = field(default_factory=dict)  # every extra shard column read, by name


def view_count(views: int, augment) -> int:
    """Sketch views worth caching: all asked for under augmentation, else the one clean view."""
    return max(1, views) if augment is not None and augment.enabled else 1


def cache_features(towers: CachedTowers, shards: str, loader_cfg: LoaderConfig, pp, tokenizer, views: int,
                   device: str, on_rows: Callable[[int], None] | None = None,
                   sketch_shards: tuple[str, ...] = ()) -> FeatureTable:
    """Run the locked bodies over a split once; sketches once per view (view v draws its
    augmentations as epoch v would, so they depend only on the seed). Without augmentation there
    is one view. The text of the caption and of each of `loader_cfg.caption_templates` is cached.
    Every row is read, in shard order; a repeated product is kept once. `sketch_shards`: shard
    folders of the same catalog drawn in other sketch styles; their sketches, matched by product
    id, add as many views each (a product one lacks keeps its own clean sketch there)."""
    views = view_count(views, loader_cfg.augment)
    templates = loader_cfg.caption_templates
    loader_cfg = replace(loader_cfg, caption_templates=(),
                         extra_columns=tuple(dict.fromkeys(loader_cfg.extra_columns + template_columns(templates))))
    model = towers.model
    was_training = model.training
    model.eval()
    photos, texts, sketches, ids, captions, strings = [], [], [], [], [], []
    columns: dict[str, list] = {c: [] for c in loader_cfg.extra_columns}
    for folder, view in ((f, v) for f in (shards, *sketch_shards) for v in range(views)):
        first = folder == shards and view == 0
        view_cfg = replace(loader_cfg, augment=None if view == 0 else loader_cfg.augment, drop_last=False, photos=first,
                           extra_columns=loader_cfg.extra_columns if first else ())
        loader, dataset = make_loader(folder, view_cfg, pp, tokenizer, shuffle=False)
        dataset.set_epoch(view)
        seen: dict[str, torch.Tensor] = {}
        for batch in loader:
            keep = [i for i, p in enumerate(batch["product_id"]) if p not in seen]
            rows = torch.tensor(keep, dtype=torch.long)
            feats = towers.bodies(batch["images"][rows].to(device) if first else None,
                                  batch["sketches"][rows].to(device), batch["tokens"][rows].to(device) if first else None)
            seen.update(zip((batch["product_id"][i] for i in keep), feats["sketches"].cpu()))
            if first:
                photos.append(feats["images"].cpu())
                variants = [caption_choices({c: batch[c][i] for c in ("caption",) + loader_cfg.extra_columns}, templates)
                            for i in keep]
                strings += variants
                texts.append(torch.stack([feats["tokens"].cpu()] + [
                    towers.text_body(tokenizer([v[t] for v in variants]).to(device)).cpu()
                    for t in range(1, 1 + len(templates))]))
                ids += [batch["product_id"][i] for i in keep]
                captions += [batch["caption"][i] for i in keep]
                for c, values in columns.items():
                    values += [batch[c][i] for i in keep]
            if on_rows:
                on_rows(len(keep))
        own = sketches[0] if sketches else None
        sketches.append(torch.stack([seen[pid] if pid in seen else own[i] for i, pid in enumerate(ids)]))
    model.train(was_training)
    return FeatureTable(photo=torch.cat(photos), sketch=torch.stack(sketches), text=torch.cat(texts, dim=1),
                        product_id=ids, caption=captions, texts=[list(t) for t in zip(*strings)],
                        category=columns[loader_cfg.extra_columns[0]] if columns else [None] * len(ids), columns=columns)


def grouped_order(groups: list, batch_size: int, per_batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of the rows in which each batch comes from about `per_batch` groups: each
    group's rows, shuffled, are cut into pieces of batch_size / per_batch, and the pieces shuffled."""
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    piece = max(1, batch_size // per_batch)
    pieces = []
    for g in sorted(members, key=str):
        rows = torch.tensor(members[g])
        pieces += list(rows[torch.randperm(len(rows), generator=generator)].split(piece))
    return torch.cat([pieces[i] for i in torch.randperm(len(pieces), generator=generator)])


def caption_groups(text_features: torch.Tensor, size: int, seed: int, iterations: int = 20) -> list[int]:
    """Groups of about `size` rows whose captions are alike: k-means (cosine) on their features."""
    x = F.normalize(text_features.float(), dim=-1)
    k = max(1, len(x) // size)
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assign = (x @ centres.T).argmax(dim=1)
        for c in range(k):
            rows = assign == c
            centres[c] = F.normalize(x[rows].mean(0), dim=0) if rows.any() else x[torch.randint(len(x), (1,), generator=generator)][0]
    return (x @ centres.T).argmax(dim=1).tolist()


@dataclass
class SketchPairs:
    """People's drawings of training products (`--sketch-pairs`): body features, the row of the
    product each one draws, and the share of a product's steps in which one of them is its query."""

    features: torch.Tensor  # (M, D)
    rows: torch.Tensor  # (M,) rows of the FeatureTable
    rate: float = 0.5


@torch.no_grad()
def cache_sketch_pairs(towers: CachedTowers, sketches: torch.Tensor, product_ids: list, table: FeatureTable,
                       device: str, rate: float = 0.5) -> tuple[SketchPairs, int]:
    """The drawings of products in `table`, through the sketch body; also how many drew others."""
    index = {pid: i for i, pid in enumerate(table.product_id)}
    keep = [i for i, pid in enumerate(product_ids) if pid in index]
    features = torch.cat([towers.bodies(None, sketches[chunk].to(device), None)["sketches"].cpu()
                          for chunk in torch.tensor(keep, dtype=torch.long).split(64)]) if keep else torch.empty(0)
    rows = torch.tensor([index[product_ids[i]] for i in keep], dtype=torch.long)
    return SketchPairs(features, rows, rate), len(product_ids) - len(keep)


def cached_batches(table: FeatureTable, batch_size: int, seed: int, epoch: int,
                   category_key: str | None = None, groups: list | None = None, per_batch: int = 4,
                   pairs: SketchPairs | None = None) -> Iterator[dict]:
    """An epoch of full batches over a cached split: a shuffled order (with `groups`, one in which
    each batch comes from about `per_batch` of them) and, for each row, one of its sketch views and
    one of its texts, drawn from (seed, epoch) alone, so a resumed run replays them. With `pairs`,
    a product people drew is queried by one of their drawings at `pairs.rate`. With
    `category_key`, each batch carries the rows' categories under it, as a loader batch does."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    n = len(table.product_id)
    order = torch.randperm(n, generator=generator) if groups is None else grouped_order(groups, batch_size, per_batch, generator)
    view = torch.randint(table.sketch.shape[0], (n,), generator=generator)
    n_texts = table.text.shape[0]  # with no templates, no draw: the generator's sequence stays as it was
    text = torch.randint(n_texts, (n,), generator=generator) if n_texts > 1 else torch.zeros(n, dtype=torch.long)
    drawing = torch.full((n,), -1, dtype=torch.long)  # the person's drawing that queries each row, if any
    if pairs is not None and len(pairs.rows):  # with no pairs, no draw: the sequence stays as it was
        pick = torch.randperm(len(pairs.rows), generator=generator)  # one of a product's drawings, at random
        drawing[pairs.rows[pick]] = pick
        drawing[torch.rand(n, generator=generator) >= pairs.rate] = -1
    for start in range(0, n - batch_size + 1, batch_size):
        rows = order[start:start + batch_size]
        sketches = table.sketch[view[rows], rows]
        drawn = drawing[rows] >= 0
        if drawn.any():
            sketches[drawn] = pairs.features[drawing[rows][drawn]]
        batch = {"images": table.photo[rows], "sketches": sketches, "tokens": table.text[text[rows], rows],
                 "caption": [table.caption[i] for i in rows.tolist()],
                 "texts": [table.texts[t][i] for t, i in zip(text[rows].tolist(), rows.tolist())]}
        if category_key:
            batch[category_key] = [table.category[i] for i in rows.tolist()]
        yield batch
