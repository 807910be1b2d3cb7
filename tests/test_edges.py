"""The reason the colour-word rule exists, measured on a real array."""
import io

import cv2
import numpy as np
from PIL import Image, ImageDraw

from fsbir.sketchgen import SketchSettings, edge_map, edge_sketch, letterbox, make_pair, needs_light_item_path
from fsbir.sketchgen.geometry import letterbox_pair
from fsbir.sketchgen.pair import PairSettings


def decode_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def white_garment_on_white(size=256, garment=244, seed=0):
    """A near-white t-shirt silhouette on a white background, with mild sensor noise, as JPEG.
    Returns the decoded RGB array and the garment mask."""
    mask = Image.new("L", (size, size), 0)
    poly = [(0.4, 0.15), (0.24, 0.2), (0.1, 0.38), (0.2, 0.44), (0.28, 0.36), (0.28, 0.85), (0.72, 0.85),
            (0.72, 0.36), (0.8, 0.44), (0.9, 0.38), (0.76, 0.2), (0.6, 0.15), (0.5, 0.22)]
    ImageDraw.Draw(mask).polygon([(x * size, y * size) for x, y in poly], fill=255)
    m = np.asarray(mask) > 0
    rng = np.random.default_rng(seed)
    img = np.where(m[..., None], garment, 255).astype(np.float32) + rng.normal(0, 1.2, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return np.asarray(Image.open(buf).convert("RGB")), m


def boundary_recall(edges: np.ndarray, mask: np.ndarray, tolerance: int = 2) -> float:
    """Share of the garment's true boundary pixels that have a stroke within `tolerance` px."""
    boundary = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    near_stroke = cv2.dilate(edges.astype(np.uint8), np.ones((2 * tolerance + 1,) * 2, np.uint8)) > 0
    return float((boundary & near_stroke).sum() / boundary.sum())


def test_light_path_draws_white_garment_outline_much_better():
    rgb, mask = white_garment_on_white()
    plain = boundary_recall(edge_map(rgb, light_item=False), mask)
    light = boundary_recall(edge_map(rgb, light_item=True), mask)
    assert light > 0.8, light
    assert light > plain + 0.4, (plain, light)


def test_light_path_adds_little_noise_off_the_boundary():
    rgb, mask = white_garment_on_white(seed=1)
    edges = edge_map(rgb, light_item=True)
    far = cv2.dilate((cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))),
                     np.ones((9, 9), np.uint8)) == 0
    assert (edges & far).sum() < 0.05 * edges.sum()


def test_plain_path_on_contrasting_item():
    rgb, mask = white_garment_on_white(garment=40)
    assert boundary_recall(edge_map(rgb, light_item=False), mask) > 0.9


def test_sketch_is_black_on_white_and_records_params():
    rgb, _ = white_garment_on_white()
    sketch, info = edge_sketch(rgb, light_item=True)
    assert sketch.dtype == np.uint8 and set(np.unique(sketch)) <= {0, 255}
    assert (sketch == 255).mean() > 0.9  # mostly white paper
    assert info["params"]["method"] == "light_item" and info["params"]["equalize"] is True
    assert 0 < info["edge_density"] < 0.1
    assert abs(info["edge_density"] - (sketch == 0).mean()) < 1e-9


def test_speck_removal_and_stroke_width():
    rng = np.random.default_rng(0)
    noisy = np.full((128, 128, 3), 255, np.uint8)
    noisy[rng.random((128, 128)) < 0.01] = 0  # isolated dots
    noisy[30:100, 30:100] = 0  # plus one real object
    no_cleanup = edge_map(noisy, False, SketchSettings(min_speck_size=1)).sum()
    cleaned = edge_map(noisy, False, SketchSettings(min_speck_size=12)).sum()
    thick = edge_map(noisy, False, SketchSettings(min_speck_size=12, stroke_width=3)).sum()
    assert cleaned < no_cleanup and thick > cleaned * 1.8


def test_letterbox_keeps_aspect_and_pads_white():
    img = np.zeros((100, 50, 3), np.uint8)
    out = letterbox(img, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:, :10] == 255).all() and (out[:, 24:40] == 0).all()
    white, rep = letterbox_pair(img, 64)
    assert (white == out).all() and (rep == 0).all()
    grey = letterbox(np.zeros((30, 60), np.uint8), 64)
    assert grey.shape == (64, 64) and (grey[:16] == 255).all() and (grey[17:47] == 0).all()


def test_make_pair_aligned_and_rule_applied():
    rgb, mask = white_garment_on_white(size=200)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    settings = PairSettings(image_size=128)
    light = make_pair(buf.getvalue(), "a white t-shirt", settings)
    plain = make_pair(buf.getvalue(), "a t-shirt", settings)
    assert needs_light_item_path("a white t-shirt")
    assert light.method == "light_item" and plain.method == "canny"
    assert light.edge_density > plain.edge_density
    photo, sketch = decode_image(light.image_jpeg), decode_image(light.sketch_png)
    assert photo.size == sketch.size == (128, 128) and photo.format == "JPEG" and sketch.format == "PNG"
    assert light.original_size == (200, 200)


def test_speck_removal_matches_scikit_image():
    """Our OpenCV speck removal is scikit-image's remove_small_objects (8-connectivity), faster."""
    import inspect

    from skimage.morphology import remove_small_objects

    from fsbir.sketchgen.edges import _remove_specks

    rng = np.random.default_rng(3)
    edges = rng.random((96, 96)) < 0.08
    edges[10:40, 20] = True
    kwargs = ({"max_size": 11} if "max_size" in inspect.signature(remove_small_objects).parameters
              else {"min_size": 12})
    expected = remove_small_objects(edges, connectivity=2, **kwargs)
    assert np.array_equal(_remove_specks(edges, 12), expected)


def person_in_shirt(size=256, skin=(224, 172, 140), shirt=(40, 70, 160)):
    """A person on a white background: a skin-coloured head and arms, a blue shirt with a stripe
    across it, as real JPEG bytes. Returns the bytes and the head, arm and shirt masks."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    s = size / 256
    head, arm, body = (104, 20, 152, 76), (50, 86, 84, 200), (84, 80, 172, 230)
    draw.ellipse([v * s for v in head], fill=skin)
    draw.ellipse([v * s for v in (116, 40, 124, 48)], fill=(60, 40, 30))  # an eye: an edge inside the face
    draw.rectangle([v * s for v in arm], fill=skin)
    draw.rectangle([v * s for v in body], fill=shirt)
    draw.rectangle([v * s for v in (84, 150, 172, 160)], fill=(230, 230, 60))  # the shirt's stripe
    masks = {}
    for name, box in (("head", head), ("arm", arm), ("shirt", body)):
        m = Image.new("L", (size, size), 0)
        (ImageDraw.Draw(m).ellipse if name == "head" else ImageDraw.Draw(m).rectangle)([v * s for v in box], fill=255)
        masks[name] = np.asarray(m) > 0
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue(), masks


def test_drop_skin_takes_the_person_out_and_keeps_the_garment():
    data, masks = person_in_shirt()
    plain = make_pair(data, "a blue shirt", PairSettings(image_size=256))
    dropped = make_pair(data, "a blue shirt", PairSettings(image_size=256, sketch=SketchSettings(drop_skin=True)))
    before = np.asarray(decode_image(plain.sketch_png).convert("L")) < 128
    after = np.asarray(decode_image(dropped.sketch_png).convert("L")) < 128
    head_only = masks["head"] & ~masks["shirt"]
    ring = cv2.dilate(head_only.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # the head and its outline
    # The face and its outline are gone, but for a few pixels where JPEG blurs the neckline.
    assert before[ring].sum() > 60 and after[ring & ~masks["shirt"]].sum() <= 0.05 * before[ring].sum()
    arm_outer = cv2.dilate(masks["arm"].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    arm_outer &= ~(cv2.dilate(masks["shirt"].astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    assert before[arm_outer].sum() > 60 and after[arm_outer].sum() <= 0.05 * before[arm_outer].sum()  # the arm's outline
    # The shirt keeps its outline (its seam with the arm included) and the stripe inside it.
    assert boundary_recall(after, masks["shirt"], tolerance=3) > 0.85
    assert after[148:163, 100:156].any(axis=1).sum() >= 2  # the stripe's two edges
    assert dropped.params["drop_skin"] is True and plain.params["drop_skin"] is False


def test_drop_skin_leaves_an_item_that_is_skin_coloured_itself():
    """Tan leather or a beige dress is the item, not a person: its edges all stay."""
    data, _ = person_in_shirt(shirt=(224, 172, 140))  # head, arms and shirt all skin-coloured
    plain = make_pair(data, "a tan jacket", PairSettings(image_size=256))
    dropped = make_pair(data, "a tan jacket", PairSettings(image_size=256, sketch=SketchSettings(drop_skin=True)))
    assert plain.sketch_png == dropped.sketch_png
