import json

import numpy as np
from PIL import Image

from fsbir.pipelines.demo_catalog import COLOURS, PATTERNS, VARIANTS, demo_items, render_item, write_demo_catalog


def test_deterministic_per_seed(tmp_path):
    a = write_demo_catalog(tmp_path / "a", n=12, seed=7)
    b = write_demo_catalog(tmp_path / "b", n=12, seed=7)
    c = write_demo_catalog(tmp_path / "c", n=12, seed=8)
    assert (a / "metadata.jsonl").read_text() == (b / "metadata.jsonl").read_text()
    assert (a / "metadata.jsonl").read_text() != (c / "metadata.jsonl").read_text()
    assert (a / "images/demo-000003.jpg").read_bytes() == (b / "images/demo-000003.jpg").read_bytes()


def test_coverage_of_categories_colours_patterns():
    items = demo_items(600, seed=0)
    assert len({i.category for i in items}) >= 8 and len(VARIANTS) >= 8
    assert len({i.colour for i in items}) >= 12
    assert {"white", "ivory", "cream", "light gray", "sky blue", "pale pink"} <= set(COLOURS)
    assert {i.pattern for i in items} == set(PATTERNS)


def test_colour_only_and_shape_only_siblings_exist():
    items = demo_items(90, seed=1)
    def key(i, drop):
        return tuple(getattr(i, f) for f in ("category", "variant", "colour", "pattern") if f != drop)
    for drop in ("colour", "variant"):
        groups = {}
        for i in items:
            groups.setdefault(key(i, drop), set()).add(getattr(i, drop))
        assert sum(len(v) >= 2 for v in groups.values()) >= 20, drop


def test_render_white_item_is_low_contrast_and_shape_variants_differ():
    base = demo_items(3, seed=2)[0]
    from dataclasses import replace

    white = render_item(replace(base, colour="white", pattern="solid"))
    assert white.dtype == np.uint8 and white.shape == (256, 256, 3)
    assert white[0, 0].min() > 245 and white.min() > 200  # white on white: hard for plain Canny
    other = next(v for v in VARIANTS[base.category] if v != base.variant)
    a = render_item(replace(base, colour="black")) < 128
    b = render_item(replace(base, colour="black", variant=other)) < 128
    assert (a != b).mean() > 0.02


def test_metadata_columns_and_captions(tmp_path):
    folder = write_demo_catalog(tmp_path, n=30, seed=0)
    rows = [json.loads(l) for l in (folder / "metadata.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"file_name", "product_id", "caption", "category", "colour", "pattern", "length"}
    assert all(r["colour"] in r["caption"] for r in rows)
    assert Image.open(folder / rows[0]["file_name"]).size == (256, 256)
