import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsbir.pipelines.demo_catalog import write_demo_catalog


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """A small demo catalog in the imagefolder layout (made by the project itself)."""
    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog", n=36, seed=3)


def wait_until(condition, what: str, process=None, limit: float = 180.0, poll: float = 0.05) -> None:
    """Poll `condition` until it holds. A guard against a hung test, not a speed check: when
    `process` exits first, or after `limit` seconds, the test fails naming what never happened."""
    stop = time.monotonic() + limit
    while not condition():
        if process is not None and process.poll() is not None:
            err = process.stderr.read() if getattr(process, "stderr", None) else ""
            pytest.fail(f"{what}: the process exited with {process.returncode} first\n{err[-2000:] if err else ''}")
        if time.monotonic() > stop:
            pytest.fail(f"{what}: not seen within {limit:.0f} s")
        time.sleep(poll)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w: int = 64, h: int = 48, colour=(200, 30, 40)) -> Image.Image:
    """A red rectangle on white: a photo with a known outline."""
    arr = np.full((h, w, 3), 255, np.uint8)
    arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = colour
    return Image.fromarray(arr)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory) -> Path:
    """Shards of a 64-item demo catalog at 96 px, built by the real pipeline."""
    from fsbir.pipelines.build import BuildConfig, run_build
    from fsbir.pipelines.catalog import CatalogSpec

    root = tmp_path_factory.mktemp("demo_shards")
    catalog = write_demo_catalog(root / "catalog", n=64, seed=11, size=128)
    out = root / "shards"
    run_build(BuildConfig(catalog=CatalogSpec(str(catalog)), out_dir=str(out), image_size=96, shard_size=32, workers=1,
                          val_fraction=0.2, test_fraction=0.2))
    return out


@pytest.fixture(scope="session")
def tiny_model():
    from fsbir.retrieval.factory import ModelSpec, create_model

    return create_model(ModelSpec(model="fsbir-tiny"))


@pytest.fixture(scope="session")
def demo_run(demo_shards, tmp_path_factory) -> Path:
    """A run folder with a checkpoint of fsbir-tiny trained for one epoch on demo_shards."""
    from fsbir.retrieval.training import TrainConfig, train

    out = tmp_path_factory.mktemp("demo_run")
    train(TrainConfig(shards=str(demo_shards), out=str(out), model="fsbir-tiny", epochs=1, batch_size=8, workers=0,
                      warmup_steps=2))
    return out


@pytest.fixture(scope="session")
def demo_index(demo_shards, demo_run, tmp_path_factory) -> Path:
    from fsbir.retrieval.index import IndexConfig, build_index

    out = tmp_path_factory.mktemp("demo_index")
    build_index(IndexConfig(shards=str(demo_shards), checkpoint=str(demo_run), out=str(out)))
    return out
