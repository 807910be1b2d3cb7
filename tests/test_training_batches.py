"""What fills a training batch: --batch-by (few groups per batch, so in-batch negatives share the
positive's kind), --sketch-shards (views in other sketch styles), --sketch-pairs (people's drawings)."""
import json

import pytest
import torch

from fsbir import FsbirError
from fsbir.retrieval.training import TrainConfig, train
from fsbir.retrieval.training.features import caption_groups, grouped_order
from fsbir.retrieval.training.loop import batch_groups


def test_each_batch_comes_from_few_groups_and_every_row_once():
    groups = [f"kind{i % 13}" for i in range(1000)]  # 13 groups of about 77 rows
    order = grouped_order(groups, batch_size=64, per_batch=4, generator=torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(1000))
    kinds = [len({groups[i] for i in order[s:s + 64].tolist()}) for s in range(0, 1000 - 63, 64)]
    assert max(kinds) <= 8 and sum(kinds) / len(kinds) <= 5.5  # a piece ends a group now and then
    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    assert sum(len({groups[i] for i in shuffled[s:s + 64].tolist()}) for s in range(0, 937, 64)) / 15 > 12
    again = grouped_order(groups, 64, 4, torch.Generator().manual_seed(0))
    assert torch.equal(order, again)  # from the seed alone, so a resumed run replays it


def test_caption_groups_find_alike_captions():
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(6, 32), dim=-1)
    truth = torch.arange(240) % 6
    feats = centres[truth] + 0.05 * torch.randn(240, 32)
    found = caption_groups(feats, size=40, seed=0)
    assert len(set(found)) <= 6
    for g in set(found):  # each group found holds one true kind
        members = truth[torch.tensor([i for i, f in enumerate(found) if f == g])]
        assert (members == members[0]).float().mean() > 0.95


def effnet(shards, out, **kw):
    return TrainConfig(**{**dict(shards=str(shards), out=str(out), model="fsbir-effnet-lite0-minilm", freeze="towers",
                                 batch_size=8, workers=0, warmup_steps=2, epochs=1, cache_views=1), **kw})


@pytest.mark.slow
@pytest.mark.parametrize("batch_by", ["category", "caption"])
def test_training_by_groups_runs_and_records_the_setting(demo_shards, tmp_path, batch_by):
    record = train(effnet(demo_shards, tmp_path / "run", batch_by=batch_by, batch_groups=2))
    assert record["step"] >= 2 and (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["batch_by"] == batch_by and saved["batch_groups"] == 2


def test_groups_are_the_column_or_caption_clusters():
    class Table:
        columns = {"category": ["shirt", "shoe", None, "shirt"]}
        text = torch.nn.functional.normalize(torch.eye(4)[[0, 1, 2, 0]], dim=-1)[None]

    assert batch_groups(TrainConfig(shards="s", out="o", batch_by="category"), Table, 8) == ["shirt", "shoe", "None", "shirt"]
    assert batch_groups(TrainConfig(shards="s", out="o"), Table, 8) is None
    clusters = batch_groups(TrainConfig(shards="s", out="o", batch_by="caption", batch_groups=4), Table, 8)
    assert len(clusters) == 4 and clusters[0] == clusters[3]


@pytest.mark.slow
def test_bad_batch_by_settings_are_one_line_errors(demo_shards, tmp_path):
    with pytest.raises(FsbirError, match="--batch-by names nope, not shard columns"):
        train(effnet(demo_shards, tmp_path / "a", batch_by="nope"))
    with pytest.raises(FsbirError, match="needs locked towers"):
        train(effnet(demo_shards, tmp_path / "b", batch_by="category", cache_views=0))
    with pytest.raises(FsbirError, match="batch-groups must be between 1 and the batch size"):
        effnet(demo_shards, tmp_path / "c", batch_groups=0)


@pytest.mark.slow
def test_sketches_of_another_style_join_the_views_matched_by_product(tmp_path):
    """--sketch-shards: a HED build of the same catalog adds its sketches as views of the same rows."""
    from fsbir.pipelines.build import BuildConfig, run_build
    from fsbir.pipelines.catalog import CatalogSpec
    from fsbir.pipelines.demo_catalog import write_demo_catalog
    from fsbir.retrieval.data import LoaderConfig
    from fsbir.retrieval.factory import ModelSpec, create_model
    from fsbir.retrieval.training.features import CachedTowers, cache_features
    from fsbir.sketchgen import ContourParams, SketchSettings

    catalog = write_demo_catalog(tmp_path / "cat", n=20, seed=5, size=96)
    common = dict(catalog=CatalogSpec(str(catalog)), image_size=64, shard_size=8, workers=1, val_fraction=0.2,
                  test_fraction=0.2)
    run_build(BuildConfig(out_dir=str(tmp_path / "canny"), **common))
    run_build(BuildConfig(out_dir=str(tmp_path / "hed"), limit=14, **common,
                          sketch=SketchSettings(style="hed", contour=ContourParams(detector_size=64))))
    model, pp, tok = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm"))
    model.lock_pretrained_towers()
    towers = CachedTowers(model)
    cfg = LoaderConfig(batch_size=8, split="train", workers=0, drop_last=False, augment=None)
    own = cache_features(towers, str(tmp_path / "canny"), cfg, pp, tok, views=1, device="cpu")
    hed_only = cache_features(towers, str(tmp_path / "hed"), cfg, pp, tok, views=1, device="cpu")
    mixed = cache_features(towers, str(tmp_path / "canny"), cfg, pp, tok, views=1, device="cpu",
                           sketch_shards=(str(tmp_path / "hed"),))
    assert mixed.sketch.shape[0] == 2 and mixed.product_id == own.product_id
    assert torch.equal(mixed.sketch[0], own.sketch[0]) and torch.equal(mixed.photo, own.photo)
    in_hed = {pid: i for i, pid in enumerate(hed_only.product_id)}
    assert 0 < len(in_hed) < len(own.product_id)  # the HED build holds only the first 14 rows
    for i, pid in enumerate(mixed.product_id):
        want = hed_only.sketch[0][in_hed[pid]] if pid in in_hed else own.sketch[0][i]
        assert torch.allclose(mixed.sketch[1][i], want, atol=1e-5), pid
    record = train(effnet(tmp_path / "canny", tmp_path / "run", sketch_shards=(str(tmp_path / "hed"),), batch_size=4))
    assert record["step"] >= 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sketch_shards"] == [str(tmp_path / "hed")]


def test_peoples_drawings_of_training_products_replace_their_sketch_at_the_rate(tmp_path):
    from fsbir.retrieval.training.features import FeatureTable, SketchPairs, cached_batches

    n, d = 40, 6
    table = FeatureTable(photo=torch.arange(n).float()[:, None].repeat(1, d), sketch=torch.zeros(1, n, d),
                         text=torch.zeros(1, n, d), product_id=[f"p{i}" for i in range(n)], caption=[""] * n,
                         category=[None] * n, texts=[[""] * n])
    drawn_rows = torch.tensor([3, 3, 7, 11])
    pairs = SketchPairs(features=torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None].repeat(1, d), rows=drawn_rows, rate=0.5)
    used = {3: set(), 7: set(), 11: set()}
    replaced = 0
    for epoch in range(40):
        for batch in cached_batches(table, 8, seed=0, epoch=epoch, pairs=pairs):
            for photo, sketch in zip(batch["images"][:, 0].long().tolist(), batch["sketches"][:, 0].tolist()):
                if sketch:  # a drawing replaced the row's own (zero) sketch
                    assert photo in used, "a drawing queried a product it does not draw"
                    used[photo].add(sketch)
                    replaced += 1
    assert used[3] == {1.0, 2.0} and used[7] == {3.0} and used[11] == {4.0}
    assert 0.3 < replaced / (3 * 40) < 0.7  # about half of the drawn products' steps
    plain = list(cached_batches(table, 8, seed=0, epoch=0))
    assert all(not b["sketches"].any() for b in plain)


@pytest.mark.slow
def test_training_with_sketch_pairs_reports_what_it_used(demo_shards, tmp_path):
    """Drawings CSV as for eval --queries; drawings of products outside the train split are counted."""
    import pandas as pd
    from PIL import Image
    from fsbir.shardformat import shard_files

    df = pd.concat(pd.read_parquet(f, columns=["product_id", "split", "sketch"]) for f in shard_files(demo_shards))
    train_ids = df[df["split"] == "train"]["product_id"].tolist()[:3]
    test_ids = df[df["split"] == "test"]["product_id"].tolist()[:1]
    (tmp_path / "d").mkdir()
    lines = ["sketch,product_id"]
    for i, pid in enumerate(train_ids + test_ids):
        img = Image.new("L", (64, 64), 255)
        img.paste(0, (10 + i, 10, 50, 12))
        img.save(tmp_path / "d" / f"{i}.png")
        lines.append(f"{i}.png,{pid}")
    (tmp_path / "d" / "pairs.csv").write_text("\n".join(lines) + "\n")
    train(effnet(demo_shards, tmp_path / "run", sketch_pairs=str(tmp_path / "d" / "pairs.csv")))
    used = json.loads((tmp_path / "run" / "sketch_pairs.json").read_text())
    assert used["drawings_used"] == 3 and used["products_drawn"] == 3 and used["drawings_of_other_products"] == 1
    (tmp_path / "d" / "none.csv").write_text(f"sketch,product_id\n0.png,{test_ids[0]}\n")
    with pytest.raises(FsbirError, match="none of the drawings"):
        train(effnet(demo_shards, tmp_path / "run2", sketch_pairs=str(tmp_path / "d" / "none.csv")))
