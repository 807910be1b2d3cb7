"""Parquet shards in the design's schema: atomic writes, per-shard stats, Hugging Face features."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

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
SPLITS = ("train", "val", "test")
_HF_DTYPES = {pa.string(): "string", pa.float32(): "float32", pa.int32(): "int32"}


def shard_schema(extra_columns: Iterable[str] = ()) -> pa.Schema:
    """The shard schema; extra catalog columns are strings. The `huggingface` metadata entry makes
    `datasets` decode `image` and `sketch` as PIL images."""
    base_names = {name for name, _ in BASE_SCHEMA}
    fields = list(BASE_SCHEMA) + [(c, pa.string()) for c in extra_columns if c not in base_names]
    features = {
        name: {"_type": "Image"} if dtype == IMAGE_STRUCT else {"dtype": _HF_DTYPES[dtype], "_type": "Value"}
        for name, dtype in fields
    }
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(n, t) for n, t in fields], metadata=metadata)


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


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

    def write(self, shard_id: int, records: list[dict], stats: dict) -> Path:
        parquet_path, stats_path = self.paths(shard_id)
        table = pa.Table.from_pylist(records, schema=self.schema)
        tmp = parquet_path.with_name(f".{parquet_path.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, parquet_path)
        atomic_write_json(stats_path, stats)
        return parquet_path


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The finished shard files of a build output folder (or a single shard file)."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = sorted(f for f in p.glob("shard-*.parquet") if f.with_suffix("").with_suffix(".stats.json").exists())
    if not files:
        raise FileNotFoundError(f"no finished shards (shard-*.parquet with a .stats.json) in {p}")
    return files


def iter_shard_rows(path: str | os.PathLike, columns: list[str] | None = None,
                    batch_size: int = 256) -> Iterator[dict]:
    """Stream rows of every finished shard as dicts, a batch at a time."""
    for f in shard_files(path):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
            yield from batch.to_pylist()
