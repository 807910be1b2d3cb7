"""Search latency: one full query (encode sketch + text, search) on a real index, and the search
alone on synthetic unit vectors for galleries of 10^4, 10^5 and 10^6, exact vs approximate, with
the approximate indexes' recall@10 against exact.

    python bench/search_latency.py [--index INDEX_DIR] [--sizes 10000 100000 1000000] [--queries 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from fsbir.retrieval.index import auto_index_type, make_faiss_index, set_search_params, tune_nprobe


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Unit vectors around 1000 centres (cosine to their centre about 0.8): closer to real
    embeddings than isotropic noise, without the near-ties of tight clusters."""
    rng = np.random.default_rng(seed)
    centres = unit(1000, d, seed + 1)
    x = centres[rng.integers(0, 1000, n)] + 0.75 * rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", help="an index folder from `fsbir index` for the full-query row")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    console = Console(width=150)
    if args.index:
        from fsbir.retrieval.index import SearchEngine
        from fsbir.sketchgen.strokes import render_strokes

        engine = SearchEngine(args.index)
        sketch = render_strokes([[[0, 80, 160, 240], [0, 200, 40, 255]]], 256, 2)
        for _ in range(3):
            engine.search(sketch, "a white shirt", args.k)
        full, enc = [], []
        for i in range(50):
            t0 = time.perf_counter()
            q = engine.encode_query(sketch, f"a white shirt {i}")
            t1 = time.perf_counter()
            engine.search_vectors(q, args.k)
            full.append(time.perf_counter() - t0)
            enc.append(t1 - t0)
        t = Table(title=f"one full query on {args.index} ({len(engine)} items, {engine.meta['index_type']})")
        for c in ("what", "p50 ms", "p95 ms"):
            t.add_column(c, justify="right" if c != "what" else "left")
        t.add_row("encode sketch + text", *(f"{v:.1f}" for v in percentiles(enc)))
        t.add_row("encode + search", *(f"{v:.1f}" for v in percentiles(full)))
        console.print(t)
    table = Table(title=f"search alone, dim {args.dim}, {args.queries} single queries, k={args.k} (synthetic clustered unit vectors)")
    for c in ("gallery", "index", "params", "build s", "p50 ms", "p95 ms", "× exact p50", f"recall@{args.k} vs exact"):
        table.add_column(c, justify="right")
    for n in args.sizes:
        x = clustered(n, args.dim, 0)
        queries = clustered(args.queries, args.dim, 99)
        # `auto` is what `fsbir index` builds by default: exact below 100k, else IVF with nprobe
        # tuned to recall@10 >= 0.95 on a sample of queries (fsbir index uses real sketch+text
        # queries of gallery items; here 256 synthetic ones, apart from the 200 measured).
        configs = [("flat", {}, {}), ("auto", {}, {}), ("ivf", {}, {"nprobe": 16}), ("ivf", {}, {"nprobe": 64})]
        if n <= 200_000:
            configs.append(("hnsw", {"hnsw_m": 32}, {"ef_search": 64}))
        exact_ids, exact_p50 = None, None
        for name, build_kw, search_kw in configs:
            kind = auto_index_type(n) if name == "auto" else name
            t0 = time.perf_counter()
            index = make_faiss_index(x, kind, **build_kw)
            if name == "auto" and kind == "ivf":  # tuned on other queries than the ones measured
                search_kw = {"nprobe": tune_nprobe(index, x, clustered(256, args.dim, 7))[0]}
            build = time.perf_counter() - t0
            set_search_params(index, **search_kw)
            times, ids = [], []
            for q in queries:
                t0 = time.perf_counter()
                _, i = index.search(q[None], args.k)
                times.append(time.perf_counter() - t0)
                ids.append(i[0])
            p50, p95 = percentiles(times)
            if kind == "flat":
                exact_ids, exact_p50 = ids, p50
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(exact_ids, ids)])
            params = ", ".join(f"{k}={v}" for k, v in {**build_kw, **search_kw}.items()) or "-"
            label = f"auto → {kind}" if name == "auto" else kind
            table.add_row(f"{n:,}", label, params, f"{build:.1f}", f"{p50:.2f}", f"{p95:.2f}",
                          f"{p50 / exact_p50:.2f}", f"{recall:.3f}")
            del index
    console.print(table)


if __name__ == "__main__":
    main()
