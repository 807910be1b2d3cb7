"""Training settings: one dataclass holds every default; a TOML file and command-line options
override it; a resumed run starts from the settings its checkpoint was trained with."""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fsbir import FsbirError
from fsbir.sketchgen.augment import SketchAugment

from ..configs import DEFAULT_MODEL, ModelSpec

FREEZE_MODES = ("auto", "towers", "none")

# Settings a resumed run may change; everything else is fixed by the checkpoint.
RUNTIME_SETTINGS = ("epochs", "device", "workers", "max_steps", "shards", "out")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    shards: str
    out: str
    model: str = DEFAULT_MODEL
    pretrained: str = "none"
    fusion: str = "avg"
    query_fusion: str | None = None  # how queries are fused after training (avg | agree); None: as `fusion`
    sketch_tower: str = "shared"
    # The colour head (retrieval/colour.py): search adds this × the agreement of the photo's and the
    # words' colour distributions to the cosine; the head learns from the captions' colour words. 0 = no head.
    colour_weight: float = 0.3
    # The category head (retrieval/category.py), with `category_column`: search adds this × the
    # agreement of the query's and the photo's category distributions. 0 = no head.
    category_head_weight: float = 0.3
    # Pretrained towers: "towers" trains only their projections (and the last `unlocked_groups` layer
    # groups), "none" fine-tunes them whole; "auto" is "towers" on a CPU (what a CPU can afford,
    # with cached features) and "none" on a GPU.
    freeze: str = "auto"
    unlocked_groups: int = 0
    # Locked towers (freeze on): their features below the first trained layer (feature maps, with
    # unlocked groups) are computed once per run, each sketch in this many views (1 clean, the rest
    # augmented), and steps train only what is above them. 0 runs the towers at every step instead.
    cache_views: int = 3
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    tower_lr_scale: float = 0.1  # pretrained towers learn at lr × this; new parts at lr
    weight_decay: float = 0.1
    warmup_steps: int = 50
    grad_clip: float = 1.0
    accum_steps: int = 1
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    shuffle_buffer: int = 2048
    query_dropout_sketch: float = 0.1
    query_dropout_text: float = 0.1
    # Weight of extra InfoNCE terms sketch→photo and text→photo beside the fused one (0 = the fused
    # loss alone; 0.5 measured better for every mode on the demo catalog, see the README).
    single_mode_weight: float = 0.5
    augment: SketchAugment = field(default_factory=SketchAugment)
    eval_k: int = 10
    max_steps: int | None = None  # stop early (smoke tests, benchmarks)
    category_column: str | None = None
    # Weight of a supervised-contrastive sketch→photo term whose positives are all photos of the
    # sketch's category (category_column); 0 = off.
    category_weight: float = 0.0
    # Short queries as shoppers type them, filled from shard columns ("a {baseColour} {articleType}"):
    # each training row's text is its catalog caption or one of these, drawn per row and epoch, so the
    # text tower learns the few words people type, not only catalog names. Validation uses captions.
    caption_templates: tuple[str, ...] = ()
    # Hard negatives: each batch filled from about `batch_groups` groups of rows, so in-batch
    # negatives share the positive's kind and differ in colour and detail. A shard column names the
    # groups ("articleType"), or "caption" clusters the captions' embeddings into groups. None: shuffled.
    batch_by: str | None = None
    batch_groups: int = 4
    # Shard folders of the same catalog built in other sketch styles (build-dataset --sketch-style
    # hed): each training sketch view is drawn from every style's views, matched by product id.
    sketch_shards: tuple[str, ...] = ()
    # People's drawings of training products (a CSV of sketch + product_id, as for eval --queries):
    # a drawn product is queried by one of its drawings in half its steps, beside its edge map.
    sketch_pairs: str | None = None
    # Human drawings that choose best.pt (a queries CSV or Quick, Draw! ndjson, as for `fsbir eval`),
    # searched against the val split; a category map as for eval.
    val_queries: str | None = None
    val_category_map: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 2, f"batch-size must be at least 2 (InfoNCE needs negatives), not {self.batch_size}"),
            (self.accum_steps >= 1, f"accum-steps must be at least 1, not {self.accum_steps}"),
            (self.workers >= 0, f"workers must be 0 or more, not {self.workers}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive finite number, not {self.lr}"),
            (self.max_steps is None or self.max_steps >= 1, f"max-steps must be at least 1, not {self.max_steps}"),
            (0 <= self.query_dropout_sketch + self.query_dropout_text <= 1,
             "query dropout of sketch and text must add up to at most 1"),
            (self.freeze in FREEZE_MODES, f"freeze must be one of {', '.join(FREEZE_MODES)}, not {self.freeze!r}"),
            (self.unlocked_groups >= 0, f"unlocked-groups must be 0 or more, not {self.unlocked_groups}"),
            (self.category_weight == 0 or bool(self.category_column),
             "category-weight needs --category-column (the catalog column that names each row's category)"),
            (0 <= self.colour_weight <= 4, f"colour-weight must be between 0 and 4, not {self.colour_weight}"),
            (0 <= self.category_head_weight <= 4,
             f"category-head-weight must be between 0 and 4, not {self.category_head_weight}"),
            (self.cache_views >= 0, f"cache-views must be 0 or more, not {self.cache_views}"),
            (1 <= self.batch_groups <= self.batch_size,
             f"batch-groups must be between 1 and the batch size, not {self.batch_groups}"),
        ]
        for ok, message in checks:
            if not ok:
                raise FsbirError(message)

    @property
    def category_head(self) -> bool:
        """Whether the model gets a category head: a category column and a weight above 0."""
        return bool(self.category_column) and self.category_head_weight > 0

    def spec(self, category_names: tuple[str, ...] = ()) -> ModelSpec:
        """The model these settings train; `category_names`: the category head's classes, read
        from the training split (none without a head)."""
        return ModelSpec(model=self.model, pretrained=self.pretrained, fusion=self.fusion, query_fusion=self.query_fusion,
                         colour_weight=self.colour_weight, sketch_tower=self.sketch_tower,
                         category_names=tuple(category_names) if self.category_head else (),
                         category_head_weight=self.category_head_weight if self.category_head else 0.0)

    def freeze_on(self, device: str) -> bool:
        """Whether the pretrained towers are locked on this device."""
        return self.freeze == "towers" or (self.freeze == "auto" and not device.startswith("cuda"))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise FsbirError(f"unknown training settings: {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        for name in ("caption_templates", "sketch_shards"):
            if isinstance(values.get(name), list):  # from JSON or TOML
                values = {**values, name: tuple(values[name])}
        if isinstance(values.get("augment"), dict):
            values = {**values, "augment": SketchAugment(**values["augment"])}
        return cls(**values)


def load_config(toml_path: str | None, overrides: dict[str, Any], saved: dict | None = None) -> TrainConfig:
    """Defaults (or, when resuming, the checkpoint's settings) < TOML file < command-line options
    that were given. A resumed run refuses changes to what the checkpoint fixes."""
    # A resumed run keeps what the checkpoint was trained with, but not an early stop (max_steps).
    values: dict[str, Any] = {k: v for k, v in (saved or {}).items() if k != "max_steps"}
    given: dict[str, Any] = {}
    if toml_path:
        try:
            with open(toml_path, "rb") as fh:
                given.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise FsbirError(f"cannot read the config file {toml_path}: {exc}") from None
    given.update(overrides)
    if saved is not None:
        changed = sorted(k for k, v in given.items() if k not in RUNTIME_SETTINGS and k in saved
                         and json.loads(json.dumps(v if not hasattr(v, "__dataclass_fields__") else asdict(v))) != saved[k])
        if changed:
            kept = ", ".join(f"{k}={saved[k]!r}" for k in changed)
            raise FsbirError(f"--resume continues with the checkpoint's settings ({kept}); drop "
                             f"{', '.join('--' + k.replace('_', '-') for k in changed)} or start a new run in another --out")
    values.update(given)
    return TrainConfig.from_dict(values)
