import numpy as np

from fsbir.retrieval.data import LoaderConfig, caption_choices, iter_rows, make_loader, template_columns, unique_batches
from fsbir.shardformat import count_ok_rows
from fsbir.retrieval.transforms import sketch_tensor
from fsbir.sketchgen.augment import SketchAugment, augment_sketch
from fsbir.sketchgen.strokes import render_strokes


def test_count_and_iter_rows_agree(demo_shards):
    for split in ("train", "val", "test", "all"):
        rows = list(iter_rows(demo_shards, split, ["product_id"]))
        assert len(rows) == count_ok_rows(demo_shards, split)
    assert count_ok_rows(demo_shards, "all") == 64


def test_parts_cover_rows_exactly_once(demo_shards):
    ids = [r["product_id"] for part in range(3) for r in iter_rows(demo_shards, "all", ["product_id"], part, 3)]
    assert sorted(ids) == sorted(r["product_id"] for r in iter_rows(demo_shards, "all", ["product_id"]))


def test_unique_batches_never_repeat_a_product():
    rows = [{"product_id": p} for p in "aabacbddee"]
    batches = list(unique_batches(iter(rows), 3, drop_last=False))
    assert all(len({r["product_id"] for r in b}) == len(b) for b in batches)
    assert sorted(r["product_id"] for b in batches for r in b) == sorted("aabacbddee")


def test_loader_batches(demo_shards, tiny_model):
    _, pp, tok = tiny_model
    cfg = LoaderConfig(batch_size=8, split="all", workers=2, augment=SketchAugment(), seed=1)
    loader, ds = make_loader(demo_shards, cfg, pp, tok)
    batches = list(loader)
    assert len(batches) == 8
    b = batches[0]
    assert b["images"].shape == (8, 3, 96, 96) and b["sketches"].shape == (8, 3, 96, 96) and b["tokens"].shape == (8, 32)
    seen = [p for b in batches for p in b["product_id"]]
    assert len(seen) == len(set(seen)) == 64
    again = [p for b in make_loader(demo_shards, cfg, pp, tok)[0] for p in b["product_id"]]
    assert again == seen  # same seed and epoch → same order
    ds.set_epoch(1)
    assert [p for b in loader for p in b["product_id"]] != seen


def test_augment_changes_sketch_but_keeps_format():
    sketch = np.full((128, 128), 255, np.uint8)
    sketch[30:100, 40] = 0
    sketch[30, 40:90] = 0
    sketch[100, 40:90] = 0
    out = augment_sketch(sketch, np.random.default_rng(0), SketchAugment(stroke_dropout=0.0, max_stroke_width=3))
    assert out.shape == sketch.shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    assert not np.array_equal(out, sketch) and (out == 0).sum() > 50
    none = SketchAugment(max_stroke_width=1, rotate_deg=0, scale=0, translate=0, elastic_alpha=0, stroke_dropout=0)
    assert np.array_equal(augment_sketch(sketch, np.random.default_rng(0), none), sketch)


def test_render_strokes_quickdraw():
    drawing = [[[0, 100, 200], [0, 255, 0]], [[50, 150], [128, 128]]]
    img = render_strokes(drawing, size=96, stroke_width=2)
    assert img.shape == (96, 96) and img.dtype == np.uint8
    dark = np.argwhere(img == 0)
    assert dark[:, 0].min() >= 5 and dark[:, 0].max() <= 90  # scaled inside the margin
    assert (img == 0).mean() > 0.02


def test_sketch_tensor_keeps_thin_lines_dark(tiny_model):
    _, pp, _ = tiny_model
    sketch = np.full((256, 256), 255, np.uint8)
    sketch[:, 128] = 0  # 1-pixel line at 256 px
    x = sketch_tensor(sketch, pp)
    assert x.shape == (3, 96, 96)
    assert x[0].min() < sketch_tensor(np.full((256, 256), 255, np.uint8), pp)[0].min() - 1.0  # still a clearly dark line at 96 px


def test_caption_templates_fill_from_columns_and_fall_back_to_the_caption():
    templates = ("a {colour} {category}", "{category}")
    assert template_columns(templates) == ("colour", "category")
    row = {"caption": "Nike Men Blue Shoe", "colour": "Blue", "category": "Casual Shoes"}
    assert caption_choices(row, templates) == ["Nike Men Blue Shoe", "a Blue Casual Shoes", "Casual Shoes"]
    assert caption_choices({**row, "colour": None}, templates) == ["Nike Men Blue Shoe", "Nike Men Blue Shoe", "Casual Shoes"]
    assert caption_choices({**row, "caption": None}, ()) == [""]


def test_loader_draws_each_rows_text_from_its_caption_and_templates(demo_shards, tiny_model):
    _, pp, tok = tiny_model
    templates = ("a {colour} {category}",)
    cfg = LoaderConfig(batch_size=8, split="all", seed=3, caption_templates=templates)
    drawn = {"caption": 0, "template": 0}
    for b in make_loader(demo_shards, cfg, pp, tok)[0]:
        for i in range(len(b["product_id"])):
            row = {"caption": b["caption"][i], "colour": b["colour"][i], "category": b["category"][i]}
            caption, filled = caption_choices(row, templates)
            kind = "caption" if b["tokens"][i].tolist() == tok([caption])[0].tolist() else "template"
            assert kind == "caption" or b["tokens"][i].tolist() == tok([filled])[0].tolist()
            drawn[kind] += 1
    assert drawn["caption"] > 10 and drawn["template"] > 10  # 64 rows, each one of two texts
