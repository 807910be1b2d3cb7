"""The pieces of training, each on its own: parameter groups, the schedule, the loss mix, best choice."""
import math

import pytest
import torch

from fsbir.retrieval.factory import ModelSpec, create_model
from fsbir.retrieval.training import TrainConfig
from fsbir.retrieval.training.epoch import query_masks
from fsbir.retrieval.training.optim import make_optimizer, no_decay_parameters, param_groups, warmup_cosine
from fsbir.retrieval.training.validate import selection_score

CFG = TrainConfig(shards="s", out="o", lr=1e-3, tower_lr_scale=0.1, weight_decay=0.2)


def group_of(groups, param):
    (group,) = [g for g in groups if any(p is param for p in g["params"])]
    return group


def test_param_groups_by_module_membership():
    """Pretrained modules learn at lr × tower_lr_scale; new parts at lr, the new projection on
    a pretrained text transformer included."""
    model, _, _ = create_model(ModelSpec(model="fsbir-tiny-minilm", sketch_tower="separate"))
    assert model.pretrained_towers == {"text"}
    groups = param_groups(model, CFG)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    for p in model.clip.text.transformer.parameters():
        assert group_of(groups, p)["lr"] == pytest.approx(1e-4)
    for module in (model.clip.text.proj, model.clip.visual, model.sketch_visual, model.fusion):
        for p in module.parameters():
            assert group_of(groups, p)["lr"] == pytest.approx(1e-3)
    assert group_of(groups, model.logit_scale)["weight_decay"] == 0.0
    word_embeddings = model.clip.text.transformer.embeddings.word_embeddings.weight
    assert word_embeddings.ndim == 2 and group_of(groups, word_embeddings)["weight_decay"] == 0.0
    assert group_of(groups, model.clip.visual.conv1.weight)["weight_decay"] == 0.2


def test_a_parameter_named_like_a_tower_is_not_pretrained():
    """Membership, not names: a parameter in the fusion whose name says 'trunk' is new; the
    pretrained trunk of a separate sketch tower is pretrained."""
    model, _, _ = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm", fusion="concat", sketch_tower="separate"))
    odd = torch.nn.Parameter(torch.ones(3, 3))
    model.fusion.register_parameter("clip_visual_trunk_bn", odd)
    pretrained = {id(p) for p in model.pretrained_parameters()}
    assert id(odd) not in pretrained and id(odd) not in no_decay_parameters(model)
    assert all(id(p) in pretrained for p in model.sketch_visual.trunk.parameters())
    assert not any(id(p) in pretrained for p in model.clip.visual.head.parameters())


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(4, 20)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(12) == pytest.approx(0.5) and f(20) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


def test_scheduler_follows_the_schedule():
    model, _, _ = create_model(ModelSpec(model="fsbir-tiny"))
    optimizer, scheduler = make_optimizer(model, TrainConfig(shards="s", out="o", lr=1e-3, warmup_steps=2), 10)
    lrs = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[-1])
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_query_masks_drop_each_modality_at_its_rate_never_both():
    cfg = TrainConfig(shards="s", out="o", query_dropout_sketch=0.2, query_dropout_text=0.3)
    has_sketch, has_text = query_masks(20000, torch.Generator().manual_seed(0), cfg)
    assert (~has_sketch).float().mean() == pytest.approx(0.2, abs=0.02)
    assert (~has_text).float().mean() == pytest.approx(0.3, abs=0.02)
    assert (has_sketch | has_text).all()


def test_nan_never_becomes_best():
    assert selection_score({"modes": {"sketch+text": {"R@10": float("nan")}}}, 0.0, 10) == -math.inf
    assert selection_score(None, 2.0, 10) == -2.0


def test_locking_pretrained_towers_trains_only_their_projections_and_keeps_bn_statistics():
    model, _, _ = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm"))
    model.lock_pretrained_towers()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(("clip.visual.trunk.", "clip.text.transformer.")) for n in trainable)
    assert any(n.startswith("clip.visual.head.") for n in trainable) and any(n.startswith("clip.text.proj") for n in trainable)
    bn = model.clip.visual.trunk.bn1
    before = bn.running_mean.clone()
    model.train()
    assert not bn.training and model.clip.visual.head.training
    model(torch.randn(4, 3, 160, 160), torch.randn(4, 3, 160, 160), torch.randint(0, 1000, (4, 32)))
    assert torch.equal(bn.running_mean, before)
    assert {id(p) for g in param_groups(model, CFG) for p in g["params"]} == {id(p) for p in model.parameters()
                                                                           if p.requires_grad}
    unlocked, _, _ = create_model(ModelSpec(model="fsbir-effnet-lite0-minilm"))
    unlocked.lock_pretrained_towers(unlocked_groups=1)
    assert any(p.requires_grad for p in unlocked.clip.visual.trunk.parameters())
    assert not all(p.requires_grad for p in unlocked.clip.visual.trunk.parameters())
