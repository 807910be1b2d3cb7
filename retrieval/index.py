"""Gallery index: photo embeddings + row-aligned metadata + a faiss index + the model's
fingerprint; and the search engine that answers (sketch, text) queries against it."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fsbir import FsbirError
from fsbir.shardformat import atomic_path, atomic_write_json, count_ok_rows

from .checkpoint import model_from_checkpoint, resolve_checkpoint
from .configs import INDEX_TYPES, IndexConfig
from .data import check_option_columns, iter_rows, shard_columns
from .evaluate import fuse, pick_device
from .transforms import decode_photo, photo_tensor, sketch_tensor

MAX_K = 1000
CPU_ENCODE_CHUNK = 8  # sketches the vision tower encodes at once on a CPU (see SearchEngine._in_chunks)


class IndexMismatchError(FsbirError):
    """The index was built with another model than the one asked to search it."""


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer: two checkpoints share it only if their weights match."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


AUTO_EXACT_BELOW = 100_000  # `auto`: exact search below this many items, IVF above
TARGET_RECALL = 0.95


def auto_index_type(n: int) -> str:
    return "flat" if n < AUTO_EXACT_BELOW else "ivf"


def make_faiss_index(vectors: np.ndarray, index_type: str, nlist: int = 0, hnsw_m: int = 32, chunk: int = 65536):
    """Inner product on unit vectors (= cosine). flat is exact; ivf and hnsw are approximate,
    tuned at search time by nprobe / efSearch. `vectors` may be a memory map: it is trained on a
    sample and added in chunks, so nothing beyond the index itself is held."""
    import faiss

    n, d = vectors.shape
    if index_type == "ivf" and nlist > n:
        raise FsbirError(f"nlist {nlist} is larger than the gallery ({n} items); use at most {n}, or 0 (automatic)")
    if index_type == "flat":
        index = faiss.IndexFlatIP(d)
    elif index_type == "ivf":
        nlist = nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False))
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        raise FsbirError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    for i in range(0, n, chunk):
        index.add(np.ascontiguousarray(vectors[i:i + chunk], dtype=np.float32))
    return index


def tune_nprobe(index, vectors: np.ndarray, queries: np.ndarray, k: int = 10,
                target: float = TARGET_RECALL) -> tuple[int, float]:
    """The smallest nprobe (doubling from 8) whose recall@k against exact search over `vectors`
    reaches `target` for `queries`; (nprobe, the recall it reached). Queries should look like real
    ones: a gallery vector searched for itself sits in its own list and flatters the recall."""
    import faiss

    n, d = vectors.shape
    exact = faiss.IndexFlatIP(d)
    for i in range(0, n, 65536):
        exact.add(np.ascontiguousarray(vectors[i:i + 65536], dtype=np.float32))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    truth = exact.search(q, k)[1]
    nprobe = 8
    while True:
        index.nprobe = min(nprobe, index.nlist)
        found = index.search(q, k)[1]
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
        if recall >= target or index.nprobe >= index.nlist:
            return index.nprobe, recall
        nprobe *= 2


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    import faiss

    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe
    if ef_search is not None and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search


ITEM_COLUMNS_DROPPED = {"sketch", "sketch_params", "error_message", "key", "sha256", "status"}


@torch.no_grad()
def build_index(cfg: IndexConfig, on_batch: Callable[[int], None] | None = None) -> dict:
    """Embed the gallery photos and write INDEX_DIR/{embeddings.npy, items.parquet, index.faiss,
    index.json}. The gallery streams through: a batch of photos is read, embedded and written
    (vectors into a memory-mapped .npy, metadata and photo bytes into Parquet) before the next, so
    memory does not grow with the gallery beyond the index itself. With `colour_column` /
    `category_column`, the photos' head blocks say what the catalog says of each product."""
    import faiss

    device = pick_device(cfg.device)
    gallery = count_ok_rows(cfg.shards, cfg.split)
    if gallery == 0:
        raise FsbirError(f"no ok rows in split {cfg.split!r} of {cfg.shards}")
    index_type = auto_index_type(gallery) if cfg.index_type == "auto" else cfg.index_type
    if index_type == "ivf" and cfg.nlist > gallery:  # known before any embedding
        raise FsbirError(f"nlist {cfg.nlist} is larger than the gallery ({gallery} items); use at most {gallery}, "
                         "or 0 (automatic)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, pp, tokenizer, _ = model_from_checkpoint(cfg.checkpoint, device)
    model.eval()
    check_option_columns(cfg.shards, {"--colour-column": cfg.colour_column, "--category-column": cfg.category_column})
    columns = [c for c in shard_columns(cfg.shards) if c not in ITEM_COLUMNS_DROPPED]
    taken = {"colour": 0, "category": 0}
    tune = index_type == "ivf"  # only then are sketches read: a sample of them tunes nprobe
    probe = QuerySample(TUNING_QUERIES)
    with atomic_path(out / "embeddings.npy") as emb_tmp, atomic_path(out / "items.parquet") as items_tmp:
        # ok rows are unique products (the catalog reader marks repeats duplicate_product), so the
        # gallery's size is known before the first batch
        vectors = np.lib.format.open_memmap(emb_tmp, mode="w+", dtype=np.float32, shape=(gallery, model.embed_dim))
        count, writer = 0, None
        try:
            stream = iter_rows(cfg.shards, cfg.split, columns + (["sketch"] if tune else []))
            while rows := list(itertools.islice(stream, cfg.batch_size)):
                if tune:
                    for r in rows:
                        probe.offer((r.pop("sketch")["bytes"], r.get("caption") or ""))
                photos = torch.stack([photo_tensor(decode_photo(r["image"]["bytes"], pp.image_size), pp) for r in rows])
                photo_vectors = model.encode_image(photos.to(device)).float().cpu()
                if cfg.colour_column or cfg.category_column:
                    photo_vectors, batch_taken = model.with_catalog_attributes(
                        photo_vectors, [r[cfg.colour_column] for r in rows] if cfg.colour_column else None,
                        [r[cfg.category_column] for r in rows] if cfg.category_column else None, cfg.catalog_weights)
                    taken = {key: taken[key] + batch_taken[key] for key in taken}
                vectors[count:count + len(rows)] = photo_vectors.numpy()
                table = pa.Table.from_pylist([{**{k: v for k, v in r.items() if k not in ("image", "status")},
                                               "image": r["image"]["bytes"]} for r in rows])
                writer = writer or pq.ParquetWriter(items_tmp, table.schema)
                writer.write_table(table)
                count += len(rows)
                if on_batch:
                    on_batch(len(rows))
        finally:
            if writer is not None:
                writer.close()
        vectors.flush()
        index = make_faiss_index(vectors, index_type, cfg.nlist, cfg.hnsw_m)
        nprobe, recall = None, None
        if tune:  # with real sketch+text queries of a sample of the gallery
            nprobe, recall = tune_nprobe(index, vectors, probe.embed(model, pp, tokenizer, device))
        with atomic_path(out / "index.faiss") as tmp:
            faiss.write_index(index, str(tmp))
        del vectors
    meta = {
        "count": count, "dim": int(model.embed_dim), "index_type": index_type,
        "nlist": getattr(index, "nlist", None), "nprobe": nprobe, "recall_at_10": recall,
        "hnsw_m": cfg.hnsw_m if index_type == "hnsw" else None,
        "checkpoint": str(resolve_checkpoint(cfg.checkpoint).resolve()),
        "model_fingerprint": model_fingerprint(model), "shards": str(Path(cfg.shards).resolve()), "split": cfg.split,
        # which catalog columns gave the photos' colour and category blocks, and for how many items
        "catalog_attributes": {"colour_column": cfg.colour_column, "category_column": cfg.category_column,
                               "colour_rows": taken["colour"], "category_rows": taken["category"],
                               "weights": asdict(cfg.catalog_weights)},
    }
    atomic_write_json(out / "index.json", meta)  # written last: its presence means the index is complete
    return meta


TUNING_QUERIES = 256


class QuerySample:
    """A fixed-seed reservoir sample of (sketch bytes, caption) from the streamed gallery: the
    queries an IVF index's nprobe is tuned with."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.items, self.seen = size, [], 0
        self.rng = np.random.default_rng(seed)

    def offer(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = int(self.rng.integers(0, self.seen))
            if j < self.size:
                self.items[j] = item

    @torch.no_grad()
    def embed(self, model, pp, tokenizer, device: str) -> np.ndarray:
        from fsbir.sketchgen import decode_sketch

        sketches = torch.stack([sketch_tensor(decode_sketch(b), pp) for b, _ in self.items]).to(device)
        captions = [c for _, c in self.items]
        return model.encode_query(sketches, tokenizer(captions).to(device), texts=captions).float().cpu().numpy()


def _read_index(path: Path):
    """The faiss index, memory-mapped where faiss can (flat and IVF): a large index is not read
    into memory a second time."""
    import faiss

    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(str(path))


@dataclass
class SearchResult:
    rank: int
    product_id: str
    caption: str | None
    score: float
    row: int


def results_json(results: list[SearchResult], image_url: Callable[[str], str] | None = None) -> dict:
    """The one JSON shape of search results (CLI --json and the web API): {"results": [...]};
    the web API adds each item's image URL."""
    items = []
    for r in results:
        item = {"rank": r.rank, "product_id": r.product_id, "caption": r.caption, "score": r.score}
        if image_url is not None:
            item["image_url"] = image_url(r.product_id)
        items.append(item)
    return {"results": items}


class SearchEngine:
    """Loads an index folder and its model once; answers sketch / text / sketch+text queries."""

    def __init__(self, index_dir: str | os.PathLike, checkpoint: str | None = None, device: str = "cpu",
                 nprobe: int | None = None, ef_search: int | None = None):
        self.dir = Path(index_dir)
        meta_path = self.dir / "index.json"
        if not self.dir.is_dir():
            raise FsbirError(f"no index folder at {self.dir}; make one with `fsbir index SHARDS --checkpoint RUN --out {self.dir}`")
        missing = [f for f in ("index.json", "index.faiss", "items.parquet") if not (self.dir / f).is_file()]
        if missing:
            raise FsbirError(f"{self.dir} is not a finished index ({', '.join(missing)} missing); run `fsbir index` again")
        self.meta = json.loads(meta_path.read_text())
        ckpt = checkpoint or self.meta["checkpoint"]
        self.device = pick_device(device)
        self.model, self.pp, self.tokenizer, _ = model_from_checkpoint(ckpt, self.device)
        fingerprint = model_fingerprint(self.model)
        if fingerprint != self.meta["model_fingerprint"]:
            raise IndexMismatchError(
                f"{ckpt} is not the model this index was built with ({self.meta['checkpoint']}); "
                "search with that checkpoint or rebuild the index with `fsbir index`"
            )
        self.index = _read_index(self.dir / "index.faiss")
        set_search_params(self.index, nprobe or self.meta.get("nprobe") or 16, ef_search or 64)
        self.items = pq.read_table(self.dir / "items.parquet", memory_map=True)  # photo bytes stay on disk
        self._captions = self.items.column("caption").to_pylist()
        self._ids = self.items.column("product_id").to_pylist()
        self._row_by_id = {pid: i for i, pid in enumerate(self._ids)}

    def __len__(self) -> int:
        return self.index.ntotal

    @torch.no_grad()
    def encode_queries(self, queries: list[tuple[np.ndarray | None, str | None]]) -> np.ndarray:
        """Many (sketch, text) queries in one forward pass per tower: (n, dim) float32. A sketch is
        (H, W) uint8 black-on-white or None; a text is a caption or None/blank; each query needs one."""
        texts = [t.strip() if t else "" for _, t in queries]
        if any(s is None and not t for (s, _), t in zip(queries, texts)):
            raise FsbirError("a query needs a sketch, a text, or both")
        n, dim = len(queries), self.model.embed_dim
        has_sketch = torch.tensor([s is not None for s, _ in queries])
        has_text = torch.tensor([bool(t) for t in texts])
        s_emb, t_emb = torch.zeros(n, dim), torch.zeros(n, dim)
        if has_sketch.any():
            batch = torch.stack([sketch_tensor(s, self.pp) for s, _ in queries if s is not None])
            s_emb[has_sketch] = self._in_chunks(self.model.encode_sketch, batch)
        if has_text.any():
            asked = [t for t in texts if t]
            t_emb[has_text] = self.model.encode_text(self.tokenizer(asked).to(self.device), asked).float().cpu()
        return fuse(self.model, s_emb, t_emb, has_sketch, has_text).numpy().astype(np.float32)

    def encode_query(self, sketch: np.ndarray | None, text: str | None) -> np.ndarray:
        return self.encode_queries([(sketch, text)])

    def _in_chunks(self, encode: Callable, batch: torch.Tensor) -> torch.Tensor:
        """The vision tower over a batch a few sketches at a time: on a CPU a conv tower's activations
        for 50 sketches overflow the caches (EfficientNet-Lite0, 2 cores: 50 at once 0.89 s, in chunks
        of 8 0.38 s, one by one 0.97 s; the text tower gains nothing). On a GPU the batch goes whole."""
        chunk = len(batch) if self.device.startswith("cuda") else CPU_ENCODE_CHUNK
        return torch.cat([encode(part.to(self.device)).float().cpu() for part in batch.split(chunk)])

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, min(k, len(self)))

    def search_many(self, queries: list[tuple[np.ndarray | None, str | None]], k: int = 10) -> list[list[SearchResult]]:
        """Answer many queries at once (the server batches whatever waits): one encoding pass, one
        faiss search; the same results as asking each alone."""
        if not 1 <= k <= MAX_K:
            raise FsbirError(f"k must be between 1 and {MAX_K}, not {k}")
        scores, rows = self.search_vectors(self.encode_queries(queries), k)
        return [[SearchResult(rank + 1, self._ids[r], self._captions[r], float(s), int(r))
                 for rank, (s, r) in enumerate(zip(qs, qr)) if r >= 0] for qs, qr in zip(scores, rows)]

    def search(self, sketch: np.ndarray | None = None, text: str | None = None, k: int = 10) -> list[SearchResult]:
        return self.search_many([(sketch, text)], k)[0]

    def image_bytes(self, row: int) -> bytes:
        return self.items.column("image")[row].as_py()

    def row_of(self, product_id: str) -> int | None:
        return self._row_by_id.get(product_id)
