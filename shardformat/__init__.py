"""The shard format: the contract between the sketchgen stage (which writes shards) and the
retrieval stage (which reads them). Schema, row status values, split rule, writer and reader are
defined here and nowhere else.

One row per catalog row, failures included. Each `shard-NNNNN.parquet` is written under a temp
name and renamed; its `shard-NNNNN.stats.json` is written last, so its presence means the shard is
complete.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fsbir import FsbirError
from fsbir.sketchgen.errors import BAD_ASPECT, DECODE_ERROR, TOO_LARGE, TOO_SMALL

from .atomic import atomic_path, atomic_write_bytes, atomic_write_json

__all__ = [
    "BASE_COLUMNS", "CatalogColumnClash", "IMAGE_STRUCT", "SPLITS", "STATUS_OK", "ShardWriter", "Status",
    "atomic_path", "atomic_write_bytes", "atomic_write_json", "blank_record", "count_ok_rows", "iter_shard_rows",
    "shard_files", "shard_name", "shard_schema", "split_for",
]


class Status:
    """Values of the `status` column: `ok` or the reason a row is not usable."""

    OK = "ok"
    # from the catalog reader
    BAD_RECORD = "bad_record"
    BAD_IMAGE_REF = "bad_image_ref"
    MISSING_IMAGE_REF = "missing_image_ref"
    UNSAFE_PATH = "unsafe_path"
    DUPLICATE_PRODUCT = "duplicate_product"
    # from reading the image file
    MISSING_FILE = "missing_file"
    READ_ERROR = "read_error"
    # from sketchgen
    DECODE_ERROR = DECODE_ERROR
    TOO_LARGE = TOO_LARGE
    TOO_SMALL = TOO_SMALL
    BAD_ASPECT = BAD_ASPECT
    PROCESSING_ERROR = "processing_error"
    # photo and sketch made, but no caption to train on
    EMPTY_CAPTION = "empty_caption"


STATUS_OK = Status.OK

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

BASE_SCHEMA: list[tuple[str, pa.DataType]] = [
    ("key", pa.string()),
    ("product_id", pa.string()),
    ("caption", pa.string()),
    ("split", pa.string()),
    ("image", IMAGE_STRUCT),
    ("sketch", IMAGE_STRUCT),
    ("sketch_method", pa.string()),
    ("sketch_params", pa.string()),
    ("edge_density", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("original_width", pa.int32()),
    ("original_height", pa.int32()),
    ("sha256", pa.string()),
    ("status", pa.string()),
    ("error_message", pa.string()),
]
BASE_COLUMNS: tuple[str, ...] = tuple(name for name, _ in BASE_SCHEMA)
SPLITS = ("train", "val", "test")
# A catalog column whose name the schema already uses is stored under this prefix.
CATALOG_PREFIX = "catalog_"
_HF_DTYPES = {pa.string(): "string", pa.float32(): "float32", pa.int32(): "int32"}


class CatalogColumnClash(FsbirError):
    """A catalog column cannot be stored under its own name nor under the prefixed one."""


def extra_column_names(catalog_columns: Iterable[str]) -> dict[str, str]:
    """{catalog column: shard column}. A catalog column never replaces a schema column: one named
    like a schema column (img2dataset's `status`, `width`, `sha256`, ...) is kept as
    `catalog_<name>`."""
    names: dict[str, str] = {}
    for column in catalog_columns:
        stored = CATALOG_PREFIX + column if column in BASE_COLUMNS else column
        if stored in BASE_COLUMNS or stored in names.values():
            raise CatalogColumnClash(
                f"catalog column {column!r} would be stored as {stored!r}, which is taken; rename one of them")
        names[column] = stored
    return names


def shard_schema(extra_columns: Iterable[str] = ()) -> pa.Schema:
    """The shard schema; extra catalog columns are strings. The `huggingface` metadata entry makes
    `datasets` decode `image` and `sketch` as PIL images."""
    clash = set(extra_columns) & set(BASE_COLUMNS)
    if clash:
        raise CatalogColumnClash(f"extra columns {sorted(clash)} are schema columns")
    fields = list(BASE_SCHEMA) + [(c, pa.string()) for c in extra_columns]
    features = {
        name: {"_type": "Image"} if dtype == IMAGE_STRUCT else {"dtype": _HF_DTYPES[dtype], "_type": "Value"}
        for name, dtype in fields
    }
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(n, t) for n, t in fields], metadata=metadata)


def blank_record(**values) -> dict:
    """A record with every schema column present (None unless given); unknown names are refused,
    so the writer and the schema cannot drift apart."""
    unknown = set(values) - set(BASE_COLUMNS)
    if unknown:
        raise KeyError(f"not shard columns: {sorted(unknown)}")
    return {**dict.fromkeys(BASE_COLUMNS), **values}


def split_for(product_id: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """Stable split from a hash of the product id: the same product lands in the same split on
    every run and machine, whatever the row order."""
    u = int.from_bytes(hashlib.sha1(product_id.encode("utf-8")).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def shard_name(shard_id: int) -> str:
    return f"shard-{shard_id:05d}"


class ShardWriter:
    """Writes one shard: Parquet under a temp name then renamed, then its stats file.

    The stats file is written last, so its presence means the shard is complete: a re-run skips
    exactly the shards that have one.
    """

    def __init__(self, out_dir: str | os.PathLike, schema: pa.Schema):
        self.out_dir = Path(out_dir)
        self.schema = schema

    def paths(self, shard_id: int) -> tuple[Path, Path]:
        name = shard_name(shard_id)
        return self.out_dir / f"{name}.parquet", self.out_dir / f"{name}.stats.json"

    def is_done(self, shard_id: int) -> bool:
        return self.paths(shard_id)[1].exists()

    @contextmanager
    def stream(self, shard_id: int, rows_per_group: int = 256) -> Iterator["ShardSink"]:
        """A sink for one shard's records, written a row group at a time as they come, so a worker
        holds one row group of images, not the whole shard. The shard appears only when the block
        ends with `sink.finish(stats)`; an error in the block leaves no file behind."""
        parquet_path, stats_path = self.paths(shard_id)
        with atomic_path(parquet_path) as tmp:
            sink = ShardSink(tmp, self.schema, rows_per_group)
            try:
                yield sink
            finally:
                sink.close()
            if sink.stats is None:
                raise RuntimeError(f"shard {shard_id}: the block ended without finish(stats)")
        atomic_write_json(stats_path, sink.stats)


class ShardSink:
    """Records → row groups of a Parquet file (see `ShardWriter.stream`)."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int):
        self.schema, self.rows_per_group = schema, rows_per_group
        self.stats: dict | None = None
        self._batch: list[dict] = []
        self._writer = pq.ParquetWriter(path, schema, compression=_compression(schema),
                                        use_dictionary=_dictionary_columns(schema))

    def append(self, record: dict) -> None:
        self._batch.append(record)
        if len(self._batch) >= self.rows_per_group:
            self._flush()

    def finish(self, stats: dict) -> None:
        """Write what is left; the stats are written once the file is closed and renamed."""
        self._flush()
        self.stats = stats

    def close(self) -> None:
        if self._writer.is_open:
            self._writer.close()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self.schema))
            self._batch = []


def _compression(schema: pa.Schema) -> dict[str, str]:
    """zstd for every column but the image bytes: JPEG and PNG are compressed already, and
    zstd over them costs time for nothing."""
    codecs = {}
    for field in schema:
        if field.type == IMAGE_STRUCT:
            codecs.update({f"{field.name}.bytes": "none", f"{field.name}.path": "zstd"})
        else:
            codecs[field.name] = "zstd"
    return codecs


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary encoding for every column but the image structs: JPEG and PNG bytes never
    repeat, and trying a dictionary over them hashes every image for nothing (a 256-row group
    of 24 KB images: 17.5 against 14.8 µs a row to write)."""
    return [field.name for field in schema if field.type != IMAGE_STRUCT]


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The finished shard files of a build output folder (or a single shard file)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FsbirError(f"no shards folder at {p}; make one with `fsbir build-dataset CATALOG {p}`")
    files = sorted(f for f in p.glob("shard-*.parquet") if f.with_suffix("").with_suffix(".stats.json").exists())
    if not files:
        raise FsbirError(f"no finished shards (shard-*.parquet with a .stats.json) in {p}")
    return files


def iter_shard_rows(path: str | os.PathLike, columns: list[str] | None = None,
                    batch_size: int = 256) -> Iterator[dict]:
    """Stream rows of every finished shard as dicts, a batch at a time."""
    for f in shard_files(path):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
            yield from batch.to_pylist()


def count_ok_rows(path: str | os.PathLike, split: str = "all") -> int:
    """Number of usable (`ok`) rows of a split (`all` for every split), from two small columns."""
    n = 0
    for f in shard_files(path):
        t = pq.read_table(f, columns=["split", "status"])
        mask = pc.equal(t["status"], Status.OK)
        if split != "all":
            mask = pc.and_(mask, pc.equal(t["split"], split))
        n += pc.sum(mask).as_py() or 0
    return n
