import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.retrieval.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from fsbir.retrieval.colour import (COLOUR_ALIASES, COLOUR_NAMES, HUE_BINS, colour_loss, colour_targets, names_a_colour,
                                    product_mask, product_stats, soft_cross_entropy)
from fsbir.retrieval.factory import ModelSpec, Preprocess, create_model
from fsbir.retrieval.transforms import decode_photo, photo_tensor
from fsbir.shardformat import shard_files
from fsbir.sketchgen import find_words


@pytest.mark.parametrize("text, words", [
    ("Roadster Men Navy Blue Slim Fit Jeans", ["navy blue"]),
    ("a red and white striped shirt", ["red", "white"]),
    ("Off-White sneakers", ["off-white"]),
    ("bluetooth speaker in redwood", []),
    ("", []),
])
def test_find_words_takes_whole_words_longest_first(text, words):
    assert find_words(text, COLOUR_NAMES + tuple(COLOUR_ALIASES)) == words


def test_names_a_colour():
    assert names_a_colour(["a shoe", "a Gray coat", "Bluetooth speaker", "navy"]).tolist() == [False, True, False, True]


def test_colour_targets_split_the_mass_and_map_aliases():
    t = colour_targets(["a red and white top", "gray chinos", "a plain top"])
    red, white, grey = (COLOUR_NAMES.index(c) for c in ("red", "white", "grey"))
    assert t.shape == (3, len(COLOUR_NAMES))
    assert t[0, red] == t[0, white] == 0.5 and t[0].sum() == 1
    assert t[1, grey] == 1 and t[2].sum() == 0  # an alias is its colour; no colour, no target
    with_none = colour_targets(["a plain top", "a red top"], with_none=True)
    assert with_none.shape == (2, len(COLOUR_NAMES) + 1)
    assert with_none[0, -1] == 1 and with_none[1, red] == 1 and with_none[1, -1] == 0


def test_soft_cross_entropy_skips_rows_without_a_target():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = soft_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(-torch.log_softmax(logits[0], 0)[0].item())
    loss.backward()
    assert logits.grad[1].abs().sum() == 0
    none = soft_cross_entropy(logits, torch.zeros(2, 2))
    assert none.item() == 0 and none.requires_grad


def test_the_colour_block_follows_the_words_not_the_sketch():
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny", colour_weight=0.25))
    d, width = model.joint_dim, len(COLOUR_NAMES)
    assert model.embed_dim == d + width
    sketches = torch.rand(3, 3, pp.image_size, pp.image_size)
    tokens = tok(["a red shirt", "a red shirt", "a red shirt"])
    with torch.no_grad():
        sketch, text = model.encode_sketch(sketches), model.encode_text(tokens)
        photo = model.encode_image(sketches)
        fused = model.fuse_queries(sketch, text, torch.ones(3, dtype=torch.bool), torch.tensor([True, False, True]))
        sketch_only = model.encode_query(sketches, None)
    assert (sketch[:, d:] == 0).all()  # a sketch says nothing about colour
    assert torch.allclose(photo[:, d:].pow(2).sum(1), torch.full((3,), 0.25))  # √0.25 · √(a distribution)
    assert 0 < text[0, d:].pow(2).sum() < 0.25  # √0.25 · √P(some colour), the rest is P(none)
    assert torch.equal(fused[0, d:], text[0, d:]) and (fused[1, d:] == 0).all()
    assert (sketch_only[:, d:] == 0).all() and torch.allclose(sketch_only[:, :d].norm(dim=1), torch.ones(3))
    with torch.no_grad():
        words = ["a shoe", "a red shoe", "Navy jeans"]
        gated = model.encode_text(tok(words), words)
    assert (gated[0, d:] == 0).all()  # words that name no colour ask for none, whatever the head guesses
    assert torch.equal(gated[1:, d:], model.encode_text(tok(words))[1:, d:])


@pytest.mark.slow
def test_the_colour_loss_teaches_the_head_photo_and_word_colours(tmp_path):
    """The head alone, trained by colour_loss on a 240-item demo catalog's training rows (real
    photos through the real build, the pretrained MiniLM text tower), names the colour of held-out
    photos and of phrasings no caption used."""
    catalog = write_demo_catalog(tmp_path / "catalog", n=240, seed=5, size=96)
    run_build(BuildConfig(catalog=CatalogSpec(str(catalog)), out_dir=str(tmp_path / "shards"), image_size=64,
                          shard_size=500, workers=1, val_fraction=0.2, test_fraction=0.2))
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny-minilm", colour_weight=1.0))
    model.eval()
    rows = [r for f in shard_files(tmp_path / "shards") for r in pq.read_table(f).to_pylist() if r["status"] == "ok"]
    images = torch.stack([photo_tensor(decode_photo(r["image"]["bytes"], pp.image_size), pp) for r in rows])
    captions = [r["caption"] for r in rows]
    with torch.no_grad():
        stats = model.pixel_stats(images)
        photo, _ = model.visual_outputs(model.clip.encode_image(images), stats, "sketch")
        text = F.normalize(model.clip.encode_text(tok(captions)), dim=-1)
    _, head_stats = model.split_pixel_stats(stats)
    train = torch.tensor([r["split"] == "train" for r in rows])
    train_captions = [c for c, t in zip(captions, train) if t]
    head = model.colour_head
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(300):
        loss = colour_loss(head.photo_logits(photo[train], head_stats[train]), head.text_logits(text[train]),
                           train_captions, train_captions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    held_out = [i for i in range(len(rows)) if not train[i]]
    targets = colour_targets([captions[i] for i in held_out])
    with torch.no_grad():
        guess = head.photo_logits(photo[held_out], head_stats[held_out]).argmax(1)
    right = (targets[torch.arange(len(held_out)), guess] > 0).float().mean()
    assert right >= 0.6, f"held-out photos' colour right for {right:.2f} (14 colours)"
    with torch.no_grad():
        asked = head.text_logits(F.normalize(model.clip.encode_text(tok(
            ["a red thing", "something black", "yellow, please", "any navy one", "a green one"])), dim=-1)).argmax(1)
    assert [COLOUR_NAMES[i] for i in asked] == ["red", "black", "yellow", "navy blue", "green"]


def test_a_checkpoint_from_before_the_head_loads_without_it(demo_run, tmp_path):
    ckpt = load_checkpoint(demo_run)
    spec = {k: v for k, v in ckpt["model_spec"].items() if k != "colour_weight"}
    old = {k: v for k, v in ckpt["model"].items() if not k.startswith("colour_head.")}
    save_checkpoint(tmp_path / "old.pt", {**ckpt, "model_spec": spec, "model": old})
    model, *_ = model_from_checkpoint(tmp_path / "old.pt")
    assert model.colour_head is None and model.embed_dim == model.joint_dim


def _worn_shirt(shirt_rgb) -> torch.Tensor:
    """A studio photo as the model sees it (JPEG bytes, decoded, letterboxed, normalised): a grey
    background, a skin-coloured head and arms, and a shirt of `shirt_rgb`."""
    from PIL import Image

    from tests.conftest import encode

    arr = np.full((224, 168, 3), 236, np.uint8)
    arr[14:60, 64:104] = (224, 172, 140)  # the head
    arr[70:160, 22:42] = arr[70:160, 126:146] = (224, 172, 140)  # the arms
    arr[64:190, 42:126] = shirt_rgb
    pp = Preprocess(image_size=160, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # the default model's
    rgb = decode_photo(encode(Image.fromarray(arr), "JPEG", quality=92), pp.image_size)
    return photo_tensor(rgb, pp)[None] * torch.tensor(pp.std).view(1, 3, 1, 1) + torch.tensor(pp.mean).view(1, 3, 1, 1)


def test_product_stats_read_the_garment_not_the_background_or_the_skin():
    red, blue = _worn_shirt((200, 30, 40)), _worn_shirt((40, 60, 190))
    foreground, skin, product = product_mask(red)
    side = red.shape[-1]
    assert skin.float().mean() > 0.05 and not (product & skin).any()
    assert foreground.float().mean() < 0.6 and product.float().mean() > 0.15
    y0, x0 = int(side * 0.45), side // 2  # inside the shirt
    assert product[0, y0, x0] and not product[0, 2, 2]  # the shirt is the product, the corner background
    hue_mass = product_stats(red)[0, :HUE_BINS * 4].div(2).pow(2)  # the histogram part, back to shares
    red_bins, blue_bins = hue_mass[:4].sum() + hue_mass[-4:].sum(), hue_mass[7 * 4:9 * 4].sum()
    assert red_bins > 0.8 and blue_bins < 0.05, "the red shirt's pixels fall in the red hue bins"
    blue_mass = product_stats(blue)[0, :HUE_BINS * 4].div(2).pow(2)
    assert blue_mass[7 * 4:9 * 4].sum() > 0.8


def test_an_item_all_in_skin_colours_keeps_its_pixels():
    tan = _worn_shirt((224, 172, 140))  # a tan jacket: every foreground pixel is skin-coloured
    foreground, skin, product = product_mask(tan)
    assert torch.equal(product, foreground) and foreground.float().mean() > 0.3
