"""The catalog's own colour and type columns in place of the heads' guesses: `fsbir index
--colour-column --category-column`, and eval / probe scoring a gallery the same way."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from fsbir import FsbirError
from fsbir.cli import app
from fsbir.retrieval.colour import COLOUR_NAMES
from fsbir.retrieval.configs import CatalogWeights
from fsbir.retrieval.factory import ModelSpec, create_model
from fsbir.retrieval.index import IndexConfig, build_index
from fsbir.retrieval.training import TrainConfig, train
from fsbir.shardformat import shard_files

NAMES = ("Shirts", "Shoes", "Trousers")
runner = CliRunner()
# The demo catalog's colours that are an alias of a class, or name one among other words.
AS_CLASSES = {"ivory": "off white", "light gray": "grey", "sky blue": "blue", "pale pink": "pink", "navy": "navy blue"}


def heads_model(colour_weight=0.3, category_head_weight=0.4):
    model, pp, tok = create_model(ModelSpec(model="fsbir-tiny", colour_weight=colour_weight, category_names=NAMES,
                                            category_head_weight=category_head_weight))
    model.eval()
    return model, pp, tok


def test_the_catalog_replaces_the_heads_guesses_where_it_names_what_they_know():
    model, pp, _ = heads_model()
    d, colour = model.joint_dim, len(COLOUR_NAMES)
    with torch.no_grad():
        photos = model.encode_image(torch.rand(4, 3, pp.image_size, pp.image_size))
    out, taken = model.with_catalog_attributes(photos, ["Navy Blue", "Multi", None, "red"], ["Shoes", "Hats", None, "Trousers"])
    assert taken == {"colour": 2, "category": 2}
    assert torch.equal(out[:, :d], photos[:, :d])  # what the photo looks like is the model's
    navy, red = torch.zeros(colour), torch.zeros(colour)
    # the catalog's value counts its own weight: the query's block, √0.3 · √P, meets it at CatalogWeights'
    navy[COLOUR_NAMES.index("navy blue")] = red[COLOUR_NAMES.index("red")] = CatalogWeights().colour / 0.3 ** 0.5
    assert torch.allclose(out[0, d:d + colour], navy) and torch.allclose(out[3, d:d + colour], red)
    assert torch.equal(out[1:3, d:d + colour], photos[1:3, d:d + colour])  # "Multi", none: the head's guess
    shoes, trousers = torch.zeros(len(NAMES)), torch.zeros(len(NAMES))
    shoes[1] = trousers[2] = CatalogWeights().category / 0.4 ** 0.5
    assert torch.allclose(out[0, d + colour:], shoes) and torch.allclose(out[3, d + colour:], trousers)
    assert torch.equal(out[1:3, d + colour:], photos[1:3, d + colour:])  # a type the head has no class for
    assert not torch.equal(out, photos) and torch.equal(photos, photos.clone())  # the input is left as it was


@pytest.mark.parametrize("weights", [CatalogWeights(), CatalogWeights(colour=0.8), CatalogWeights(colour=0.0)])
def test_words_naming_a_colour_rank_the_product_the_catalog_lists_in_it_first(weights):
    """Two products that look the same, whatever the head guessed of their colour: the one the
    catalog lists in the colour the words name scores higher by the catalog's colour weight."""
    model, _, _ = heads_model()
    joint = F.normalize(torch.ones(2, model.joint_dim), dim=1)
    blue_guess = torch.full((2, len(COLOUR_NAMES)), -20.0)
    blue_guess[:, COLOUR_NAMES.index("blue")] = 20.0  # the head reads both as blue
    photos = model.vector(joint, {"colour": blue_guess}, "photo")
    listed, _ = model.with_catalog_attributes(photos, ["Red", "Blue"], weights=weights)
    red_words = torch.full((1, len(COLOUR_NAMES) + 1), -20.0)
    red_words[0, COLOUR_NAMES.index("red")] = 20.0
    query = model.vector(joint[:1], {"colour": red_words}, "text", ["a red shirt"])
    guessed, catalog = (query @ photos.T)[0].tolist(), (query @ listed.T)[0].tolist()
    assert guessed[0] == pytest.approx(guessed[1], abs=1e-5)
    assert catalog[0] - catalog[1] == pytest.approx(weights.colour, abs=1e-4)


def test_a_column_for_a_head_the_model_lacks_is_one_line():
    model, pp, _ = heads_model(colour_weight=0.0, category_head_weight=0.0)
    photos = torch.zeros(1, model.embed_dim)
    with pytest.raises(FsbirError, match="needs a model with a colour head"):
        model.with_catalog_attributes(photos, ["red"])
    with pytest.raises(FsbirError, match="needs a model with a category head"):
        model.with_catalog_attributes(photos, None, ["Shoes"])
    with pytest.raises(FsbirError, match="--catalog-attributes needs --colour-column"):
        from fsbir.retrieval.configs import EvalConfig
        EvalConfig(shards="s", catalog_attributes=True)


def test_index_eval_and_probe_take_the_catalogs_columns(demo_shards, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(shards=str(demo_shards), out=str(run), model="fsbir-tiny", epochs=1, batch_size=8, workers=0,
                      warmup_steps=2, category_column="category"))
    rows = [r for f in shard_files(demo_shards) for r in pq.read_table(f).to_pylist() if r["status"] == "ok"]
    plain, listed = tmp_path / "plain", tmp_path / "listed"
    build_index(IndexConfig(shards=str(demo_shards), checkpoint=str(run), out=str(plain)))
    result = runner.invoke(app, ["index", str(demo_shards), "--checkpoint", str(run), "--out", str(listed),
                                 "--colour-column", "colour", "--category-column", "category"])
    assert result.exit_code == 0, result.output
    assert f"colour: the catalog's 'colour' for {len(rows)} photos, the head's guess for 0" in result.output
    meta = json.loads((listed / "index.json").read_text())
    assert meta["catalog_attributes"] == {"colour_column": "colour", "category_column": "category",
                                          "colour_rows": len(rows), "category_rows": meta["catalog_attributes"]["category_rows"],
                                          "weights": {"colour": 0.45, "category": 0.4}}
    train_types = {r["category"] for r in rows if r["split"] == "train"}
    assert meta["catalog_attributes"]["category_rows"] == sum(r["category"] in train_types for r in rows)
    # Each stored photo's colour block is its catalog colour's; what it looks like is as before.
    items = pq.read_table(listed / "items.parquet", columns=["colour"]).to_pylist()
    stored, before = np.load(listed / "embeddings.npy"), np.load(plain / "embeddings.npy")
    d = stored.shape[1] - len(COLOUR_NAMES) - len(train_types)
    assert np.allclose(stored[:, :d], before[:, :d], atol=1e-5)
    colour_block = stored[:, d:d + len(COLOUR_NAMES)]
    assert [COLOUR_NAMES[i] for i in colour_block.argmax(1)] == [
        AS_CLASSES.get(item["colour"], item["colour"]) for item in items]
    listed_value = 0.45 / 0.3 ** 0.5  # a query's block √0.3 · √P meets it at the catalog's colour weight
    assert np.allclose(colour_block.max(1), listed_value) and (before[:, d:d + len(COLOUR_NAMES)].max(1) < 0.3 ** 0.5 + 1e-6).all()

    # The weights are the user's to set: the stored blocks follow them, and index.json says which.
    weighed = tmp_path / "weighed"
    result = runner.invoke(app, ["index", str(demo_shards), "--checkpoint", str(run), "--out", str(weighed),
                                 "--colour-column", "colour", "--category-column", "category",
                                 "--catalog-colour-weight", "0.6", "--catalog-category-weight", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((weighed / "index.json").read_text())["catalog_attributes"]["weights"] == {"colour": 0.6, "category": 0.0}
    other = np.load(weighed / "embeddings.npy")
    assert np.allclose(other[:, d:d + len(COLOUR_NAMES)].max(1), 0.6 / 0.3 ** 0.5)
    types = pq.read_table(weighed / "items.parquet", columns=["category"]).column("category").to_pylist()
    listed_type = np.array([t in train_types for t in types])
    assert np.allclose(other[listed_type, d + len(COLOUR_NAMES):], 0)  # a listed type adds nothing at weight 0
    assert np.allclose(other[~listed_type, d + len(COLOUR_NAMES):], stored[~listed_type, d + len(COLOUR_NAMES):])
    for command in ("index", "eval", "probe"):
        bad = runner.invoke(app, [command, str(demo_shards), "--checkpoint", str(run), "--colour-column", "colour",
                                  "--catalog-category-weight", "-1"] + (["--out", str(tmp_path / "bad")] if command == "index" else []))
        assert bad.exit_code != 0 and "the catalog's category weight must be 0 or more, not -1.0" in bad.output, bad.output

    # eval and probe score the gallery the same way when asked, and say how many rows took each.
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(run), "--split", "all",
                                 "--category-column", "category", "--colour-column", "colour", "--catalog-attributes",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["catalog_attributes"] == {"colour": len(rows),
                                                                 "category": meta["catalog_attributes"]["category_rows"]}
    out = tmp_path / "probe.json"
    result = runner.invoke(app, ["probe", str(demo_shards), "--checkpoint", str(run), "--split", "all", "--colour-column",
                                 "colour", "--category-column", "category", "--colours", "3", "--catalog-attributes",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["catalog_attributes"]["colour"] == len(rows)
    wrong = runner.invoke(app, ["index", str(demo_shards), "--checkpoint", str(run), "--out", str(tmp_path / "x"),
                                "--colour-column", "baseColour"])
    assert wrong.exit_code == 2 and "--colour-column 'baseColour' is not a shard column" in wrong.stderr
