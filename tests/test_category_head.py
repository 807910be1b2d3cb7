"""The category head: what a photo shows, a sketch draws and the words name, as the catalog's
categories, in a block that one inner product scores."""
import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from fsbir import FsbirError
from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from fsbir.pipelines.demo_catalog import write_demo_catalog
from fsbir.retrieval.category import category_loss, category_names, category_targets, category_texts, singular
from fsbir.retrieval.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from fsbir.retrieval.colour import COLOUR_NAMES
from fsbir.retrieval.factory import ModelSpec, create_model
from fsbir.retrieval.index import IndexConfig, SearchEngine, build_index
from fsbir.retrieval.training import TrainConfig, train
from fsbir.retrieval.transforms import decode_photo, photo_tensor
from fsbir.shardformat import shard_files

NAMES = ("Shirts", "Shoes", "Trousers")


def test_category_names_and_targets():
    assert category_names(["Shoes", None, "Shirts", "", "nan", "Shoes"]) == ("Shirts", "Shoes")
    assert category_targets(["Shoes", None, "Hats", "Shirts"], ("Shirts", "Shoes")).tolist() == [1, -1, -1, 0]


def test_the_class_names_as_a_shopper_types_them():
    assert [singular(w) for w in ("trousers", "casual shoes", "dresses", "flip flops", "dress", "watches", "jeans")] == [
        "trouser", "casual shoe", "dress", "flip flop", "dress", "watch", "jean"]
    assert category_texts(("Casual Shoes", "Trousers")) == ["casual shoes", "trousers", "a casual shoe", "a trouser"]


def test_category_loss_skips_rows_without_a_category():
    logits = {k: torch.tensor([[3.0, 0.0], [0.0, 3.0]], requires_grad=True) for k in ("photo", "text")}
    loss = category_loss(logits, torch.tensor([0, -1]))
    assert loss.item() == pytest.approx(2 * F.cross_entropy(logits["photo"][:1], torch.tensor([0])).item())
    loss.backward()
    assert all(l.grad[1].abs().sum() == 0 for l in logits.values())
    none = category_loss(logits, torch.tensor([-1, -1]))
    assert none.item() == 0 and none.requires_grad


def test_the_category_block_is_the_words_and_a_sketch_has_none():
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny", colour_weight=0.25, category_names=NAMES,
                                            category_head_weight=0.4))
    d, colour = model.joint_dim, len(COLOUR_NAMES)
    assert model.embed_dim == d + colour + len(NAMES)
    for head in (model.category_head.photo, model.category_head.text):
        torch.nn.init.normal_(head[-1].weight, std=2.0)  # a head that has an opinion
    images = torch.rand(4, 3, pp.image_size, pp.image_size)
    words = ["a red shirt", "a shoe", "trousers", "a blue shirt"]
    with torch.no_grad():
        photo, sketch, text = model.encode_image(images), model.encode_sketch(images), model.encode_text(tok(words), words)
        fused = model.fuse_queries(sketch, text, torch.tensor([True, True, False, True]),
                                   torch.tensor([True, False, True, True]))
        sketch_only = model.encode_query(images, None)
    k = slice(d + colour, None)
    for v in (photo, text):  # √0.4 · √(a distribution)
        assert torch.allclose(v[:, k].pow(2).sum(1), torch.full((4,), 0.4), atol=1e-5)
    assert not torch.allclose(photo[:, k], text[:, k])
    assert (sketch[:, d:] == 0).all() and (sketch_only[:, d:] == 0).all()  # a drawing names nothing
    assert torch.equal(fused[[0, 2, 3], k], text[[0, 2, 3], k]) and (fused[1, d:] == 0).all()
    assert torch.equal(fused[0, d:d + colour], text[0, d:d + colour])


def test_a_photo_of_the_asked_category_scores_higher_by_the_weight():
    """One inner product adds weight × Σ √(P_query · P_photo): the same joint cosine, a photo the
    head reads as the named category beats one it reads as another."""
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny", category_names=NAMES, category_head_weight=0.5))
    head = model.category_head
    sure = torch.full((2, len(NAMES)), -20.0)
    sure[0, 0] = sure[1, 2] = 20.0  # photo 0 a shirt, photo 1 trousers
    joint = F.normalize(torch.ones(2, model.joint_dim), dim=1)
    photos = model.vector(joint, {"category": sure}, "photo")
    query = model.vector(joint[:1], {"category": sure[:1]}, "text")  # words that name a shirt
    scores = (query @ photos.T)[0]
    assert scores[0] - scores[1] == pytest.approx(head.weight, abs=1e-4)


def test_training_with_a_category_column_gives_the_model_its_head(demo_shards, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(shards=str(demo_shards), out=str(out), model="fsbir-tiny", epochs=1, batch_size=8, workers=0,
                      warmup_steps=2, category_column="category"))
    train_categories = {r["category"] for f in shard_files(demo_shards) for r in pq.read_table(f).to_pylist()
                        if r["status"] == "ok" and r["split"] == "train"}
    ckpt = load_checkpoint(out)
    assert tuple(ckpt["model_spec"]["category_names"]) == tuple(sorted(train_categories))
    model, pp, tok, _ = model_from_checkpoint(out)
    assert model.category_head.names == tuple(sorted(train_categories)) and model.category_head.weight == 0.3
    with torch.no_grad():
        assert model.encode_text(tok(["a hat"]), ["a hat"]).shape[1] == model.joint_dim + len(COLOUR_NAMES) + len(train_categories)
    assert "category head: the `category` column, weight 0.3" in (out / "MODEL_CARD.md").read_text()
    # The index holds the photos' blocks and a search's words bring theirs: one inner product.
    build_index(IndexConfig(shards=str(demo_shards), checkpoint=str(out), out=str(tmp_path / "index")))
    engine = SearchEngine(tmp_path / "index")
    stored = np.load(tmp_path / "index" / "embeddings.npy")
    assert stored.shape[1] == model.embed_dim and (stored[:, -len(train_categories):] > 0).all()
    query = engine.encode_query(None, "a hat").ravel()
    assert query.shape == (stored.shape[1],) and (query[-len(train_categories):] > 0).all()  # the words' block
    found = engine.search(None, "a hat", 5)
    assert len(found) == 5 and found[0].score == pytest.approx(float((stored @ query).max()), abs=1e-4)
    plain = tmp_path / "plain"
    train(TrainConfig(shards=str(demo_shards), out=str(plain), model="fsbir-tiny", epochs=1, batch_size=8, workers=0,
                      warmup_steps=2))
    assert model_from_checkpoint(plain)[0].category_head is None
    assert "category head: none" in (plain / "MODEL_CARD.md").read_text()


def test_a_category_column_the_shards_lack_is_one_line(demo_shards, tmp_path):
    with pytest.raises(FsbirError, match="--category-column names kind, not shard columns"):
        train(TrainConfig(shards=str(demo_shards), out=str(tmp_path / "r"), model="fsbir-tiny", epochs=1, batch_size=8,
                          workers=0, category_column="kind"))
    with pytest.raises(FsbirError, match="category-head-weight must be between 0 and 4"):
        TrainConfig(shards="s", out="o", category_head_weight=-0.1)


def test_a_colour_head_from_before_version_2_loads_as_it_was_trained(tmp_path):
    """A checkpoint without head_version was written by a version-1 colour head (the mean layout
    alone, P not √P): it loads as one and gives the same vectors."""
    spec = ModelSpec(model="fsbir-tiny", colour_weight=0.15, head_version=1)
    model, pp, tok = create_model(spec)
    old_spec = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("head_version", "category_names",
                                                                                 "category_head_weight")}
    save_checkpoint(tmp_path / "v1.pt", {"config": {}, "model_spec": old_spec, "model": model.state_dict()})
    loaded, *_ = model_from_checkpoint(tmp_path / "v1.pt")
    assert loaded.colour_head.version == 1 and loaded.colour_head.stats_width == 3 * 8 * 8 + 3
    images = torch.rand(2, 3, pp.image_size, pp.image_size)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(images), model.encode_image(images))
        assert torch.allclose(loaded.encode_image(images)[:, model.joint_dim:].sum(1), torch.full((2,), 0.15 ** 0.5))


@pytest.mark.slow
def test_the_category_loss_teaches_the_heads_photos_sketches_and_words(tmp_path):
    """The heads alone, trained by category_loss on a 240-item demo catalog's training rows (real
    photos through the real build, the default model's pretrained towers), name the category of
    held-out photos well above chance (10 categories) and of short queries no caption used
    (captions name colour and pattern too: "a long ivory checked trouser")."""
    catalog = write_demo_catalog(tmp_path / "catalog", n=240, seed=5, size=96)
    run_build(BuildConfig(catalog=CatalogSpec(str(catalog)), out_dir=str(tmp_path / "shards"), image_size=64,
                          shard_size=500, workers=1, val_fraction=0.2, test_fraction=0.2))
    rows = [r for f in shard_files(tmp_path / "shards") for r in pq.read_table(f).to_pylist() if r["status"] == "ok"]
    names = category_names(r["category"] for r in rows)
    model, pp, tok = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm", category_names=names, category_head_weight=1.0))
    model.eval()
    images = torch.stack([photo_tensor(decode_photo(r["image"]["bytes"], pp.image_size), pp) for r in rows])
    with torch.no_grad():
        joint = {"photo": model.visual_outputs(model.clip.encode_image(images), None, "photo")[0],
                 "text": F.normalize(model.clip.encode_text(tok([r["caption"] for r in rows])), dim=-1)}
    targets = category_targets([r["category"] for r in rows], names)
    train_rows = torch.tensor([r["split"] == "train" for r in rows])
    head = model.category_head
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(300):
        loss = category_loss({k: head.logits(k, v[train_rows]) for k, v in joint.items()}, targets[train_rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = ~train_rows
    with torch.no_grad():
        right = (head.logits("photo", joint["photo"][held_out]).argmax(1) == targets[held_out]).float().mean()
        assert right >= 0.5, f"held-out photos' category right for {right:.2f} (10 categories)"
        words = ["a long trouser", "some shorts", "a handbag", "sneakers", "a cap"]
        asked = head.logits("text", F.normalize(model.clip.encode_text(tok(words)), dim=-1)).argmax(1)
    assert [names[i] for i in asked] == ["trousers", "shorts", "bag", "shoe", "hat"]


def test_the_class_names_teach_the_text_head_through_the_loss():
    """With no row labelled, the category loss reaches the text head only through the class names
    given as texts (what `fsbir train` adds to every batch): a step moves the head towards reading
    each name as its class, and without the names nothing reaches it."""
    from fsbir.retrieval.training.epoch import batch_loss

    torch.manual_seed(0)
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny", category_names=NAMES, category_head_weight=0.3))
    cfg = TrainConfig(shards="s", out="o", model="fsbir-tiny", colour_weight=0, category_column="category")
    n = 4
    batch = {"images": torch.rand(n, 3, pp.image_size, pp.image_size), "sketches": torch.rand(n, 3, pp.image_size, pp.image_size),
             "tokens": tok(["a plain top"] * n), "caption": ["a plain top"] * n, "texts": ["a plain top"] * n,
             "category": [None] * n, "category_index": torch.full((n,), -1)}
    masks = torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    head = model.category_head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)

    def names_read_right() -> float:
        with torch.no_grad():
            text = F.normalize(model.clip.encode_text(tok(category_texts(NAMES))), dim=-1)
            classes = torch.arange(len(text)) % len(NAMES)
            return head.logits("text", text).log_softmax(1)[torch.arange(len(text)), classes].mean().item()

    batch_loss(model, batch, *masks, cfg, "cpu").backward()
    assert all(p.grad is None or not p.grad.any() for p in head.text.parameters())
    before = names_read_right()
    for _ in range(30):
        optimizer.zero_grad()
        batch_loss(model, {**batch, "category_texts": tok(category_texts(NAMES))}, *masks, cfg, "cpu").backward()
        optimizer.step()
    assert names_read_right() > before + 0.5
