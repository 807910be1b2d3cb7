"""Canonical framing (content crop) and the outline sketch style: drawings and products framed and
drawn alike."""
import json

import cv2
import numpy as np
import torch

from fsbir.retrieval.factory import CONFIG_DIR, ModelSpec, create_model
from fsbir.retrieval.transforms import photo_tensor, sketch_tensor
from fsbir.sketchgen.augment import SketchAugment, augment_sketch, outline_strokes
from fsbir.sketchgen.geometry import crop_to_content


def test_crop_to_content_frames_strokes_and_photo_objects():
    sketch = np.full((200, 300), 255, np.uint8)
    cv2.rectangle(sketch, (40, 50), (139, 99), 0, 1)  # a 100 × 50 drawing in a 300 × 200 canvas
    cut = crop_to_content(sketch, margin=0.1)
    assert cut.shape == (50 + 20, 100 + 20)
    assert (cut < 128).sum() == (sketch < 128).sum()
    photo = np.full((240, 180, 3), 232, np.uint8)  # a light grey studio background
    photo[100:160, 60:90] = (30, 60, 200)
    assert crop_to_content(photo, margin=0).shape == (60, 30, 3)
    blank = np.full((50, 80), 255, np.uint8)
    assert crop_to_content(blank) is blank


def test_outline_keeps_the_silhouette_and_long_lines_not_texture():
    strokes = np.zeros((128, 128), np.uint8)
    cv2.rectangle(strokes, (20, 20), (107, 107), 1, 1)  # the silhouette
    cv2.line(strokes, (64, 24), (64, 104), 1, 1)  # a long seam (not touching the outline)
    specks = [(40, x) for x in range(28, 100, 8)] + [(80, x + 2) for x in range(28, 100, 8)]
    for y, x in specks:  # print / texture
        strokes[y, x] = 1
    out = outline_strokes(strokes)
    assert out[20, 60] == 1 and out[107, 60] == 1 and out[64, 20] == 1  # the contour
    assert out[64, 64] == 1  # the seam
    assert all(out[y, x] == 0 for y, x in specks)
    rng = np.random.default_rng(0)
    drawn = augment_sketch(((1 - strokes) * 255).astype(np.uint8), rng, SketchAugment(
        max_stroke_width=1, rotate_deg=0, scale=0, translate=0, elastic_alpha=0, stroke_dropout=0, outline=1.0))
    assert np.array_equal(drawn < 128, out.astype(bool))


def test_a_model_config_with_crop_frames_inputs_before_letterboxing(tmp_path):
    cfg = json.loads((CONFIG_DIR / "fsbir-tiny.json").read_text())
    cfg.setdefault("fsbir", {})["crop_to_content"] = True
    (tmp_path / "cropped.json").write_text(json.dumps(cfg))
    _, pp, _ = create_model(ModelSpec(model=str(tmp_path / "cropped.json")))
    _, plain, _ = create_model(ModelSpec(model="fsbir-tiny"))
    assert pp.crop_to_content and not plain.crop_to_content
    small = np.full((400, 400), 255, np.uint8)
    cv2.circle(small, (100, 100), 40, 0, 3)  # a small doodle in a corner of its canvas
    tight = crop_to_content(small)
    assert torch.allclose(sketch_tensor(small, pp), sketch_tensor(tight, plain))
    assert not torch.allclose(sketch_tensor(small, plain), sketch_tensor(tight, plain))
    photo = np.full((300, 200, 3), 240, np.uint8)
    photo[120:180, 80:120] = (200, 30, 40)
    assert torch.allclose(photo_tensor(photo, pp), photo_tensor(crop_to_content(photo), plain))


def test_colour_statistics_start_silent_and_then_tell_colours_apart(tmp_path):
    """A model with colour_grid starts exactly as the same weights without it (zero projection);
    once the projection learns, two photos that differ only in colour embed apart."""
    cfg = json.loads((CONFIG_DIR / "fsbir-tiny.json").read_text())
    cfg.setdefault("fsbir", {})["colour_grid"] = 2
    (tmp_path / "colour.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    coloured, pp, _ = create_model(ModelSpec(model=str(tmp_path / "colour.json")))
    plain, _, _ = create_model(ModelSpec(model="fsbir-tiny"))
    plain.load_state_dict({k: v for k, v in coloured.state_dict().items() if not k.startswith("colour.")})
    shirt = np.full((96, 96, 3), 255, np.uint8)
    red, blue = shirt.copy(), shirt.copy()
    red[20:80, 30:66] = (200, 20, 20)
    blue[20:80, 30:66] = (20, 20, 200)
    images = torch.stack([photo_tensor(red, pp), photo_tensor(blue, pp)])
    coloured.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(coloured.encode_image(images), plain.encode_image(images), atol=1e-6)
        assert coloured.colour.stats(images).shape == (2, 3 * 2 * 2 + 3)
        torch.nn.init.normal_(coloured.colour.proj.weight, std=1.0)
        before = (plain.encode_image(images)[0] @ plain.encode_image(images)[1]).item()
        after = (coloured.encode_image(images)[0] @ coloured.encode_image(images)[1]).item()
    assert after < before
