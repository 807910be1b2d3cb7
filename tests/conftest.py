import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.demo_catalog import write_demo_catalog


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """A small demo catalog in the imagefolder layout (made by the project itself)."""
    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog", n=36, seed=3)


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
