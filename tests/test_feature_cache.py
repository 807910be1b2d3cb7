"""Training on cached features of locked towers: the same model, loss and checkpoints as running
the towers at every step."""
import json

import pytest
import torch
from torch import nn

from fsbir.retrieval.checkpoint import load_checkpoint
from fsbir.retrieval.colour import COLOUR_NAMES, PRODUCT_STATS_WIDTH
from fsbir.retrieval.data import LoaderConfig, caption_choices, iter_rows, make_loader
from fsbir.retrieval.evaluate import EvalConfig, run_eval
from fsbir.retrieval.factory import CONFIG_DIR, ModelSpec, create_model
from fsbir.retrieval.training import TrainConfig, train
from fsbir.retrieval.training.features import CachedTowers, cache_features, cached_batches, trunk_split

EFFNET = "fsbir-effnet-lite0-minilm"
COLOUR_WIDTH = len(COLOUR_NAMES)


def effnet_cfg(shards, out, **kw):
    base = dict(shards=str(shards), out=str(out), model=EFFNET, freeze="towers", batch_size=8, workers=0,
                warmup_steps=2, epochs=2, cache_views=2, category_column="category")
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def locked_effnet():
    model, pp, tok = create_model(ModelSpec(model=EFFNET, sketch_tower="separate"))
    model.lock_pretrained_towers()
    return model, pp, tok


@pytest.mark.parametrize("colour_grid,unlocked,colour_weight,categories", [
    (0, 0, 0.3, ("Shirts", "Trousers", "Shoes")), (4, 0, 0.0, ()), (4, 3, 0.3, ("Shirts", "Shoes"))])
def test_heads_on_cached_features_give_the_full_models_outputs(demo_shards, tmp_path, colour_grid, unlocked, colour_weight,
                                                                categories):
    """With unlocked groups the cache holds feature maps below them, and the heads run the rest;
    the colour and category heads' logits come out the same from pixels and from the cached
    features and pixel statistics."""
    cfg = json.loads((CONFIG_DIR / f"{EFFNET}.json").read_text())
    cfg["fsbir"]["colour_grid"] = colour_grid
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    model, pp, tok = create_model(ModelSpec(model=str(tmp_path / "m.json"), sketch_tower="separate",
                                            colour_weight=colour_weight, category_names=categories,
                                            category_head_weight=0.3))
    model.lock_pretrained_towers(unlocked)
    if colour_grid:  # a trained colour projection, not its zero start
        torch.nn.init.normal_(model.colour.proj.weight, std=0.1)
    towers = CachedTowers(model)
    assert CachedTowers.supported(model)
    loader, _ = make_loader(demo_shards, LoaderConfig(batch_size=6, split="train"), pp, tok, shuffle=False)
    batch = next(iter(loader))
    has_sketch, has_text = torch.tensor([1, 1, 0, 1, 1, 0]).bool(), torch.tensor([1, 0, 1, 1, 1, 1]).bool()
    model.eval()
    with torch.no_grad():
        full = model(batch["images"], batch["sketches"], batch["tokens"], has_sketch, has_text)
        cached = towers(**towers.bodies(batch["images"], batch["sketches"], batch["tokens"]),
                        has_sketch=has_sketch, has_text=has_text)
    *full, full_logits = full
    *cached, cached_logits = cached
    for a, b in zip(full, cached):
        assert torch.allclose(a, b, atol=1e-5)
    heads = {"photo": {"colour"} if colour_weight else set(), "sketch": set(), "text": {"colour"} if colour_weight else set()}
    widths = {"colour": (COLOUR_WIDTH, COLOUR_WIDTH + 1), "category": (len(categories),)}
    for kind, names in heads.items():
        names = names | ({"category"} if categories and kind != "sketch" else set())
        assert full_logits[kind].keys() == cached_logits[kind].keys() == names
        for head in names:
            a, b = full_logits[kind][head], cached_logits[kind][head]
            assert a.shape[1] in widths[head] and torch.allclose(a, b, atol=1e-5)
    bodies = towers.bodies(batch["images"], batch["sketches"], None)
    grid = model.colour.proj.in_features if colour_grid else 0
    head = 3 * 8 * 8 + 3 + PRODUCT_STATS_WIDTH if colour_weight else 0
    # Locked whole: the pooled 1280 features. With groups open at the top (the head conv and the
    # last blocks, cut inside stage 5): that stage's 192-channel map, 5 x 5 at 160 px. The colour
    # head reads photos' pixels, not sketches'.
    trunk = 1280 if unlocked == 0 else 192 * 5 * 5
    assert bodies["images"].shape[1] == trunk + grid + head and bodies["sketches"].shape[1] == trunk + grid


class InOrder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()), nn.Conv2d(4, 8, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.blocks(self.stem(x)))


class Residual(InOrder):
    def forward(self, x):
        h = self.stem(x)
        return self.pool(self.blocks(h + self.blocks[0](h)))


def lock_below(trunk: nn.Module, name: str) -> nn.Module:
    """Freeze every parameter of the trunk except those under `name`."""
    for key, p in trunk.named_parameters():
        p.requires_grad = key.startswith(name)
    return trunk


def test_trunk_split_cuts_below_the_first_trained_layer_and_only_where_the_forward_runs_in_order():
    trunk = lock_below(InOrder(), "blocks.1")
    body, rest = trunk_split(trunk)
    assert [type(m) for m in body] == [nn.Conv2d, nn.Conv2d, nn.ReLU] and len(rest) == 2
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(rest(body(x)), trunk(x))
    locked = lock_below(InOrder(), "nothing")
    assert trunk_split(locked)[0] is locked and len(trunk_split(locked)[1]) == 0
    assert trunk_split(lock_below(InOrder(), "stem")) is None  # nothing below the first trained layer
    assert trunk_split(lock_below(Residual(), "blocks.1")) is None  # layers in order are not its forward


@pytest.mark.slow
def test_views_are_clean_then_augmented_and_repeat_with_the_seed(demo_shards, locked_effnet):
    model, pp, tok = locked_effnet
    cfg = LoaderConfig(batch_size=8, split="train", drop_last=False, augment=TrainConfig(shards="", out="").augment)
    a = cache_features(CachedTowers(model), str(demo_shards), cfg, pp, tok, 3, "cpu")
    b = cache_features(CachedTowers(model), str(demo_shards), cfg, pp, tok, 3, "cpu")
    assert a.sketch.shape[:2] == (3, len(a.product_id)) and len(set(a.product_id)) == len(a.product_id)
    assert torch.equal(a.sketch, b.sketch)
    assert not torch.allclose(a.sketch[0], a.sketch[1]) and not torch.allclose(a.sketch[1], a.sketch[2])
    clean = cache_features(CachedTowers(model), str(demo_shards), LoaderConfig(batch_size=5, split="train"), pp, tok, 3, "cpu")
    assert clean.sketch.shape[0] == 1 and torch.allclose(clean.sketch[0], a.sketch[0], atol=1e-5)


@pytest.mark.slow
def test_caption_templates_are_cached_as_texts_beside_the_caption_and_drawn_per_row(demo_shards, locked_effnet):
    model, pp, tok = locked_effnet
    towers = CachedTowers(model)
    templates = ("a {colour} {category}",)
    plain = cache_features(towers, str(demo_shards), LoaderConfig(batch_size=8, split="train"), pp, tok, 1, "cpu")
    table = cache_features(towers, str(demo_shards), LoaderConfig(batch_size=8, split="train", caption_templates=templates),
                           pp, tok, 1, "cpu")
    n = len(table.product_id)
    assert plain.text.shape[:2] == (1, n) and table.text.shape[:2] == (2, n)
    assert torch.allclose(table.text[0], plain.text[0], atol=1e-5)
    rows = {r["product_id"]: r for r in iter_rows(demo_shards, "train", ["product_id", "caption", "colour", "category"])}
    filled = [caption_choices(rows[p], templates)[1] for p in table.product_id]
    model.eval()  # as cache_features runs the text body: no dropout
    assert torch.allclose(table.text[1], towers.text_body(tok(filled)), atol=1e-5)
    model.train()
    # an epoch's batches take each row's text from one of the two, both kinds drawn
    batches = list(cached_batches(table, 8, seed=0, epoch=0))
    tokens = torch.cat([b["tokens"] for b in batches])
    caption_like = [bool((torch.isclose(t, table.text[0], atol=1e-6).all(1)).any()) for t in tokens]
    template_like = [bool((torch.isclose(t, table.text[1], atol=1e-6).all(1)).any()) for t in tokens]
    assert all(c or t for c, t in zip(caption_like, template_like)) and any(caption_like) and any(template_like)
    assert torch.equal(torch.cat([b["tokens"] for b in cached_batches(plain, 8, seed=0, epoch=0)]),
                       plain.text[0][torch.randperm(n, generator=torch.Generator().manual_seed(0))[: len(tokens)]])


@pytest.mark.slow
@pytest.mark.parametrize("cache_views", [2, 0])
def test_training_with_caption_templates_runs_cached_and_uncached(demo_shards, tmp_path, cache_views):
    record = train(effnet_cfg(demo_shards, tmp_path / "run", epochs=1, cache_views=cache_views,
                              caption_templates=("a {colour} {category}",)))
    assert record["step"] >= 2 and (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["caption_templates"] == ["a {colour} {category}"]


@pytest.mark.slow
def test_cached_training_moves_only_the_heads_and_validates_like_eval(demo_shards, tmp_path):
    record = train(effnet_cfg(demo_shards, tmp_path / "run", epochs=2))
    fresh, _, _ = create_model(ModelSpec(model=EFFNET))
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    start = fresh.state_dict()
    assert all(torch.equal(trained[k], start[k]) for k in start if k.startswith(("clip.visual.trunk.", "clip.text.transformer.")))
    assert not torch.equal(trained["clip.visual.head.proj.weight"], start["clip.visual.head.proj.weight"])
    assert not torch.equal(trained["clip.text.proj.weight"], start["clip.text.proj.weight"])
    # Validation from the cache equals an eval of the saved checkpoint through the full towers.
    evaluated = run_eval(EvalConfig(shards=str(demo_shards), checkpoint=str(tmp_path / "run" / "checkpoints" / "last.pt"),
                                    split="val", category_column="category"))
    for mode, values in record["val"]["modes"].items():
        for metric, value in values.items():
            assert evaluated["modes"][mode][metric] == pytest.approx(value, abs=1e-6), (mode, metric)


@pytest.mark.slow
def test_cached_training_resumes_mid_epoch_like_an_uninterrupted_run(demo_shards, tmp_path):
    """With the category term on, so the rows' categories travel with the cached batches."""
    full = train(effnet_cfg(demo_shards, tmp_path / "full", category_weight=0.5))
    train(effnet_cfg(demo_shards, tmp_path / "split", category_weight=0.5, max_steps=full["step"] // 2 + 1))
    resumed = train(effnet_cfg(demo_shards, tmp_path / "split", category_weight=0.5), resume=True)
    assert resumed["step"] == full["step"] and resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [json.loads(l)["epoch"] for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_unlocked_groups_train_from_cached_feature_maps(demo_shards, tmp_path):
    """With groups open at the top of the trunk, the feature maps below them are cached: those
    layers and the projections move, everything below stays, and validation from the cache equals
    an eval of the checkpoint through the full towers."""
    calls = []
    record = train(effnet_cfg(demo_shards, tmp_path / "run", epochs=1, unlocked_groups=2),
                   on_features=lambda n, total: calls.append((n, total)))
    assert calls and sum(n for n, _ in calls) == calls[0][1]
    fresh_model = create_model(ModelSpec(model=EFFNET))[0]
    fresh = fresh_model.state_dict()
    fresh_model.lock_pretrained_towers(2)
    open_layers = {"clip.visual.trunk." + k for k, p in fresh_model.clip.visual.trunk.named_parameters() if p.requires_grad}
    moved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    changed = {k for k in fresh if k.startswith("clip.visual.trunk.") and not torch.equal(moved[k], fresh[k])}
    assert changed and changed <= open_layers and len(open_layers) < len(list(fresh_model.clip.visual.trunk.parameters()))
    evaluated = run_eval(EvalConfig(shards=str(demo_shards), checkpoint=str(tmp_path / "run" / "checkpoints" / "last.pt"),
                                    split="val", category_column="category"))
    for mode, values in record["val"]["modes"].items():
        assert evaluated["modes"][mode]["R@1"] == pytest.approx(values["R@1"], abs=1e-6), mode


@pytest.mark.slow
def test_no_cache_runs_the_towers(demo_shards, tmp_path):
    """cache_views 0 caches nothing; a locked run reports every cached row (train views + val)."""
    cached_rows = []
    train(effnet_cfg(demo_shards, tmp_path / "cached", epochs=1), on_features=lambda n, total: cached_rows.append((n, total)))
    total = cached_rows[0][1]
    assert sum(n for n, _ in cached_rows) == total and total > 0
    calls = []
    train(effnet_cfg(demo_shards, tmp_path / "nocache", epochs=1, cache_views=0, max_steps=2),
          on_features=lambda n, total: calls.append(n))
    assert calls == []
