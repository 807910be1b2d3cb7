import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fsbir.pipelines.build import BuildConfig, run_build, summarize
from fsbir.pipelines.catalog import CatalogSpec, read_catalog
from fsbir.pipelines.engine import _RowTally
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.pipelines.worker import ShardJob, WorkerSettings, run_shard_job
from fsbir.shardformat import ShardWriter, blank_record, shard_files, shard_schema, split_for
from fsbir.sketchgen.pair import PairSettings
from tests.conftest import encode, photo, wait_until

BASE_COLUMNS = ["key", "product_id", "caption", "split", "image", "sketch", "sketch_method", "sketch_params",
                "edge_density", "width", "height", "original_width", "original_height", "sha256", "status",
                "error_message"]


def build(catalog, out, **kw):
    kw.setdefault("workers", 1)
    spec_kw = {k: kw.pop(k) for k in ("id_column", "caption_column", "image_pattern") if k in kw}
    return run_build(BuildConfig(catalog=CatalogSpec(str(catalog), **spec_kw), out_dir=str(out), **kw))


@pytest.fixture(scope="module")
def built(demo_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    summary = build(demo_catalog, out, shard_size=10, image_size=96)
    return out, summary


def test_schema_and_every_row_once(built, demo_catalog):
    out, summary = built
    assert summary.inputs == 36 and summary.ok == 36 and summary.shards_written == 4 and summary.passed
    df = pd.concat(pd.read_parquet(f) for f in shard_files(out))
    assert list(df.columns)[: len(BASE_COLUMNS)] == BASE_COLUMNS
    assert {"category", "colour", "pattern", "length"} <= set(df.columns)
    assert len(df) == 36 and df["product_id"].is_unique and df["key"].is_unique
    assert (df["width"] == 96).all() and (df["height"] == 96).all()
    meta = [json.loads(l) for l in (demo_catalog / "metadata.jsonl").read_text().splitlines()]
    assert sorted(df["product_id"]) == sorted(m["product_id"] for m in meta)
    light = df[df["sketch_method"] == "light_item"]
    assert len(light) and light["caption"].str.contains("white|ivory|cream|gray|sky|pale").all()
    assert all(split_for(p) == s for p, s in zip(df["product_id"], df["split"]))
    params = json.loads(df.iloc[0]["sketch_params"])
    assert {"canny_low", "canny_high", "clahe_clip", "method"} <= set(params)


def test_images_are_aligned_photo_and_sketch(built):
    out, _ = built
    row = pq.read_table(shard_files(out)[0]).slice(0, 1).to_pylist()[0]
    import io

    photo_img = Image.open(io.BytesIO(row["image"]["bytes"]))
    sketch_img = Image.open(io.BytesIO(row["sketch"]["bytes"]))
    assert photo_img.format == "JPEG" and sketch_img.format == "PNG" and photo_img.size == sketch_img.size
    s = np.asarray(sketch_img)
    assert abs((s == 0).mean() - row["edge_density"]) < 1e-6


def test_opens_in_datasets_with_pil_images(built, tmp_path):
    import datasets

    out, _ = built
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in shard_files(out)], split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 36
    assert isinstance(ds.features["image"], datasets.Image) and isinstance(ds.features["sketch"], datasets.Image)
    item = ds[0]
    assert isinstance(item["image"], Image.Image) and item["sketch"].size == (96, 96)


def test_stats_and_manifest(built):
    out, _ = built
    stats = json.loads((out / "shard-00000.stats.json").read_text())
    assert stats["rows"] == 10 and stats["by_status"] == {"ok": 10}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == 36 and manifest["ok"] == 36 and manifest["failed"] == {}
    assert len(manifest["shards"]) == 4 and manifest["fsbir_version"]
    df = pd.concat(pd.read_parquet(f, columns=["split", "status"]) for f in shard_files(out))
    assert manifest["ok_by_split"] == df[df["status"] == "ok"]["split"].value_counts().to_dict()
    assert stats["ok_by_split"] == pd.read_parquet(out / "shard-00000.parquet")["split"].value_counts().to_dict()


def test_manifest_counts_splits_of_shards_from_before_the_stats_had_them(built, tmp_path):
    import shutil

    out = tmp_path / "old"
    shutil.copytree(built[0], out)
    for path in out.glob("shard-*.stats.json"):
        stats = json.loads(path.read_text())
        del stats["ok_by_split"]
        path.write_text(json.dumps(stats))
    (out / "manifest.json").unlink()
    summary = summarize(out, BuildConfig(catalog=CatalogSpec(source="x"), out_dir=str(out)), 0, 4, 0.0, {})
    assert summary.by_split == json.loads((built[0] / "manifest.json").read_text())["ok_by_split"]


def test_rerun_skips_finished_shards(built, demo_catalog):
    out, _ = built
    mtime = (out / "shard-00001.parquet").stat().st_mtime_ns
    again = build(demo_catalog, out, shard_size=10, image_size=96)
    assert again.shards_written == 0 and again.shards_skipped == 4 and again.inputs == 36
    assert (out / "shard-00001.parquet").stat().st_mtime_ns == mtime


def test_rerun_with_other_settings_refused(built, demo_catalog):
    from fsbir.pipelines.build import OutputFolderError

    out, _ = built
    with pytest.raises(OutputFolderError, match=r"other settings \(shard_size differ"):
        build(demo_catalog, out, shard_size=7, image_size=96)


def test_folder_built_before_a_setting_existed_resumes_at_its_default(demo_catalog, tmp_path):
    """A folder whose recorded settings lack one added since (here the sketch's `drop_skin`) was
    built as that setting's default builds: the same command resumes it, another value is refused."""
    from fsbir.pipelines.build import OutputFolderError
    from fsbir.sketchgen import SketchSettings

    out = tmp_path / "old"
    build(demo_catalog, out, shard_size=10, image_size=64, limit=12)
    recorded = json.loads((out / "build_config.json").read_text())
    del recorded["sketch"]["drop_skin"]
    (out / "build_config.json").write_text(json.dumps(recorded))
    again = build(demo_catalog, out, shard_size=10, image_size=64, limit=12)
    assert again.shards_written == 0 and again.shards_skipped == 2
    with pytest.raises(OutputFolderError, match=r"other settings \(sketch differ"):
        build(demo_catalog, out, shard_size=10, image_size=64, limit=12, sketch=SketchSettings(drop_skin=True))


def test_rerun_with_catalog_path_spelled_differently_resumes(built, demo_catalog, monkeypatch):
    out, first = built
    monkeypatch.chdir(demo_catalog.parent)
    again = build(Path("./catalog/"), out, shard_size=10, image_size=96)
    assert again.shards_written == 0 and again.inputs == first.inputs


def test_worker_pool_gives_same_rows(built, demo_catalog, tmp_path):
    out, _ = built
    counted: list[int] = []  # progress arrives in batches of rows, and adds up to every row
    summary = run_build(BuildConfig(catalog=CatalogSpec(str(demo_catalog)), out_dir=str(tmp_path), shard_size=10,
                                    image_size=96, workers=2), on_rows=counted.append)
    assert summary.ok == 36 and sum(counted) == 36
    cols = ["key", "product_id", "split", "sketch_method", "sha256"]
    a = pd.concat(pd.read_parquet(f, columns=cols) for f in shard_files(out)).reset_index(drop=True)
    b = pd.concat(pd.read_parquet(f, columns=cols) for f in shard_files(tmp_path)).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_row_tally_counts_every_row_once_whatever_the_queue_delivers_late():
    """A worker's last count can reach the build process after its shard's result (CI saw 30 of
    36 rows): the shard's stats settle its total, and counts that come after are dropped."""
    counted: list[int] = []
    tally, q = _RowTally(counted.append), queue.Queue()
    q.put((0, 4))
    tally.drain(q)
    tally.settle(0, 10)  # 6 rows of shard 0 still in the pipe
    tally.settle(1, 5)  # shard 1 reported nothing before it finished
    q.put((0, 6))
    q.put((2, 3))
    tally.drain(q)
    tally.settle(2, 3)
    assert counted == [4, 6, 5, 3]  # the late 6 of shard 0 dropped; shard 2 settled with nothing left


def test_console_script_workers_do_not_run_the_script_again(demo_catalog, tmp_path):
    """Workers started by forkserver must not re-run the `fsbir` script: it imports the CLI, about
    0.6 s in every worker. `-X importtime` lines are written by every process, so the CLI must show
    up once, in the command's own process; and no process of a build loads torch (1.6 s, a few
    hundred MiB), which only the retrieval commands need."""
    script = Path(sys.executable).with_name("fsbir")
    out = tmp_path / "out"
    result = subprocess.run([str(script), "build-dataset", str(demo_catalog), str(out), "--workers", "2",
                             "--shard-size", "12", "--image-size", "64"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(out.glob("shard-*.stats.json"))) == 3
    assert len(re.findall(r"\| fsbir\.cli$", result.stderr, re.M)) == 1
    assert re.findall(r"\|\s+fsbir\.pipelines\.worker$", result.stderr, re.M)  # the lines are there to read
    assert not re.findall(r"\|\s+(torch|open_clip|fastapi)$", result.stderr, re.M)


def make_bad_catalog(root: Path) -> list[tuple[dict, str]]:
    """Every kind of bad input next to good ones; returns (row, expected status)."""
    root.mkdir(parents=True, exist_ok=True)
    good = encode(photo(80, 60), "JPEG")
    files = {
        "good.jpg": good,
        "truncated.jpg": encode(photo(300, 300), "JPEG")[:400],
        "zero.jpg": b"",
        "text.jpg": b"GIF89a? no, just text",
        "rgba.png": encode(Image.fromarray(np.zeros((50, 50, 4), np.uint8)), "PNG"),
        "cmyk.jpg": encode(photo(80, 60).convert("CMYK"), "JPEG"),
        "deep.png": encode(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
        "huge.png": encode(Image.new("L", (3000, 3000), 255), "PNG"),
        "tiny.png": encode(photo(8, 8), "PNG"),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root.parent / "outside.jpg").write_bytes(good)
    cases = [
        ({"image": "good.jpg", "caption": "red box"}, "ok"),
        ({"image": "truncated.jpg", "caption": "cut off"}, "decode_error"),
        ({"image": "zero.jpg", "caption": "empty file"}, "decode_error"),
        ({"image": "text.jpg", "caption": "not an image"}, "decode_error"),
        ({"image": "rgba.png", "caption": "transparent"}, "ok"),
        ({"image": "cmyk.jpg", "caption": "print file"}, "ok"),
        ({"image": "deep.png", "caption": "16-bit"}, "ok"),
        ({"image": "huge.png", "caption": "too many pixels"}, "too_large"),
        ({"image": "tiny.png", "caption": "too small"}, "too_small"),
        ({"image": "missing.jpg", "caption": "gone"}, "missing_file"),
        ({"image": "../outside.jpg", "caption": "escape"}, "unsafe_path"),
        ({"image": "good.jpg", "caption": float("nan")}, "empty_caption"),
        ({"image": "good.jpg", "caption": "   "}, "empty_caption"),
        ({"image": "good.jpg", "caption": "very long " * 2000}, "ok"),
        ({"image": "good.jpg", "caption": "白いTシャツ, Hemd weiß — белая"}, "ok"),
    ]
    rows = [dict(r, product_id=f"p{i}") for i, (r, _) in enumerate(cases)]
    with open(root / "catalog.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")  # json writes NaN as NaN, which json.loads reads back
    return [(r, s) for r, (_, s) in zip(rows, cases)]


def test_bad_inputs_all_accounted_for(tmp_path):
    cases = make_bad_catalog(tmp_path / "cat")
    summary = build(tmp_path / "cat" / "catalog.jsonl", tmp_path / "out", shard_size=4, max_pixels=4_000_000,
                    max_failure_ratio=1.0)
    assert summary.inputs == len(cases) and summary.passed
    df = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "out")).set_index("product_id")
    assert len(df) == len(cases)
    for row, expected in cases:
        got = df.loc[row["product_id"]]
        assert got["status"] == expected, (row, got["status"], got["error_message"])
        if expected != "ok":
            assert got["error_message"]
        if expected in ("ok", "empty_caption"):
            assert got["image"]["bytes"] and got["sketch"]["bytes"]
    captions = {r["product_id"]: r["caption"] for f in shard_files(tmp_path / "out")
                for r in pq.read_table(f, columns=["product_id", "caption"]).to_pylist()}
    assert captions["p11"] is None and captions["p12"] is None  # stored as null, never "nan"
    assert df.loc["p14", "caption"] == "白いTシャツ, Hemd weiß — белая"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"] == len(cases)
    assert manifest["failed"]["decode_error"] == 3 and manifest["failed"]["empty_caption"] == 2


def test_reading_ahead_on_a_thread_or_in_line_writes_the_same_shard(tmp_path):
    """The worker reads ahead on a thread only where a core is spare; both ways give the same records."""
    make_bad_catalog(tmp_path / "cat")
    rows = list(read_catalog(CatalogSpec(str(tmp_path / "cat" / "catalog.jsonl"))))
    tables = []
    for ahead in (0, 3):
        (tmp_path / f"o{ahead}").mkdir()
        settings = WorkerSettings(pair=PairSettings(image_size=64, max_pixels=4_000_000), out_dir=str(tmp_path / f"o{ahead}"),
                                  extra_columns=(), read_ahead=ahead)
        stats = run_shard_job(ShardJob(0, rows), settings)
        assert stats["rows"] == len(rows)
        tables.append(pd.read_parquet(shard_files(tmp_path / f"o{ahead}")[0]))
    pd.testing.assert_frame_equal(*tables)
    assert set(tables[0]["status"]) >= {"ok", "decode_error", "missing_file", "unsafe_path", "too_large"}


def test_failure_ratio_decides_pass(tmp_path):
    make_bad_catalog(tmp_path / "cat")
    summary = build(tmp_path / "cat" / "catalog.jsonl", tmp_path / "out", max_pixels=4_000_000, max_failure_ratio=0.2)
    assert not summary.passed and "max-failure-ratio" in summary.message
    assert shard_files(tmp_path / "out")


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(tmp_path):
    catalog = write_demo_catalog(tmp_path / "cat", n=400, seed=5, size=192)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fsbir", "build-dataset", str(catalog), str(out), "--shard-size", "10",
           "--workers", "1", "--image-size", "128"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
    wait_until(lambda: any(out.glob("shard-*.stats.json")), "a first finished shard", proc, poll=0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = len(list(out.glob("shard-*.stats.json")))
    assert 0 < finished_before < 40, "the kill should land mid-run"
    # no half shard under a real name: every one is whole (the kill may land between a shard's rename
    # and its stats file; that shard counts as unfinished and is redone)
    named = list(out.glob("shard-*.parquet"))
    assert finished_before <= len(named) <= finished_before + 1
    assert all(pq.read_table(f).num_rows == 10 for f in named)
    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert rerun.returncode == 0, rerun.stderr
    assert not list(out.glob(".shard-*"))
    df = pd.concat(pd.read_parquet(f, columns=["key", "product_id", "status"]) for f in shard_files(out))
    assert len(df) == 400 and df["product_id"].is_unique and df["key"].is_unique
    assert (df["status"] == "ok").all()
    assert json.loads((out / "manifest.json").read_text())["inputs"] == 400


def test_shard_images_are_stored_plain_and_small_columns_with_a_dictionary(tmp_path):
    """Image bytes never repeat: no dictionary is tried over them; repeated small values get one."""
    writer = ShardWriter(tmp_path, shard_schema(()))
    with writer.stream(0) as sink:
        for i in range(40):
            sink.append(blank_record(key=f"{i:010d}", product_id=f"p{i}", caption="a shirt", split="train",
                                     status="ok", error_message=None,
                                     image={"bytes": os.urandom(2000), "path": f"{i}.jpg"},
                                     sketch={"bytes": os.urandom(300), "path": f"{i}.png"}))
        sink.finish({"rows": 40})
    group = pq.ParquetFile(writer.paths(0)[0]).metadata.row_group(0)
    encodings = {group.column(c).path_in_schema: group.column(c).encodings for c in range(group.num_columns)}
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert not dictionary & set(encodings["image.bytes"]) and not dictionary & set(encodings["sketch.bytes"])
    assert dictionary & set(encodings["status"]) and dictionary & set(encodings["caption"])
    assert pd.read_parquet(writer.paths(0)[0])["image"].iloc[3]["path"] == "3.jpg"


def test_a_streamed_shard_is_whole_in_row_groups_or_absent(tmp_path):
    writer = ShardWriter(tmp_path, shard_schema(()))
    records = [blank_record(key=f"{i:010d}", product_id=f"p{i}", caption=f"item {i}", split="train", status="ok",
                            error_message=None) for i in range(600)]
    with writer.stream(0, rows_per_group=256) as sink:
        for r in records:
            sink.append(r)
        sink.finish({"rows": 600})
    parquet, stats = writer.paths(0)
    f = pq.ParquetFile(parquet)
    assert f.metadata.num_row_groups == 3 and f.read().column("product_id").to_pylist() == [f"p{i}" for i in range(600)]
    assert json.loads(stats.read_text()) == {"rows": 600}
    with pytest.raises(ValueError, match="decode failed"):
        with writer.stream(1, rows_per_group=256) as sink:
            for r in records:
                sink.append(r)
            raise ValueError("decode failed")
    with pytest.raises(RuntimeError, match="without finish"):
        with writer.stream(2) as sink:
            sink.append(records[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.parquet", "shard-00000.stats.json"]
