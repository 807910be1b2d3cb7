import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from fsbir.cli import app


@pytest.mark.slow
def test_quickstart_end_to_end_small(tmp_path):
    out = tmp_path / "qs"
    result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--n", "60", "--epochs", "1",
                                      "--model", "fsbir-tiny", "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "eval.json").read_text())
    assert set(data["modes"]) == {"sketch", "text", "sketch+text"} and data["k"] == 10
    index = json.loads((out / "index" / "index.json").read_text())
    assert index["count"] == 60 and index["catalog_attributes"]["colour_rows"] == 60  # every demo colour is a class
    assert data["catalog_attributes"]["colour"] == data["queries"]  # scored as the index serves it
    assert Image.open(out / "search-grid.png").width > 500
    assert (out / "run" / "checkpoints" / "best.pt").exists()
    again = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--n", "60", "--epochs", "1",
                                     "--model", "fsbir-tiny", "--workers", "1"])
    assert again.exit_code == 0, again.output  # re-running resumes: shards skipped, training not repeated
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == 1
