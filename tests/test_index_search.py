import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fsbir import FsbirError
from PIL import Image
from typer.testing import CliRunner

from fsbir.cli import app
from fsbir.retrieval.colour import COLOUR_NAMES
from fsbir.retrieval.training import TrainConfig
from fsbir.shardformat import shard_files
from fsbir.retrieval.index import IndexMismatchError, SearchEngine, make_faiss_index

runner = CliRunner()


def first_ok_row(shards):
    return next(r for f in shard_files(shards) for r in pq.read_table(f).to_pylist() if r["status"] == "ok")


def test_index_files_and_alignment(demo_index, demo_shards):
    meta = json.loads((demo_index / "index.json").read_text())
    assert meta["count"] == 64 and meta["index_type"] == "flat" and len(meta["model_fingerprint"]) == 64
    emb = np.load(demo_index / "embeddings.npy")
    items = pq.read_table(demo_index / "items.parquet")
    # the unit joint embedding, then the colour head's block: √weight · √P(colour | photo)
    assert emb.shape == (64, 128 + len(COLOUR_NAMES)) and items.num_rows == 64
    assert np.allclose(np.linalg.norm(emb[:, :128], axis=1), 1, atol=1e-4)
    weight = TrainConfig.__dataclass_fields__["colour_weight"].default  # demo_run trains with the defaults
    assert (emb[:, 128:] >= 0).all() and np.allclose((emb[:, 128:] ** 2).sum(1), weight, atol=1e-4)
    assert {"product_id", "caption", "category", "image"} <= set(items.column_names)


def test_engine_matches_brute_force(demo_index):
    engine = SearchEngine(demo_index)
    emb = np.load(demo_index / "embeddings.npy")
    q = engine.encode_query(None, "a white t-shirt")
    results = engine.search(text="a white t-shirt", k=5)
    expected = np.argsort(-(emb @ q[0]))[:5]
    assert [r.row for r in results] == expected.tolist()
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert results[0].score >= results[-1].score


def test_item_photo_retrieves_itself_with_its_own_embedding(demo_index):
    engine = SearchEngine(demo_index)
    emb = np.load(demo_index / "embeddings.npy")
    query = emb[7:8].copy()
    query[:, 128:] = 0  # a query that names no colour
    scores, rows = engine.search_vectors(query, 1)
    assert rows[0][0] == 7 and scores[0][0] == pytest.approx(1.0, abs=1e-4)


def test_query_needs_something(demo_index):
    with pytest.raises(FsbirError, match="needs a sketch"):
        SearchEngine(demo_index).search(None, "   ")


def test_other_checkpoint_refused(demo_index, demo_run, tmp_path):
    """One changed weight is another model: its fingerprint differs and the index refuses it."""
    from fsbir.retrieval.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

    ckpt = load_checkpoint(demo_run)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = ckpt["model"][name].clone()
    ckpt["model"][name].view(-1)[0] += 1e-3
    save_checkpoint(tmp_path / "other.pt", ckpt)
    assert resolve_checkpoint(demo_run) != tmp_path / "other.pt"
    with pytest.raises(IndexMismatchError, match="not the model this index was built with"):
        SearchEngine(demo_index, checkpoint=str(tmp_path / "other.pt"))
    SearchEngine(demo_index, checkpoint=str(resolve_checkpoint(demo_run)))  # the same weights are accepted


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_find_exact_neighbours(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = make_faiss_index(x, "flat")
    approx = make_faiss_index(x, kind)
    from fsbir.retrieval.index import set_search_params

    set_search_params(approx, nprobe=16, ef_search=128)
    _, e = exact.search(x[:50], 10)
    _, a = approx.search(x[:50], 10)
    recall = np.mean([len(set(p) & set(q)) / 10 for p, q in zip(e, a)])
    assert recall > 0.8


def test_cli_search_json_table_and_grid(demo_index, demo_shards, tmp_path):
    row = first_ok_row(demo_shards)
    (tmp_path / "q.png").write_bytes(row["sketch"]["bytes"])
    result = runner.invoke(app, ["search", str(demo_index), "--sketch", str(tmp_path / "q.png"), "--text",
                                 row["caption"], "--k", "5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["results"]) == 5 and set(data["results"][0]) == {"rank", "product_id", "caption", "score"}
    result = runner.invoke(app, ["search", str(demo_index), "--text", "red dress", "--k", "4",
                                 "--grid", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width > 4 * 160 and grid.height > 160
    result = runner.invoke(app, ["search", str(demo_index)])
    assert result.exit_code == 2 and "--sketch" in result.output


def test_cli_index_approximate(demo_shards, demo_run, tmp_path):
    result = runner.invoke(app, ["index", str(demo_shards), "--checkpoint", str(demo_run), "--out", str(tmp_path / "ix"),
                                 "--index-type", "hnsw", "--split", "test"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["index_type"] == "hnsw" and meta["split"] == "test" and 0 < meta["count"] < 64


def test_auto_index_is_exact_on_small_galleries_and_tuned_ivf_on_large(demo_shards, demo_run, tmp_path, monkeypatch):
    import fsbir.retrieval.index as index_module
    from fsbir.retrieval.index import IndexConfig, build_index

    small = build_index(IndexConfig(shards=str(demo_shards), checkpoint=str(demo_run), out=str(tmp_path / "a")))
    assert small["index_type"] == "flat" and small["nprobe"] is None
    monkeypatch.setattr(index_module, "AUTO_EXACT_BELOW", 10)
    large = build_index(IndexConfig(shards=str(demo_shards), checkpoint=str(demo_run), out=str(tmp_path / "b"),
                                    nlist=8))
    assert large["index_type"] == "ivf" and large["nlist"] == 8
    assert large["recall_at_10"] >= 0.95 and 1 <= large["nprobe"] <= 8
    engine = SearchEngine(tmp_path / "b")
    assert engine.index.nprobe == large["nprobe"]
    exact = SearchEngine(tmp_path / "a")
    q = exact.encode_query(None, "a white t-shirt")
    assert set(engine.search_vectors(q, 10)[1][0]) == set(exact.search_vectors(q, 10)[1][0])


def test_tune_nprobe_reaches_the_target_recall():
    from fsbir.retrieval.index import make_faiss_index, tune_nprobe

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    vectors = (centres[rng.integers(0, 50, 20000)] + 0.3 * rng.normal(size=(20000, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = (centres[rng.integers(0, 50, 200)] + 0.3 * rng.normal(size=(200, 32))).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = make_faiss_index(vectors, "ivf", nlist=256)
    nprobe, recall = tune_nprobe(index, vectors, queries)
    assert recall >= 0.95 and nprobe in (8, 16, 32, 64, 128, 256)
    if nprobe > 8:  # the smallest that reaches the target: half as many lists fall short
        index.nprobe = nprobe // 2
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        found = index.search(queries, 10)[1]
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]) < 0.95
    assert tune_nprobe(index, vectors, queries, target=1.01) == (256, pytest.approx(1.0))  # unreachable: all lists
