"""The worker: one catalog row → one shard record; one shard job → one written shard."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from fsbir.shardformat import ShardWriter, Status, blank_record, shard_schema, split_for
from fsbir.sketchgen import SketchgenError, make_pair
from fsbir.sketchgen.pair import PairSettings, SketchPair

from .catalog import CatalogRow
from .paths import is_inside
from .threads import Behind, ahead


@dataclass
class ShardJob:
    shard_id: int
    rows: list[CatalogRow]
    input_fingerprint: str = ""


@dataclass(frozen=True)
class WorkerSettings:
    pair: PairSettings
    out_dir: str
    extra_columns: tuple[str, ...]  # shard names of the extra catalog columns
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_file_bytes: int = 64 * 1024 * 1024
    # The worker's own steps on threads beside the sketching: files read and hashed ahead, records
    # built and written behind. They pay only where a core is spare: with a worker per core they
    # compete with sketching, and everything runs in line.
    overlap: bool = True


READ_AHEAD = 8  # rows read and hashed before the sketching needs them
WRITE_BEHIND = 16  # sketched rows waiting for their records to be written


def _read_image(row: CatalogRow, max_bytes: int) -> bytes:
    """The row's image bytes. A file is opened without following a final symlink and without
    blocking, and the opened descriptor must be a regular file inside the catalog root: a path
    swapped for a link, a FIFO or a device after the catalog check is refused, never read."""
    if row.image_bytes is not None:
        return row.image_bytes
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(row.image_path, flags)
    except FileNotFoundError:
        raise SketchgenError(Status.MISSING_FILE, f"no such file: {row.image_ref}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SketchgenError(Status.UNSAFE_PATH, f"{row.image_ref}: became a symlink after the path check") from None
        raise SketchgenError(Status.READ_ERROR, f"{row.image_ref}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SketchgenError(Status.MISSING_FILE, f"is a folder, not a file: {row.image_ref}")
        if not stat.S_ISREG(info.st_mode):
            raise SketchgenError(Status.READ_ERROR, f"{row.image_ref}: not a regular file (a pipe, socket or device)")
        opened = _opened_path(fd)
        if opened is not None and row.image_root and not is_inside(opened, row.image_root):
            raise SketchgenError(Status.UNSAFE_PATH, f"{row.image_ref}: the opened file {opened} is outside the root")
        if info.st_size > max_bytes:
            raise SketchgenError(Status.TOO_LARGE, f"{row.image_ref}: file larger than {max_bytes} bytes")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            # Asking for the size fstat gave, not the cap: read(cap) allocates the whole cap (64 MiB)
            # for every file. A file that grew since fstat is read on, still only up to the cap.
            data = fh.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise SketchgenError(Status.READ_ERROR, f"{row.image_ref}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SketchgenError(Status.TOO_LARGE, f"{row.image_ref}: file larger than {max_bytes} bytes")
    return data


def _opened_path(fd: int) -> str | None:
    """Where an open descriptor really points (Linux /proc); None where the system cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def read_and_hash(row: CatalogRow, max_bytes: int) -> tuple[bytes, str]:
    data = _read_image(row, max_bytes)
    return data, hashlib.sha256(data).hexdigest()


Read = tuple[bytes, str] | Exception | None


def read_row(row: CatalogRow, max_bytes: int) -> Read:
    """The row's (bytes, sha256), or the error reading it (kept for its record, so that a read on
    another thread fails one row, not the job); None for a row that is not `ok` in the catalog."""
    if row.status != Status.OK:
        return None
    try:
        return read_and_hash(row, max_bytes)
    except Exception as exc:  # the row's failure, recorded by `record_for`
        return exc


@dataclass
class Sketched:
    """One row after reading and sketching: its image's hash and pair, or why it has none."""

    row: CatalogRow
    sha256: str | None = None
    pair: SketchPair | None = None
    failure: Exception | None = None


def sketch_row(row: CatalogRow, read: Read, settings: WorkerSettings) -> Sketched:
    if read is None or isinstance(read, Exception):
        return Sketched(row, failure=read)
    data, sha256 = read
    try:
        return Sketched(row, sha256, make_pair(data, row.caption, settings.pair))
    except Exception as exc:  # never let one row kill a long job
        return Sketched(row, sha256, failure=exc)


def record_for(sketched: Sketched, key: str, settings: WorkerSettings) -> dict:
    """The row's shard record: always one, a failure becoming a row with its status and message."""
    row, pair = sketched.row, sketched.pair
    record = blank_record(
        key=key,
        product_id=row.product_id,
        caption=row.caption,
        split=split_for(row.product_id, settings.val_fraction, settings.test_fraction),
        status=row.status,
        error_message=row.error_message,
        sha256=sketched.sha256,
    )
    record.update({c: row.extras.get(c) for c in settings.extra_columns})
    if isinstance(sketched.failure, SketchgenError):
        record["status"], record["error_message"] = sketched.failure.reason, str(sketched.failure)
    elif sketched.failure is not None:
        record["status"] = Status.PROCESSING_ERROR
        record["error_message"] = f"{type(sketched.failure).__name__}: {sketched.failure}"
    if pair is None:
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


def process_row(row: CatalogRow, key: str, settings: WorkerSettings) -> dict:
    """One catalog row → its shard record, every step in line."""
    return record_for(sketch_row(row, read_row(row, settings.max_file_bytes), settings), key, settings)


def run_shard_job(job: ShardJob, settings: WorkerSettings, on_row: Callable[[int], None] | None = None) -> dict:
    """Process and write one shard; returns its stats (also written beside the shard). Records are
    written a row group at a time, so memory holds one row group of images, not the shard."""
    start = time.perf_counter()
    by_status: dict[str, int] = {}
    by_method: dict[str, int] = {}
    ok_by_split: dict[str, int] = {}
    writer = ShardWriter(settings.out_dir, shard_schema(settings.extra_columns))
    with writer.stream(job.shard_id) as sink:

        def write(item: tuple[int, Sketched]) -> None:
            i, sketched = item
            record = record_for(sketched, f"{job.shard_id:05d}{i:05d}", settings)
            sink.append(record)
            by_status[record["status"]] = by_status.get(record["status"], 0) + 1
            if record["status"] == Status.OK:
                ok_by_split[record["split"]] = ok_by_split.get(record["split"], 0) + 1
            if record.get("sketch_method"):
                by_method[record["sketch_method"]] = by_method.get(record["sketch_method"], 0) + 1
            if on_row is not None:
                on_row(1)

        reads = ahead(((row, read_row(row, settings.max_file_bytes)) for row in job.rows),
                      READ_AHEAD if settings.overlap else 0, "fsbir-read")
        with Behind(write, WRITE_BEHIND if settings.overlap else 0, "fsbir-write") as records:
            for i, (row, read) in enumerate(reads):
                records.put((i, sketch_row(row, read, settings)))
        stats = {
            "shard_id": job.shard_id,
            "rows": len(job.rows),
            "first_index": job.rows[0].index if job.rows else None,
            "last_index": job.rows[-1].index if job.rows else None,
            "by_status": by_status,
            "by_method": by_method,
            "ok_by_split": ok_by_split,
            "input_fingerprint": job.input_fingerprint,
            "seconds": round(time.perf_counter() - start, 3),
        }
        sink.finish(stats)
    return stats
