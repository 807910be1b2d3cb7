"""The worker: one catalog row → one shard record; one shard job → one written shard."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable

from fsbir.shardformat import ShardWriter, Status, blank_record, shard_schema, split_for
from fsbir.sketchgen import SketchgenError, make_pair
from fsbir.sketchgen.pair import PairSettings

from .catalog import CatalogRow


@dataclass
class ShardJob:
    shard_id: int
    rows: list[CatalogRow]


@dataclass(frozen=True)
class WorkerSettings:
    pair: PairSettings
    out_dir: str
    extra_columns: tuple[str, ...]  # shard names of the extra catalog columns
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_file_bytes: int = 64 * 1024 * 1024


def _read_image(row: CatalogRow, max_bytes: int) -> bytes:
    if row.image_bytes is not None:
        return row.image_bytes
    try:
        with open(row.image_path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise SketchgenError(Status.MISSING_FILE, f"no such file: {row.image_ref}") from None
    except IsADirectoryError:
        raise SketchgenError(Status.MISSING_FILE, f"is a folder, not a file: {row.image_ref}") from None
    except OSError as exc:
        raise SketchgenError(Status.READ_ERROR, f"{row.image_ref}: {exc}") from None
    if len(data) > max_bytes:
        raise SketchgenError(Status.TOO_LARGE, f"{row.image_ref}: file larger than {max_bytes} bytes")
    return data


def process_row(row: CatalogRow, key: str, settings: WorkerSettings) -> dict:
    """Always returns a record: a failure becomes a row with its status and message."""
    record = blank_record(
        key=key,
        product_id=row.product_id,
        caption=row.caption,
        split=split_for(row.product_id, settings.val_fraction, settings.test_fraction),
        status=row.status,
        error_message=row.error_message,
    )
    record.update({c: row.extras.get(c) for c in settings.extra_columns})
    if row.status != Status.OK:
        return record
    try:
        data = _read_image(row, settings.max_file_bytes)
        record["sha256"] = hashlib.sha256(data).hexdigest()
        pair = make_pair(data, row.caption, settings.pair)
    except SketchgenError as exc:
        record["status"], record["error_message"] = exc.reason, str(exc)
        return record
    except Exception as exc:  # never let one row kill a long job
        record["status"], record["error_message"] = Status.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"
        return record
    size = settings.pair.image_size
    record.update(
        image={"bytes": pair.image_jpeg, "path": f"{key}.jpg"},
        sketch={"bytes": pair.sketch_png, "path": f"{key}.png"},
        sketch_method=pair.method,
        sketch_params=json.dumps(pair.params, sort_keys=True),
        edge_density=pair.edge_density,
        width=size,
        height=size,
        original_width=pair.original_size[0],
        original_height=pair.original_size[1],
    )
    if row.caption is None:
        record["status"], record["error_message"] = Status.EMPTY_CAPTION, "caption is missing or blank"
    return record


def run_shard_job(job: ShardJob, settings: WorkerSettings, on_row: Callable[[int], None] | None = None) -> dict:
    """Process and write one shard; returns its stats (also written beside the shard)."""
    start = time.perf_counter()
    records = []
    for i, row in enumerate(job.rows):
        records.append(process_row(row, f"{job.shard_id:05d}{i:05d}", settings))
        if on_row is not None:
            on_row(1)
    by_status: dict[str, int] = {}
    by_method: dict[str, int] = {}
    for r in records:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        if r.get("sketch_method"):
            by_method[r["sketch_method"]] = by_method.get(r["sketch_method"], 0) + 1
    stats = {
        "shard_id": job.shard_id,
        "rows": len(records),
        "first_index": job.rows[0].index if job.rows else None,
        "last_index": job.rows[-1].index if job.rows else None,
        "by_status": by_status,
        "by_method": by_method,
        "seconds": round(time.perf_counter() - start, 3),
    }
    ShardWriter(settings.out_dir, shard_schema(settings.extra_columns)).write(job.shard_id, records, stats)
    return stats
