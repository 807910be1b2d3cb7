import csv
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsbir.pipelines.catalog import CatalogError, CatalogSpec, clean_text, read_catalog, sniff_format
from tests.conftest import encode, photo, write_jsonl


def test_imagefolder_jsonl(demo_catalog):
    rows = list(read_catalog(CatalogSpec(str(demo_catalog))))
    assert len(rows) == 36 and all(r.status == "ok" for r in rows)
    assert rows[0].product_id == "demo-000000" and rows[0].caption
    assert set(rows[0].extras) == {"category", "colour", "pattern", "length"}
    assert os.path.exists(rows[0].image_path)


def test_imagefolder_csv_and_file_name_id(tmp_path):
    (tmp_path / "a.png").write_bytes(encode(photo(), "PNG"))
    with open(tmp_path / "metadata.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file_name", "text"], ["a.png", "red box"]])
    assert sniff_format(str(tmp_path)) == "imagefolder"
    (row,) = read_catalog(CatalogSpec(str(tmp_path)))
    assert row.product_id == "a" and row.caption == "red box" and row.status == "ok"


def test_kaggle_styles_csv_with_pattern_and_overflowing_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "15970.jpg").write_bytes(encode(photo(), "JPEG"))
    (tmp_path / "styles.csv").write_text(
        "id,gender,baseColour,productDisplayName\n"
        "15970,Men,Navy Blue,Turtle Check Men Navy Blue Shirt\n"
        "39386,Men,Blue,Peter England Men Party Blue Jeans, slim fit\n",  # unquoted comma in the name
        encoding="utf-8",
    )
    rows = list(read_catalog(CatalogSpec(str(tmp_path / "styles.csv"), id_column="id",
                                         caption_column="productDisplayName", image_pattern="images/{id}.jpg")))
    assert [r.product_id for r in rows] == ["15970", "39386"]
    assert rows[1].caption == "Peter England Men Party Blue Jeans, slim fit"
    assert rows[0].extras == {"gender": "Men", "baseColour": "Navy Blue"}
    assert rows[0].image_path.endswith("images/15970.jpg")


def test_unknown_column_lists_existing(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", [{"path": "a.jpg", "caption": "x"}])
    with pytest.raises(CatalogError, match=r"'title' not found.*columns are: path, caption"):
        list(read_catalog(CatalogSpec(str(tmp_path / "t.jsonl"), caption_column="title")))
    with pytest.raises(CatalogError, match="no such column"):
        list(read_catalog(CatalogSpec(str(tmp_path / "t.jsonl"), image_pattern="{sku}.jpg")))


def test_paths_confined_to_root(tmp_path):
    root = tmp_path / "cat"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(encode(photo(), "JPEG"))
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    (root / "real").mkdir()
    (root / "real" / "in.jpg").write_bytes(encode(photo(), "JPEG"))
    (root / "alias").symlink_to(root / "real")  # a folder link that stays inside
    (root / "out").symlink_to(tmp_path)  # one that leaves
    write_jsonl(root / "t.jsonl", [
        {"image": "../secret.jpg", "caption": "escape"},
        {"image": str(tmp_path / "secret.jpg"), "caption": "absolute"},
        {"image": "link.jpg", "caption": "symlink out"},
        {"image": "ok.jpg", "caption": "fine"},
        {"image": None, "caption": "no image"},
        {"image": "loop.jpg", "caption": "symlink loop"},
        {"image": "alias/in.jpg", "caption": "folder link inside"},
        {"image": "out/secret.jpg", "caption": "folder link out"},
        {"image": "real/../../secret.jpg", "caption": "up and out"},
        {"image": "real/..", "caption": "a folder"},
    ])
    rows = list(read_catalog(CatalogSpec(str(root / "t.jsonl"))))
    assert [r.status for r in rows] == ["unsafe_path", "unsafe_path", "unsafe_path", "ok", "missing_image_ref",
                                        "unsafe_path", "ok", "unsafe_path", "unsafe_path", "ok"]
    assert rows[6].image_path == str((root / "real" / "in.jpg").resolve())


def test_bad_jsonl_lines_and_duplicates_are_rows(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        '{"image": "a.jpg", "caption": "a", "product_id": "p1"}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"image": "b.jpg", "caption": "b", "product_id": "p1"}\n'
    )
    rows = list(read_catalog(CatalogSpec(str(tmp_path / "t.jsonl"))))
    assert [r.status for r in rows] == ["ok", "bad_record", "bad_record", "duplicate_product"]
    assert [r.index for r in rows] == [0, 1, 2, 3]


def test_parquet_plain_bytes_and_structs(tmp_path):
    png = encode(photo(), "PNG")
    pq.write_table(pa.table({"jpg": [png], "caption": ["red"], "sku": ["s1"]}), tmp_path / "plain.parquet")
    (row,) = read_catalog(CatalogSpec(str(tmp_path / "plain.parquet"), id_column="sku"))
    assert row.image_bytes == png and row.product_id == "s1"
    struct = pa.array([{"bytes": png, "path": "x.png"}, {"bytes": None, "path": "../../etc/passwd"}],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": struct, "text": ["a", "b"]}), tmp_path / "s.parquet")
    rows = list(read_catalog(CatalogSpec(str(tmp_path / "s.parquet"))))
    assert rows[0].image_bytes == png and rows[0].status == "ok"
    assert rows[1].status == "unsafe_path"


def test_hf_dataset_from_local_disk(tmp_path):
    import datasets

    img = photo()
    ds = datasets.Dataset.from_dict({"img": [img, img], "desc": ["white tee", "black tee"]},
                                    features=datasets.Features({"img": datasets.Image(), "desc": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "ds"))
    rows = list(read_catalog(CatalogSpec(f"hf:{tmp_path / 'ds'}", caption_column="desc")))
    assert len(rows) == 2 and rows[0].image_bytes and rows[1].caption == "black tee"


def test_clean_text():
    assert clean_text(float("nan")) is None and clean_text("  ") is None and clean_text(None) is None
    assert clean_text(" héllo ") == "héllo" and clean_text(12) == "12"


def test_sniff_errors(tmp_path):
    with pytest.raises(CatalogError, match="no such file"):
        sniff_format(str(tmp_path / "missing.csv"))
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(CatalogError, match="--format"):
        sniff_format(str(tmp_path / "x.bin"))
