"""A drawing reads the same whatever door it comes in by: the CLI, eval queries, the web API."""
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from fsbir.cli import app
from fsbir.pipelines.web import WebConfig, create_app
from fsbir.shardformat import shard_files
from fsbir.sketchgen import decode_sketch
from tests.conftest import encode

runner = CliRunner()


@pytest.fixture(scope="module")
def drawings(demo_shards, tmp_path_factory):
    """Three items' edge-map sketches, each as a flat white PNG and as a canvas export: black
    strokes, every other pixel (0, 0, 0, 0), i.e. transparent black."""
    folder = tmp_path_factory.mktemp("drawings")
    rows = [r for f in shard_files(demo_shards) for r in pq.read_table(f).to_pylist() if r["status"] == "ok"][:3]
    for r in rows:
        grey = np.asarray(Image.open(io.BytesIO(r["sketch"]["bytes"])).convert("L"))
        rgba = np.zeros(grey.shape + (4,), np.uint8)
        rgba[..., 3] = np.where(grey < 128, 255, 0)
        (folder / f"{r['product_id']}-flat.png").write_bytes(encode(Image.fromarray(grey), "PNG"))
        (folder / f"{r['product_id']}-rgba.png").write_bytes(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    return folder, [r["product_id"] for r in rows]


def test_transparent_black_canvas_decodes_to_the_flat_drawing(drawings):
    folder, ids = drawings
    for pid in ids:
        flat = decode_sketch((folder / f"{pid}-flat.png").read_bytes())
        rgba = decode_sketch((folder / f"{pid}-rgba.png").read_bytes())
        assert (flat == rgba).all() and (flat == 255).mean() > 0.5


def search_ids(index, sketch) -> list[str]:
    result = runner.invoke(app, ["search", str(index), "--sketch", str(sketch), "--k", "10", "--json"])
    assert result.exit_code == 0, result.output
    return [r["product_id"] for r in json.loads(result.stdout)["results"]]


def test_cli_search(drawings, demo_index):
    folder, ids = drawings
    for pid in ids:
        assert search_ids(demo_index, folder / f"{pid}-rgba.png") == search_ids(demo_index, folder / f"{pid}-flat.png")


def test_web_api(drawings, demo_index):
    folder, ids = drawings
    client = TestClient(create_app(WebConfig(index_dir=str(demo_index))))

    def top10(path):
        response = client.post("/api/search", files={"sketch": (path.name, path.read_bytes(), "image/png")},
                               data={"k": "10"})
        assert response.status_code == 200, response.text
        return [r["product_id"] for r in response.json()["results"]]

    for pid in ids:
        via_api = top10(folder / f"{pid}-rgba.png")
        assert via_api == top10(folder / f"{pid}-flat.png")
        assert via_api == search_ids(demo_index, folder / f"{pid}-flat.png")


def test_eval_queries(drawings, demo_shards, demo_run, tmp_path):
    folder, ids = drawings
    results = {}
    for kind in ("flat", "rgba"):
        csv = folder / f"{kind}.csv"
        csv.write_text("sketch,product_id\n" + "".join(f"{pid}-{kind}.png,{pid}\n" for pid in ids))
        out = tmp_path / f"{kind}.json"
        result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(demo_run), "--split", "all",
                                     "--queries", str(csv), "--json", str(out)])
        assert result.exit_code == 0, result.output
        results[kind] = json.loads(out.read_text())["modes"]["sketch"]
    assert results["rgba"] == results["flat"]
