"""`fsbir train --batch-by`: batches filled from few groups (a shard column, or alike captions), so
in-batch negatives share the positive's kind and differ in colour and detail."""
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


def test_bad_batch_by_settings_are_one_line_errors(demo_shards, tmp_path):
    with pytest.raises(FsbirError, match="--batch-by names nope, not shard columns"):
        train(effnet(demo_shards, tmp_path / "a", batch_by="nope"))
    with pytest.raises(FsbirError, match="needs locked towers"):
        train(effnet(demo_shards, tmp_path / "b", batch_by="category", cache_views=0))
    with pytest.raises(FsbirError, match="batch-groups must be between 1 and the batch size"):
        effnet(demo_shards, tmp_path / "c", batch_groups=0)
