import json

import pytest
import torch
from typer.testing import CliRunner

from fsbir import FsbirError
from fsbir.cli import app
from fsbir.retrieval.checkpoint import load_checkpoint
from fsbir.retrieval.training import TrainConfig, load_config, train

runner = CliRunner()


def tiny_cfg(shards, out, **kw):
    base = dict(shards=str(shards), out=str(out), model="fsbir-tiny", batch_size=8, workers=0, warmup_steps=2, epochs=2)
    base.update(kw)
    return TrainConfig(**base)


# stopped 2 steps into epoch 2 (the fast set), and at the end of epoch 1 (with the slow set)
@pytest.mark.parametrize("offset", [2, pytest.param(0, marks=pytest.mark.slow)])
def test_resume_matches_uninterrupted_run(demo_shards, tmp_path, offset):
    full = train(tiny_cfg(demo_shards, tmp_path / "full", epochs=2))
    stop_after = full["step"] // 2 + offset
    train(tiny_cfg(demo_shards, tmp_path / "split", epochs=2, max_steps=stop_after))  # "killed" here
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == stop_after
    resumed = train(tiny_cfg(demo_shards, tmp_path / "split", epochs=2), resume=True)
    assert resumed["step"] == full["step"] and resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_checkpoint_contents_and_best(demo_shards, tmp_path):
    record = train(tiny_cfg(demo_shards, tmp_path / "r", epochs=1, fusion="gated", single_mode_weight=0.5))
    ckpt = load_checkpoint(tmp_path / "r")  # a run folder resolves to best.pt
    assert {"config", "model_spec", "model", "optimizer", "scheduler", "step", "epoch", "metrics", "fsbir_version"} <= set(ckpt)
    assert ckpt["model_spec"]["fusion"] == "gated" and ckpt["epoch"] == 1
    assert set(record["val"]["modes"]) == {"sketch", "text", "sketch+text"}
    assert (tmp_path / "r" / "config.json").exists()


@pytest.mark.slow
def test_training_lowers_the_loss(demo_shards, tmp_path):
    cfg = tiny_cfg(demo_shards, tmp_path / "fit", epochs=8, lr=2e-3, augment={"max_stroke_width": 1, "rotate_deg": 0,
                   "scale": 0, "translate": 0, "elastic_alpha": 0, "stroke_dropout": 0})
    cfg = load_config(None, {**cfg.__dict__})
    train(cfg)
    losses = [json.loads(l)["train_loss"] for l in (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.3, losses


def test_toml_config_with_overrides(tmp_path):
    (tmp_path / "t.toml").write_text('epochs = 3\nlr = 0.01\nfusion = "concat"\n[augment]\nstroke_dropout = 0.3\n')
    cfg = load_config(str(tmp_path / "t.toml"), {"shards": "s", "out": "o", "lr": 0.5})
    assert cfg.epochs == 3 and cfg.lr == 0.5 and cfg.fusion == "concat" and cfg.augment.stroke_dropout == 0.3
    assert cfg.batch_size == TrainConfig.__dataclass_fields__["batch_size"].default
    with pytest.raises(FsbirError, match="unknown training settings: bogus"):
        load_config(None, {"shards": "s", "out": "o", "bogus": 1})
    (tmp_path / "c.toml").write_text('caption_templates = ["a {colour} {category}", "{category}"]\n')
    cfg = load_config(str(tmp_path / "c.toml"), {"shards": "s", "out": "o"})
    assert cfg.caption_templates == ("a {colour} {category}", "{category}")
    # a resumed run given the same templates on the command line is not a change
    assert load_config(None, {"shards": "s", "out": "o", "caption_templates": cfg.caption_templates},
                       cfg.to_dict()).caption_templates == cfg.caption_templates


def test_resume_keeps_the_checkpoint_settings(tmp_path):
    saved = TrainConfig(shards="s", out="o", fusion="gated", lr=0.01, epochs=2).to_dict()
    cfg = load_config(None, {"shards": "s2", "out": "o", "epochs": 5}, saved)
    assert (cfg.fusion, cfg.lr, cfg.epochs, cfg.shards) == ("gated", 0.01, 5, "s2")
    with pytest.raises(FsbirError, match=r"checkpoint's settings \(fusion='gated', lr=0.01\); drop --fusion, --lr"):
        load_config(None, {"shards": "s", "out": "o", "fusion": "avg", "lr": 0.5}, saved)
    assert load_config(None, {"shards": "s", "out": "o", "fusion": "gated"}, saved).fusion == "gated"


@pytest.fixture(scope="module")
def trained_run(demo_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = runner.invoke(app, ["train", str(demo_shards), "--out", str(out), "--model", "fsbir-tiny", "--epochs", "1", "--batch-size", "8",
                                 "--workers", "0", "--fusion", "concat"])
    assert result.exit_code == 0, result.output
    return out


def test_cli_eval_json_shape(demo_shards, trained_run, tmp_path):
    result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(trained_run), "--k", "10",
                                 "--split", "all", "--category-column", "category", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["gallery_size"] == 64 and data["queries"] == 64 and data["k"] == 10
    assert set(data["modes"]) == {"sketch", "text", "sketch+text"}
    for values in data["modes"].values():
        assert {"R@1", "R@5", "R@10", "MRR", "median_rank", "P@10_category"} <= set(values)
        assert 0 <= values["R@1"] <= values["R@5"] <= values["R@10"] <= 1
    assert "sketch+text" in result.output


def test_cli_eval_untuned_pretrained_none(demo_shards):
    result = runner.invoke(app, ["eval", str(demo_shards), "--model", "fsbir-tiny", "--split", "all", "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "untrained model" in result.output


def test_eval_human_queries_csv_and_ndjson(demo_shards, trained_run, tmp_path):
    import pyarrow.parquet as pq

    from fsbir.shardformat import shard_files

    rows = [r for f in shard_files(demo_shards) for r in pq.read_table(f).to_pylist() if r["status"] == "ok"][:3]
    (tmp_path / "sk").mkdir()
    lines = ["sketch,product_id"]
    for r in rows:
        (tmp_path / "sk" / f"{r['product_id']}.png").write_bytes(r["sketch"]["bytes"])
        lines.append(f"sk/{r['product_id']}.png,{r['product_id']}")
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(trained_run), "--split", "all",
                                 "--queries", str(tmp_path / "q.csv"), "--query-text", "a garment",
                                 "--json", str(tmp_path / "h.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["queries"] == 3 and set(data["modes"]) == {"sketch", "text", "sketch+text"}
    assert "R@10" in data["modes"]["sketch"]
    # each product given another product's drawing, the same words: text alone cannot change, the drawing modes do
    rotated = [lines[0]] + [f"{lines[1 + (i + 1) % 3].split(',')[0]},{r['product_id']}" for i, r in enumerate(rows)]
    (tmp_path / "q2.csv").write_text("\n".join(rotated) + "\n")
    result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(trained_run), "--split", "all",
                                 "--queries", str(tmp_path / "q2.csv"), "--query-text", "a garment",
                                 "--json", str(tmp_path / "h2.json")])
    other = json.loads((tmp_path / "h2.json").read_text())
    assert other["modes"]["text"] == data["modes"]["text"]
    assert other["modes"]["sketch"]["MRR"] != data["modes"]["sketch"]["MRR"]

    (tmp_path / "qd").mkdir()
    drawing = {"word": "skirt", "drawing": [[[10, 90, 110, 0, 10], [0, 0, 100, 100, 0]]]}
    (tmp_path / "qd" / "skirt.ndjson").write_text(json.dumps(drawing) + "\n" + json.dumps({**drawing, "word": "hat"}) + "\n")
    (tmp_path / "map.json").write_text(json.dumps({"skirt": ["skirt", "dress"], "hat": ["hat"]}))
    result = runner.invoke(app, ["eval", str(demo_shards), "--checkpoint", str(trained_run), "--split", "all",
                                 "--queries", str(tmp_path / "qd"), "--category-map", str(tmp_path / "map.json"),
                                 "--category-column", "category", "--query-text", "a {word}",
                                 "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["queries"] == 2 and "P@10_category" in data["modes"]["sketch"]
    assert set(data["modes"]) == {"sketch", "text", "sketch+text"} == set(data["by_category"])
    by_category = data["by_category"]["sketch"]
    assert set(by_category) == {"skirt", "hat"} and by_category["hat"]["queries"] == 1
    assert data["modes"]["sketch"]["P@10_category"] == pytest.approx(
        (by_category["skirt"]["P@10"] + by_category["hat"]["P@10"]) / 2)
    assert "drawings by category" in result.output


def test_quickdraw_queries_render_and_carry_word_text(tmp_path, tiny_model):
    from fsbir.retrieval.evaluate import load_human_queries

    _, pp, _ = tiny_model
    lines = [json.dumps({"word": w, "drawing": [[[0, 50, 100], [0, 80, 0]]]}) for w in ("shoe", "hat")]
    (tmp_path / "q.ndjson").write_text("\n".join(lines) + "\n")
    q = load_human_queries(str(tmp_path / "q.ndjson"), pp, "a {word}", {"shoe": ["Casual Shoes", "Sports Shoes"]})
    assert q["sketches"].shape == (2, 3, 96, 96)
    assert q["text"] == ["a shoe", "a hat"]
    assert q["accepted"] == [{"Casual Shoes", "Sports Shoes"}, {"hat"}]


def test_val_queries_choose_the_best_checkpoint(demo_shards, tmp_path):
    """Human drawings given to train are searched against the val split each epoch, and best.pt is
    the epoch where their score is highest."""
    drawing = [[[10, 90, 110, 0, 10], [0, 0, 100, 100, 0]]]
    (tmp_path / "qd").mkdir()
    (tmp_path / "qd" / "tee.ndjson").write_text("".join(json.dumps({"word": w, "drawing": drawing}) + "\n"
                                                        for w in ("tee", "tee", "trousers")))
    (tmp_path / "map.json").write_text(json.dumps({"tee": ["t-shirt"], "trousers": ["trousers"]}))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(demo_shards), "--out", str(out), "--model", "fsbir-tiny", "--epochs", "2", "--batch-size", "8",
                                 "--workers", "0", "--category-column", "category", "--val-queries",
                                 str(tmp_path / "qd"), "--val-category-map", str(tmp_path / "map.json")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scores = [r["val"]["human"]["modes"]["sketch"]["P@10_category"] for r in records]
    assert records[0]["val"]["human"]["queries"] == 3
    assert records[-1]["best_val"] == max(scores)
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 + scores.index(max(scores))
    refused = runner.invoke(app, ["train", str(demo_shards), "--out", str(tmp_path / "r2"), "--model", "fsbir-tiny", "--val-queries",
                                  str(tmp_path / "qd")])
    assert refused.exit_code == 2 and "need --category-column" in refused.stderr
