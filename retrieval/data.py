"""Stream shard rows into (photo, sketch, tokens) batches for training and evaluation."""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from fsbir import FsbirError
from fsbir.shardformat import STATUS_OK, shard_files
from fsbir.sketchgen import decode_sketch
from fsbir.sketchgen.augment import SketchAugment, augment_sketch

from .factory import Preprocess
from .transforms import decode_photo, photo_tensor, sketch_tensor

ROW_COLUMNS = ["product_id", "caption", "image", "sketch"]


def select_split(split: str) -> Callable:
    return (lambda s: True) if split == "all" else (lambda s: s == split)


def iter_rows(shards: str | Path, split: str, columns: list[str], part: int = 0, parts: int = 1) -> Iterator[dict]:
    """`ok` rows of a split; `part` of `parts` takes every parts-th row (a DataLoader worker's share)."""
    want = select_split(split)
    cols = list(dict.fromkeys(columns + ["split", "status"]))
    i = 0
    for f in shard_files(shards):
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=128, columns=cols):
            for row in batch.to_pylist():
                if row["status"] != STATUS_OK or not want(row["split"]):
                    continue
                if i % parts == part:
                    yield row
                i += 1


@lru_cache(maxsize=64)
def template_columns(templates: tuple[str, ...]) -> tuple[str, ...]:
    """The shard columns that caption templates name, in order of first use (parsed once per
    template, not once per row)."""
    names = (field for t in templates for _, field, _, _ in string.Formatter().parse(t) if field)
    return tuple(dict.fromkeys(names))


def check_template_columns(shards: str | Path, templates: tuple[str, ...]) -> None:
    """FsbirError unless every template parses and names only columns the shards have."""
    if not templates:
        return
    try:
        names = template_columns(templates)
    except ValueError as exc:
        raise FsbirError(f"a caption template does not parse ({exc}): {', '.join(map(repr, templates))}") from None
    if any(not template_columns((t,)) for t in templates):
        raise FsbirError("a caption template must name shard columns in braces, e.g. 'a {baseColour} {articleType}'")
    check_columns(shards, names, "caption templates name")


def shard_columns(shards: str | Path) -> list[str]:
    return pq.read_schema(shard_files(shards)[0]).names


def check_columns(shards: str | Path, names, what: str) -> None:
    """FsbirError unless the shards have every column named (`what`: who names them, for the message)."""
    have = shard_columns(shards)
    missing = [n for n in names if n not in have]
    if missing:
        raise FsbirError(f"{what} {', '.join(missing)}, not shard columns; the shards have {', '.join(have)}")


def check_option_columns(shards: str | Path, options: dict[str, str | None]) -> None:
    """FsbirError unless each command-line option's column (option → column; None: not asked) is a
    shard column, the message naming the option."""
    have = shard_columns(shards)
    for option, column in options.items():
        if column and column not in have:
            raise FsbirError(f"{option} {column!r} is not a shard column; the shards have {', '.join(have)}")


def caption_choices(row: dict, templates: tuple[str, ...]) -> list[str]:
    """The row's caption, then each template filled from the row's columns (the caption again
    where a column it names is empty in this row): one text per template, whatever the row."""
    caption = row["caption"] or ""
    choices = [caption]
    for t in templates:
        values = {c: row.get(c) for c in template_columns((t,))}
        choices.append(t.format_map(values) if all(v not in (None, "") for v in values.values()) else caption)
    return choices


def unique_batches(rows: Iterator[dict], batch_size: int, drop_last: bool) -> Iterator[list[dict]]:
    """Group rows into batches that never hold the same product twice (InfoNCE would otherwise
    treat a true match as a negative); a repeated product waits for the next batch."""
    batch, seen, waiting = [], set(), []
    for row in rows:
        if row["product_id"] in seen:
            waiting.append(row)
            continue
        batch.append(row)
        seen.add(row["product_id"])
        if len(batch) == batch_size:
            yield batch
            batch, seen = [], set()
            for w in waiting[:]:
                if w["product_id"] not in seen and len(batch) < batch_size:
                    batch.append(w)
                    seen.add(w["product_id"])
                    waiting.remove(w)
    rest = batch + waiting
    while rest:
        batch, seen, later = [], set(), []
        for r in rest:
            (later if r["product_id"] in seen or len(batch) == batch_size else batch).append(r)
            seen.add(r["product_id"])
        if len(batch) == batch_size or (batch and not drop_last):
            yield batch
        rest = later


@dataclass(frozen=True)
class LoaderConfig:
    batch_size: int = 64
    split: str = "train"
    shuffle_buffer: int = 2048
    seed: int = 0
    workers: int = 0
    drop_last: bool = True
    augment: SketchAugment | None = None
    extra_columns: tuple[str, ...] = ()
    rank: int = 0  # distributed training: this process's share of the rows
    world: int = 1
    photos: bool = True  # False: batches without "images" (no photo decoding)
    # Short queries filled from shard columns ("a {baseColour} {articleType}"); each row's tokens are
    # its caption or one of these, drawn per row (see `caption_choices`); their columns are read too.
    caption_templates: tuple[str, ...] = ()


class ShardBatches(IterableDataset):
    """An IterableDataset of ready batches. Rows are split across ranks × DataLoader workers (each
    row goes to exactly one part); order and augmentations depend only on (seed, epoch, part), so a
    resumed run sees the same data."""

    def __init__(self, shards: str | Path, cfg: LoaderConfig, preprocess: Preprocess, tokenizer: Callable,
                 shuffle: bool = True):
        self.shards, self.cfg, self.pp, self.tokenizer, self.shuffle = shards, cfg, preprocess, tokenizer, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shuffled(self, rows: Iterator[dict], rng: random.Random) -> Iterator[dict]:
        buf: list[dict] = []
        for row in rows:
            buf.append(row)
            if len(buf) >= self.cfg.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        part, parts = self.cfg.rank * workers + worker, self.cfg.world * workers
        columns = ROW_COLUMNS + list(self.cfg.extra_columns) + list(template_columns(self.cfg.caption_templates))
        rows = iter_rows(self.shards, self.cfg.split, columns, part, parts)
        if self.shuffle:
            rows = self._shuffled(rows, random.Random(f"{self.cfg.seed}-{self.epoch}-{part}"))
        np_rng = np.random.default_rng([self.cfg.seed, self.epoch, part])
        for batch in unique_batches(rows, self.cfg.batch_size, self.cfg.drop_last):
            if len(batch) < 2 and self.cfg.drop_last:
                continue
            yield self.collate(batch, np_rng)

    def collate(self, rows: list[dict], rng: np.random.Generator) -> dict:
        size = self.pp.image_size
        photos, sketches = [], []
        for r in rows:
            if self.cfg.photos:
                photos.append(photo_tensor(decode_photo(r["image"]["bytes"], size), self.pp))
            sk = decode_sketch(r["sketch"]["bytes"])
            if self.cfg.augment is not None and self.cfg.augment.enabled:
                sk = augment_sketch(sk, rng, self.cfg.augment)
            sketches.append(sketch_tensor(sk, self.pp))
        texts = [r["caption"] or "" for r in rows]
        if self.cfg.caption_templates:
            pick = rng.integers(1 + len(self.cfg.caption_templates), size=len(rows))
            texts = [caption_choices(r, self.cfg.caption_templates)[i] for r, i in zip(rows, pick)]
        out = {
            **({"images": torch.stack(photos)} if photos else {}),
            "sketches": torch.stack(sketches),
            "tokens": self.tokenizer(texts),
            "product_id": [r["product_id"] for r in rows],
            "caption": [r["caption"] or "" for r in rows],
            "texts": texts,  # what the tokens say (the caption or a template's text)
        }
        for c in self.cfg.extra_columns + template_columns(self.cfg.caption_templates):
            out[c] = [r.get(c) for r in rows]
        return out


def make_loader(shards: str | Path, cfg: LoaderConfig, preprocess: Preprocess, tokenizer: Callable,
                shuffle: bool = True) -> tuple[DataLoader, ShardBatches]:
    ds = ShardBatches(shards, cfg, preprocess, tokenizer, shuffle)
    loader = DataLoader(ds, batch_size=None, num_workers=cfg.workers, persistent_workers=False,
                        prefetch_factor=4 if cfg.workers else None)
    return loader, ds
