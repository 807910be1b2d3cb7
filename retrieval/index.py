"""Gallery index: photo embeddings + row-aligned metadata + a faiss index + the model's
fingerprint; and the search engine that answers (sketch, text) queries against it."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fsbir import FsbirError
from fsbir.shardformat import STATUS_OK, atomic_path, atomic_write_json, count_ok_rows, iter_shard_rows, shard_files

from .checkpoint import model_from_checkpoint, resolve_checkpoint
from .evaluate import embed_split, fuse, pick_device
from .transforms import sketch_tensor

INDEX_TYPES = ("flat", "ivf", "hnsw")
MAX_K = 1000


class IndexMismatchError(FsbirError):
    """The index was built with another model than the one asked to search it."""


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    shards: str
    checkpoint: str
    out: str
    split: str = "all"
    index_type: str = "flat"
    nlist: int = 0  # IVF lists; 0 → about 4·sqrt(N)
    hnsw_m: int = 32
    batch_size: int = 128
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise FsbirError(f"unknown index type {self.index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        if self.nlist < 0:
            raise FsbirError(f"nlist must be 0 (automatic) or more, not {self.nlist}")


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer: two checkpoints share it only if their weights match."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def make_faiss_index(vectors: np.ndarray, index_type: str, nlist: int = 0, hnsw_m: int = 32):
    """Inner product on unit vectors (= cosine). flat is exact; ivf and hnsw are approximate,
    tuned at search time by nprobe / efSearch."""
    import faiss

    n, d = vectors.shape
    if index_type == "ivf" and nlist > n:
        raise FsbirError(f"nlist {nlist} is larger than the gallery ({n} items); use at most {n}, or 0 (automatic)")
    if index_type == "flat":
        index = faiss.IndexFlatIP(d)
    elif index_type == "ivf":
        nlist = nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        raise FsbirError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    index.add(vectors)
    return index


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    import faiss

    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe
    if ef_search is not None and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search


def build_index(cfg: IndexConfig, on_batch: Callable[[int], None] | None = None) -> dict:
    """Embed the gallery photos and write INDEX_DIR/{embeddings.npy, items.parquet, index.faiss, index.json}."""
    import faiss

    device = pick_device(cfg.device)
    gallery = count_ok_rows(cfg.shards, cfg.split)
    if cfg.index_type == "ivf" and cfg.nlist > gallery:  # known before any embedding
        raise FsbirError(f"nlist {cfg.nlist} is larger than the gallery ({gallery} items); use at most {gallery}, "
                         "or 0 (automatic)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, pp, tok, _ = model_from_checkpoint(cfg.checkpoint, device)
    emb = embed_split(model, cfg.shards, cfg.split, pp, tok, cfg.batch_size, None, device, 0, on_batch)
    vectors = emb["photo"].numpy().astype(np.float32)
    # Row-aligned metadata with the photo bytes, so the index folder serves results on its own.
    wanted = {pid: i for i, pid in enumerate(emb["product_id"])}
    rows: list[dict | None] = [None] * len(wanted)
    drop = {"sketch", "sketch_params", "error_message", "key", "sha256"}
    columns = [c for c in pq.read_schema(shard_files(cfg.shards)[0]).names if c not in drop]
    for r in iter_shard_rows(cfg.shards, columns=columns):
        i = wanted.get(r["product_id"])
        if i is not None and rows[i] is None and r["status"] == STATUS_OK:
            rows[i] = {**{k: v for k, v in r.items() if k not in ("image", "status")}, "image": r["image"]["bytes"]}
    index = make_faiss_index(vectors, cfg.index_type, cfg.nlist, cfg.hnsw_m)
    with atomic_path(out / "items.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    with atomic_path(out / "embeddings.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, vectors)
    with atomic_path(out / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    meta = {
        "count": len(vectors), "dim": int(vectors.shape[1]), "index_type": cfg.index_type,
        "nlist": getattr(index, "nlist", None), "hnsw_m": cfg.hnsw_m if cfg.index_type == "hnsw" else None,
        "checkpoint": str(resolve_checkpoint(cfg.checkpoint).resolve()),
        "model_fingerprint": model_fingerprint(model), "shards": str(Path(cfg.shards).resolve()), "split": cfg.split,
    }
    atomic_write_json(out / "index.json", meta)  # written last: its presence means the index is complete
    return meta


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
        import faiss

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
        self.index = faiss.read_index(str(self.dir / "index.faiss"))
        set_search_params(self.index, nprobe or 16, ef_search or 64)
        self.items = pq.read_table(self.dir / "items.parquet")
        self._captions = self.items.column("caption").to_pylist()
        self._ids = self.items.column("product_id").to_pylist()
        self._row_by_id = {pid: i for i, pid in enumerate(self._ids)}

    def __len__(self) -> int:
        return self.index.ntotal

    @torch.no_grad()
    def encode_query(self, sketch: np.ndarray | None, text: str | None) -> np.ndarray:
        """sketch: (H, W) uint8 black-on-white (or None); text: a caption (or None/blank)."""
        text = text.strip() if text else None
        if sketch is None and not text:
            raise FsbirError("a query needs a sketch, a text, or both")
        s = t = None
        if sketch is not None:
            s = self.model.encode_sketch(sketch_tensor(sketch, self.pp)[None].to(self.device)).float().cpu()
        if text:
            t = self.model.encode_text(self.tokenizer([text]).to(self.device)).float().cpu()
        return fuse(self.model, s, t).numpy().astype(np.float32)

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, min(k, len(self)))

    def search(self, sketch: np.ndarray | None = None, text: str | None = None, k: int = 10) -> list[SearchResult]:
        if not 1 <= k <= MAX_K:
            raise FsbirError(f"k must be between 1 and {MAX_K}, not {k}")
        scores, rows = self.search_vectors(self.encode_query(sketch, text), k)
        return [SearchResult(rank + 1, self._ids[r], self._captions[r], float(s), int(r))
                for rank, (s, r) in enumerate(zip(scores[0], rows[0])) if r >= 0]

    def image_bytes(self, row: int) -> bytes:
        return self.items.column("image")[row].as_py()

    def row_of(self, product_id: str) -> int | None:
        return self._row_by_id.get(product_id)
