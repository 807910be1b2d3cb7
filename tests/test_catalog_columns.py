"""Catalog columns never overwrite the shard's own: real img2dataset output, a `datasets` dataset,
and a table that uses every schema column name."""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fsbir.cli import app
from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from fsbir.shardformat import BASE_COLUMNS, shard_files
from tests.conftest import photo

runner = CliRunner()


def read_shards(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in shard_files(out)).reset_index(drop=True)


def test_every_schema_column_name_is_kept_under_a_prefix(tmp_path):
    photo().save(tmp_path / "a.jpg")
    row = {"file": "a.jpg", "title": "a red box", **{c: f"catalog's {c}" for c in BASE_COLUMNS}}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    summary = run_build(BuildConfig(catalog=CatalogSpec("{}".format(tmp_path / "t.jsonl"), image_column="file",
                                                        caption_column="title", id_column="product_id"),
                                    out_dir=str(out), workers=1, image_size=64))
    assert summary.ok == 1
    (rec,) = read_shards(out).to_dict("records")
    assert rec["status"] == "ok" and rec["caption"] == "a red box" and rec["product_id"] == "catalog's product_id"
    assert rec["split"] in ("train", "val", "test") and rec["width"] == 64 and len(rec["sha256"]) == 64
    assert rec["image"]["bytes"][:2] == b"\xff\xd8" and rec["sketch"]["bytes"][:4] == b"\x89PNG"
    kept = {c for c in BASE_COLUMNS if c != "product_id"}
    for c in kept:
        assert rec[f"catalog_{c}"] == f"catalog's {c}"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["renamed_columns"] == {c: f"catalog_{c}" for c in kept}


def test_hf_dataset_with_schema_named_features(tmp_path):
    import datasets

    img = tmp_path / "p.png"
    photo().save(img)
    ds = datasets.Dataset.from_dict(
        {"image": [str(img)] * 2, "text": ["a red box", "another red box"], "status": ["published", "draft"],
         "width": ["wide", "narrow"], "product_id": ["p1", "p2"]}
    ).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "out"
    summary = run_build(BuildConfig(catalog=CatalogSpec(f"hf:{tmp_path / 'ds'}"), out_dir=str(out), workers=1,
                                    image_size=64))
    assert summary.ok == 2 and summary.by_status == {"ok": 2}
    df = read_shards(out).set_index("product_id")
    assert df["status"].tolist() == ["ok", "ok"] and df["width"].tolist() == [64, 64]
    assert df.loc["p1", "catalog_status"] == "published" and df.loc["p2", "catalog_width"] == "narrow"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def image_server(tmp_path):
    """Generated JPEGs, one broken file, served on 127.0.0.1 by a thread of this test."""
    www = tmp_path / "www"
    www.mkdir()
    colours = {"shirt": (240, 240, 235), "shoe": (20, 30, 90), "bag": (150, 40, 30), "hat": (30, 120, 60)}
    for name, colour in colours.items():
        photo(80, 120, colour).save(www / f"{name}.jpg", quality=90)
    (www / "broken.jpg").write_bytes(b"this is not a jpeg")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", list(colours)
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_real_img2dataset_output(image_server, tmp_path):
    base, names = image_server
    lines = ["url\tcaption"] + [f"{base}/{n}.jpg\ta {n}" for n in names]
    lines += [f"{base}/broken.jpg\ta broken file", f"{base}/missing.jpg\ta missing file"]
    (tmp_path / "urls.tsv").write_text("\n".join(lines) + "\n")
    downloaded = tmp_path / "downloaded"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    subprocess.run([str(Path(sys.executable).parent / "img2dataset"), "--url_list", str(tmp_path / "urls.tsv"),
                    "--input_format", "tsv", "--url_col", "url", "--caption_col", "caption",
                    "--output_format", "parquet", "--output_folder", str(downloaded), "--processes_count", "1",
                    "--thread_count", "2", "--resize_mode", "no", "--enable_wandb", "False"],
                   check=True, env=env, capture_output=True, timeout=300)
    source = pd.concat(pd.read_parquet(f) for f in sorted(downloaded.glob("*.parquet")))
    assert sorted(source["status"]) == ["failed_to_download", "failed_to_resize"] + ["success"] * 4

    out = tmp_path / "shards"
    # the README's command for img2dataset output
    result = runner.invoke(app, ["build-dataset", str(downloaded), str(out), "--image-column", "jpg",
                                 "--caption-column", "caption", "--id-column", "key", "--workers", "1"])
    assert result.exit_code == 0, result.output
    df = read_shards(out).set_index("product_id")
    assert len(df) == len(source) and set(df.index) == set(source["key"])
    for key, src in source.set_index("key").iterrows():
        row = df.loc[key]
        assert row["catalog_status"] == src["status"] and row["caption"] == src["caption"]
        if src["status"] == "success":
            assert row["status"] == "ok" and row["sketch"]["bytes"][:4] == b"\x89PNG"
            assert row["catalog_width"] == str(int(src["width"])) and row["width"] == 256
        else:
            assert row["status"] == "missing_image_ref" and row["catalog_error_message"] == src["error_message"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ok"] == 4 and manifest["failed"] == {"missing_image_ref": 2}
    assert manifest["renamed_columns"]["status"] == "catalog_status"
