import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from fsbir.cli import app
from fsbir.shardformat import shard_files

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build-dataset", "demo-catalog", "quickstart"):
        assert command in result.output


def test_build_dataset_kaggle_layout(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for pid, colour in (("101", "white"), ("102", "navy")):
        Image.new("RGB", (60, 80), (240, 240, 240) if colour == "white" else (20, 30, 90)).save(tmp_path / "images" / f"{pid}.jpg")
    (tmp_path / "styles.csv").write_text(
        "id,articleType,productDisplayName\n101,Tshirts,Men White T-shirt\n102,Jeans,Navy Jeans\n103,Tshirts,Lost one\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["build-dataset", str(tmp_path / "styles.csv"), str(out), "--id-column", "id",
                                 "--caption-column", "productDisplayName", "--image-pattern", "images/{id}.jpg",
                                 "--workers", "1", "--image-size", "64"])
    assert result.exit_code == 0, result.output
    df = pd.concat(pd.read_parquet(f) for f in shard_files(out)).set_index("product_id")
    assert df.loc["101", "sketch_method"] == "light_item" and df.loc["102", "sketch_method"] == "canny"
    assert df.loc["103", "status"] == "missing_file" and df.loc["101", "articleType"] == "Tshirts"
    assert json.loads((out / "manifest.json").read_text())["failed"] == {"missing_file": 1}
    assert not json.loads(df.loc["102", "sketch_params"])["drop_skin"]
    again = tmp_path / "again"
    result = runner.invoke(app, ["build-dataset", str(tmp_path / "styles.csv"), str(again), "--id-column", "id",
                                 "--image-pattern", "images/{id}.jpg", "--workers", "1", "--image-size", "64", "--drop-skin"])
    assert result.exit_code == 0, result.output
    params = pd.concat(pd.read_parquet(f) for f in shard_files(again)).set_index("product_id").loc["102", "sketch_params"]
    assert json.loads(params)["drop_skin"]


def test_unknown_column_is_one_line_error(tmp_path):
    (tmp_path / "t.csv").write_text("path,caption\na.jpg,x\n")
    result = runner.invoke(app, ["build-dataset", str(tmp_path / "t.csv"), str(tmp_path / "o"), "--caption-column", "title"])
    assert result.exit_code == 2
    assert "'title' not found" in result.output and "path, caption" in result.output


def test_all_rows_failing_exits_1(tmp_path):
    (tmp_path / "t.csv").write_text("image,caption\nnope.jpg,x\nnope2.jpg,y\n")
    result = runner.invoke(app, ["build-dataset", str(tmp_path / "t.csv"), str(tmp_path / "o"), "--workers", "1"])
    assert result.exit_code == 1
    assert "no row succeeded" in result.output
    assert shard_files(tmp_path / "o")


def test_demo_catalog_command(tmp_path):
    result = runner.invoke(app, ["demo-catalog", str(tmp_path / "d"), "--n", "5", "--seed", "1"])
    assert result.exit_code == 0
    assert len((tmp_path / "d" / "metadata.jsonl").read_text().splitlines()) == 5


def test_report_contact_sheet_and_curves(demo_shards, demo_run, tmp_path):
    from PIL import Image

    (tmp_path / "qd").mkdir()
    (tmp_path / "qd" / "hat.ndjson").write_text(json.dumps({"word": "hat", "drawing": [[[0, 50, 100], [80, 0, 80]]]}) + "\n")
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["report", str(demo_shards), "--out", str(sheet), "--queries", str(tmp_path / "qd")])
    assert result.exit_code == 0, result.output
    img = Image.open(sheet)
    assert img.width == 6 + 8 * (128 + 6)
    # a header, two branches (canny and light_item), the drawings and the failures: five sections
    assert img.height == 28 + 2 * 152 + 152 + 28
    import numpy as np

    drawings_row = np.asarray(img.convert("L").crop((6, 28 + 2 * 152 + 22, 6 + 128, 28 + 2 * 152 + 22 + 128)))
    assert drawings_row.min() < 80  # the doodle's strokes are drawn
    curves = tmp_path / "curves.png"
    result = runner.invoke(app, ["report", str(demo_run), "--out", str(curves)])
    assert result.exit_code == 0 and "training curves" in result.output
    assert Image.open(curves).size == (6 * 3 + 2 * 520, 300 + 12)
    missing = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")])
    assert missing.exit_code == 2 and "no shards folder" in missing.stderr


def test_probe_reports_colour_swap_caption_ablation_and_brand_words(demo_shards, demo_run, tmp_path):
    from fsbir.shardformat import iter_shard_rows

    out = tmp_path / "probe.json"
    result = runner.invoke(app, ["probe", str(demo_shards), "--checkpoint", str(demo_run), "--split", "all",
                                 "--colour-column", "colour", "--category-column", "category", "--colours", "3",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = [r for r in iter_shard_rows(demo_shards) if r["status"] == "ok"]
    colours = [r["colour"] for r in rows]
    swap = data["colour_swap"]
    assert len(swap["colours"]) == 3 and swap["colours"][0] == max(set(colours), key=colours.count)
    assert swap["colour_base_rate"] == pytest.approx(sum(colours.count(c) for c in swap["colours"]) / 3 / len(rows))
    types = [r["category"] for r in rows]
    assert swap["type_base_rate"] == pytest.approx(sum(types.count(t) for t in types) / len(rows) ** 2)
    both = [sum(t == u and c == colour for u, c in zip(types, colours)) for colour in swap["colours"] for t in types]
    assert swap["type+colour_ceiling"] == pytest.approx(sum(min(n, 10) for n in both) / 10 / len(both))
    assert swap["type+colour_base_rate"] == pytest.approx(sum(both) / len(both) / len(rows))
    assert swap["type+colour_P@10"] <= min(swap["type+colour_ceiling"], swap["colour_P@10"], swap["type_P@10"])
    text = data["text_colour"]  # the words alone, against the same base rates
    assert text["colour_base_rate"] == swap["colour_base_rate"] and text["type_base_rate"] == swap["type_base_rate"]
    for probe in ("colour_swap", "text_colour", "caption_ablation", "brand_words"):
        assert all(0 <= v <= 1 for v in data[probe].values() if isinstance(v, float))
    assert "colour_swap" in result.output and "text_colour" in result.output
    wrong = runner.invoke(app, ["probe", str(demo_shards), "--checkpoint", str(demo_run)])
    assert wrong.exit_code == 2 and "'baseColour' is not a shard column" in wrong.stderr
