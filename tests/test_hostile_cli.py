"""Hostile and careless use of train, eval, index and search: one line on stderr, exit 2, no
traceback; a diverging run stops and nothing NaN becomes best."""
import pytest

from fsbir.cli import app
from tests.hostile import corpus
from tests.test_errors import one_line_error, runner


def test_diverging_training_stops_with_one_line(demo_shards, tmp_path):
    out = tmp_path / "run"
    line = one_line_error(["train", str(demo_shards), "--out", str(out), "--model", "fsbir-tiny", "--lr", "1e30", "--epochs", "2",
                           "--batch-size", "8", "--workers", "0"], after_work=True)
    assert "lower --lr" in line
    assert not (out / "checkpoints" / "best.pt").exists()


def test_resume_refuses_changed_settings_in_one_line(demo_shards, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(demo_shards), "--out", str(out), "--model", "fsbir-tiny", "--epochs", "1", "--batch-size", "8",
                                 "--workers", "0", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    line = one_line_error(["train", str(demo_shards), "--out", str(out), "--resume", "--fusion", "gated"])
    assert "fusion='avg'" in line and "drop --fusion" in line


# --- foreign checkpoints, broken catalogs, odd options: one line each ----------------------------

@pytest.fixture(scope="module")
def foreign(demo_run, tmp_path_factory):
    from fsbir.retrieval.checkpoint import load_checkpoint

    return corpus.foreign_checkpoints(tmp_path_factory.mktemp("foreign"), load_checkpoint(demo_run)["model"])


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "bare_state_dict", "list"])
def test_foreign_checkpoints_everywhere(kind, foreign, demo_shards, demo_index, tmp_path):
    ckpt = str(foreign[kind])
    assert "checkpoint" in one_line_error(["eval", str(demo_shards), "--checkpoint", ckpt])
    assert "checkpoint" in one_line_error(["index", str(demo_shards), "--checkpoint", ckpt, "--out", str(tmp_path / "i")])
    assert "checkpoint" in one_line_error(["search", str(demo_index), "--checkpoint", ckpt, "--text", "a shoe"])
    assert "checkpoint" in one_line_error(["serve", str(demo_index), "--checkpoint", ckpt])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(foreign[kind].read_bytes())
    assert "checkpoint" in one_line_error(["train", str(demo_shards), "--out", str(run), "--resume"])


def test_output_paths_that_cannot_be_written(demo_catalog, demo_shards, demo_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert "output folder" in one_line_error(["build-dataset", str(demo_catalog), str(blocker)])
    assert str(blocker) in one_line_error(["train", str(demo_shards), "--out", str(blocker / "run"), "--workers", "0"])
    assert str(blocker) in one_line_error(["index", str(demo_shards), "--checkpoint", str(demo_run),
                                           "--out", str(blocker / "idx")])


def test_broken_parquet_catalogs(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    assert "not a readable Parquet file" in one_line_error(["build-dataset", str(tmp_path / "junk.parquet"),
                                                            str(tmp_path / "o")])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [b"x" * 5000] * 50, "caption": ["a"] * 50}), tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert "Parquet" in one_line_error(["build-dataset", str(tmp_path / "cut.parquet"), str(tmp_path / "o2")])


def test_index_options_and_folders(demo_shards, demo_run, demo_index, tmp_path):
    line = one_line_error(["index", str(demo_shards), "--checkpoint", str(demo_run), "--out", str(tmp_path / "i"),
                           "--index-type", "ivf", "--nlist", "100000"])
    assert "nlist 100000 is larger than the gallery" in line
    half = tmp_path / "half"
    half.mkdir()
    for name in ("index.json", "items.parquet"):
        (half / name).write_bytes((demo_index / name).read_bytes())
    assert "index.faiss missing" in one_line_error(["search", str(half), "--text", "a shoe"])


def test_bad_query_files(demo_shards, demo_run, tmp_path):
    base = ["eval", str(demo_shards), "--checkpoint", str(demo_run), "--split", "all", "--queries"]
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "notes.txt").write_text("hello")
    (tmp_path / "q" / "q.csv").write_text("sketch,product_id\nnotes.txt,x\n")
    assert "decode_error" in one_line_error(base + [str(tmp_path / "q" / "q.csv")])
    (tmp_path / "q" / "up.csv").write_text("sketch,product_id\n../secret.png,x\n")
    assert "leaves the queries folder" in one_line_error(base + [str(tmp_path / "q" / "up.csv")])
    (tmp_path / "q" / "abs.csv").write_text("sketch,product_id\n/etc/passwd,x\n")
    assert "leaves the queries folder" in one_line_error(base + [str(tmp_path / "q" / "abs.csv")])
    (tmp_path / "q" / "noid.csv").write_text("sketch,label\nnotes.txt,x\n")
    assert "product_id or category" in one_line_error(base + [str(tmp_path / "q" / "noid.csv")])
    (tmp_path / "q" / "arr.ndjson").write_text("[1, 2, 3]\n")
    assert "not a Quick, Draw! record" in one_line_error(base + [str(tmp_path / "q" / "arr.ndjson")])
    (tmp_path / "empty").mkdir()
    assert "no queries found" in one_line_error(base + [str(tmp_path / "empty")])


def test_search_sketch_pixel_and_shape_caps(demo_index, tmp_path):
    (tmp_path / "big.png").write_bytes(corpus.png_header_only(2500, 2500))  # 6.25 MP, a few KB
    assert "too_large" in one_line_error(["search", str(demo_index), "--sketch", str(tmp_path / "big.png")])
    (tmp_path / "tall.png").write_bytes(corpus.png_header_only(8, 499_999))
    assert "bad_aspect" in one_line_error(["search", str(demo_index), "--sketch", str(tmp_path / "tall.png")])
