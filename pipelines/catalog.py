"""Catalog readers: any supported catalog → a stream of CatalogRow (metadata, image reference).

Readers never decode images; they resolve where the bytes are, confine file paths to the catalog
root and flag rows that cannot be used (unsafe path, no image reference, duplicate product) so the
row is still written, with its reason.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from fsbir import FsbirError
from fsbir.shardformat import Status, extra_column_names

from .paths import CatalogRefError, Confiner

FORMATS = ("auto", "imagefolder", "csv", "jsonl", "parquet", "hf")
IMAGE_COLUMN_GUESSES = ("image", "file_name", "image_path", "path", "jpg", "filepath")
CAPTION_COLUMN_GUESSES = ("caption", "text", "productDisplayName", "title", "description")
ID_COLUMN_GUESSES = ("product_id", "id")


class CatalogError(FsbirError):
    """The catalog as a whole cannot be read (bad path, unknown column): fail before any work."""


@dataclass(frozen=True)
class CatalogSpec:
    source: str
    format: str = "auto"
    image_column: str | None = None
    caption_column: str | None = None
    id_column: str | None = None
    image_pattern: str | None = None
    hf_split: str = "train"


@dataclass
class CatalogRow:
    index: int
    product_id: str
    caption: str | None
    image_bytes: bytes | None = None
    image_path: str | None = None  # absolute, already confined to the root
    image_root: str | None = None  # the root it was confined to; the worker checks the opened file again
    image_ref: str | None = None  # the reference as written in the catalog
    status: str = Status.OK
    error_message: str | None = None
    extras: dict[str, str | None] = field(default_factory=dict)


def clean_text(value: Any) -> str | None:
    """Catalog cell → str, or None for missing values (None, NaN, blank); never the string 'nan'."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def sniff_format(source: str) -> str:
    if source.startswith("hf:"):
        return "hf"
    path = Path(source)
    if path.is_dir():
        if (path / "metadata.jsonl").exists() or (path / "metadata.csv").exists():
            return "imagefolder"
        if any(path.glob("*.parquet")):
            return "parquet"
        raise CatalogError(f"{source}: a folder needs metadata.jsonl / metadata.csv (imagefolder) or *.parquet files")
    suffix = path.suffix.lower()
    for fmt, suffixes in (("csv", (".csv", ".tsv")), ("jsonl", (".jsonl", ".json")), ("parquet", (".parquet",))):
        if suffix in suffixes:
            if not path.exists():
                raise CatalogError(f"{source}: no such file")
            return fmt
    if not path.exists():
        raise CatalogError(f"{source}: no such file or folder")
    raise CatalogError(f"{source}: cannot tell the catalog format from the name; pass --format {{{','.join(FORMATS[1:])}}}")


def _pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], what: str,
                 where: str, required: bool) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise CatalogError(f"{what} column {wanted!r} not found in {where}; columns are: {', '.join(columns)}")
        return wanted
    for guess in guesses:
        if guess in columns:
            return guess
    if required:
        raise CatalogError(
            f"no {what} column in {where} (looked for {', '.join(guesses)}); columns are: {', '.join(columns)}"
        )
    return None


class _RowBuilder:
    """Shared by every reader: column choice, path confinement, duplicate detection."""

    def __init__(self, spec: CatalogSpec, columns: list[str], root: Path, where: str):
        self.root = root.resolve()
        self.confine = Confiner(self.root)
        self.pattern = spec.image_pattern
        self.id_col = _pick_column(columns, spec.id_column, ID_COLUMN_GUESSES, "id", where, required=False)
        self.caption_col = _pick_column(columns, spec.caption_column, CAPTION_COLUMN_GUESSES, "caption", where, True)
        if self.pattern:
            fields = [f.split("}")[0].split(":")[0] for f in self.pattern.split("{")[1:]]
            for name in fields:
                if name not in columns:
                    raise CatalogError(
                        f"--image-pattern uses {{{name}}} but {where} has no such column; columns are: {', '.join(columns)}"
                    )
            self.image_col = None
        else:
            self.image_col = _pick_column(columns, spec.image_column, IMAGE_COLUMN_GUESSES, "image", where, True)
        used = {self.id_col, self.caption_col, self.image_col}
        # {catalog column: shard column}; names the shard schema uses get a `catalog_` prefix
        self.extra_cols = extra_column_names(c for c in columns if c not in used)
        self.seen: set[str] = set()

    def row(self, index: int, record: dict[str, Any]) -> CatalogRow:
        caption = clean_text(record.get(self.caption_col))
        extras = {stored: clean_text(record.get(c)) for c, stored in self.extra_cols.items()}
        row = CatalogRow(index=index, product_id="", caption=caption, extras=extras)
        ref: str | None = None
        if self.pattern:
            try:
                ref = self.pattern.format_map({k: clean_text(v) or "" for k, v in record.items()})
            except (KeyError, ValueError, IndexError) as exc:
                row.status, row.error_message = Status.BAD_IMAGE_REF, f"--image-pattern failed: {exc}"
        else:
            value = record.get(self.image_col)
            if isinstance(value, dict):  # HF / img2dataset {bytes, path} struct
                row.image_bytes = value.get("bytes") or None
                ref = clean_text(value.get("path"))
            elif isinstance(value, (bytes, bytearray, memoryview)):
                row.image_bytes = bytes(value)
            else:
                ref = clean_text(value)
        row.image_ref = ref
        if row.image_bytes is None and row.status == Status.OK:
            if not ref:
                row.status, row.error_message = Status.MISSING_IMAGE_REF, "no image bytes or path in this row"
            else:
                try:
                    row.image_path = self.confine(ref)
                    row.image_root = str(self.root)
                except CatalogRefError as exc:
                    row.status, row.error_message = exc.status, str(exc)
        pid = clean_text(record.get(self.id_col)) if self.id_col else None
        if pid is None:
            pid = Path(ref).stem if ref and not self.id_col else f"row-{index}"
        row.product_id = pid
        if pid in self.seen:
            if row.status == Status.OK:
                row.status, row.error_message = Status.DUPLICATE_PRODUCT, f"product_id {pid!r} appeared earlier in the catalog"
        else:
            self.seen.add(pid)
        return row


# Scraped catalogs carry long descriptions; csv's default 128 KiB field limit would abort the read.
csv.field_size_limit(2**31 - 1)


def _csv_rows(path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    """Stream a CSV with the header as keys. Overflowing lines (unquoted commas in the last field,
    common in scraped catalogs such as Kaggle's styles.csv) are folded into the last column instead
    of being dropped, so no row is lost."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        n = len(header)
        for values in reader:
            if not values:
                continue
            if len(values) > n:
                values = values[: n - 1] + [delimiter.join(values[n - 1:])]
            yield dict(zip(header, values + [None] * (n - len(values))))


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any] | str]:
    """Yield each JSON object, or the error text for a line that is not a JSON object."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line is not valid JSON: {exc}"
                continue
            yield obj if isinstance(obj, dict) else f"line is JSON but not an object: {type(obj).__name__}"


def _jsonl_columns(path: Path, probe: int = 1000) -> list[str]:
    columns: dict[str, None] = {}
    for i, obj in enumerate(_jsonl_rows(path)):
        if isinstance(obj, dict):
            columns.update(dict.fromkeys(obj))
        if i >= probe:
            break
    return list(columns)


def _table_source(spec: CatalogSpec, fmt: str) -> tuple[Path, Path, list[str], Iterator[dict[str, Any] | str]]:
    """(root, table file, columns, records) for csv / jsonl / imagefolder catalogs."""
    path = Path(spec.source)
    if fmt == "imagefolder":
        root = path
        table = path / "metadata.jsonl" if (path / "metadata.jsonl").exists() else path / "metadata.csv"
    else:
        root, table = path.parent, path
    if table.suffix.lower() in (".jsonl", ".json"):
        return root, table, _jsonl_columns(table), _jsonl_rows(table)
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    return root, table, _csv_header(table, delimiter), _csv_rows(table, delimiter)


def _parquet_source(spec: CatalogSpec) -> tuple[Path, list[str], Iterator[dict[str, Any]]]:
    import pyarrow.parquet as pq

    path = Path(spec.source)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    root = path if path.is_dir() else path.parent
    opened = []
    for f in files:  # read every footer now: a broken file is a catalog error, not a crash mid-build
        try:
            opened.append(pq.ParquetFile(f))
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for non-Parquet bytes
            raise CatalogError(f"{f} is not a readable Parquet file ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from None
    columns = opened[0].schema_arrow.names

    def records() -> Iterator[dict[str, Any]]:
        for f, pf in zip(files, opened):
            try:
                for batch in pf.iter_batches(batch_size=256):
                    yield from batch.to_pylist()
            except Exception as exc:
                raise CatalogError(f"{f} is damaged: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None

    return root, columns, records()


def _hf_source(spec: CatalogSpec) -> tuple[Path, list[str], Iterator[dict[str, Any]], str | None]:
    import datasets

    name = spec.source[3:]
    local = Path(name)
    if local.is_dir() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[spec.hf_split]
    else:
        try:
            ds = datasets.load_dataset(name, split=spec.hf_split)
        except Exception as exc:  # hub unreachable, unknown name, ...
            raise CatalogError(f"could not load the datasets dataset {name!r}: {exc}") from None
    image_col = spec.image_column or next(
        (c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None
    )
    if image_col in ds.features and isinstance(ds.features[image_col], datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
    root = local.resolve() if local.is_dir() else Path.cwd()
    return root, list(ds.column_names), iter(ds), image_col


def open_catalog(spec: CatalogSpec) -> tuple[dict[str, str], Iterator[CatalogRow]]:
    """({catalog column: shard column} of the extra columns, rows in order). Raises CatalogError up
    front for catalog-level problems, an empty catalog included."""
    fmt = sniff_format(spec.source) if spec.format == "auto" else spec.format
    if fmt not in FORMATS[1:]:
        raise CatalogError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("csv", "jsonl", "imagefolder"):
        root, table, columns, records = _table_source(spec, fmt)
        where = table.name
        if fmt == "imagefolder" and not spec.image_column and not spec.image_pattern:
            spec = replace(spec, image_column="file_name")
    elif fmt == "parquet":
        root, columns, records = _parquet_source(spec)
        where = spec.source
    else:
        root, columns, records, image_col = _hf_source(spec)
        if not spec.image_column and not spec.image_pattern:
            spec = replace(spec, image_column=image_col)
        where = spec.source
    if not columns:
        raise CatalogError(f"{where}: no columns (empty table?)")
    builder = _RowBuilder(spec, columns, root, where)
    rows = _rows(builder, records)
    first = next(rows, None)
    if first is None:
        raise CatalogError(f"{spec.source}: the catalog has no rows")
    return builder.extra_cols, itertools.chain([first], rows)


def read_catalog(spec: CatalogSpec) -> Iterator[CatalogRow]:
    """Stream the catalog's rows in order. Raises CatalogError up front for catalog-level problems."""
    return open_catalog(spec)[1]


def _rows(builder: _RowBuilder, records: Iterator[dict[str, Any] | str]) -> Iterator[CatalogRow]:
    for index, record in enumerate(records):
        if isinstance(record, str):
            yield CatalogRow(index=index, product_id=f"row-{index}", caption=None,
                             status=Status.BAD_RECORD, error_message=record)
            continue
        yield builder.row(index, record)


def count_catalog_rows(spec: CatalogSpec) -> int | None:
    """Cheap row count for a progress bar (line count / Parquet metadata); None when unknown."""
    try:
        fmt = sniff_format(spec.source) if spec.format == "auto" else spec.format
        path = Path(spec.source)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
            return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if fmt in ("csv", "jsonl", "imagefolder"):
            _, table, _, records = _table_source(spec, fmt)
            return sum(1 for _ in records)
    except Exception:  # only a progress bar's total: opening the catalog for real reports the problem
        return None
    return None
