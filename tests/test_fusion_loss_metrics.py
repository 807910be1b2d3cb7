import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsbir import FsbirError

from fsbir.retrieval.fusion import FUSIONS, create_fusion
from fsbir.retrieval.loss import category_nce, info_nce, same_category
from fsbir.retrieval.metrics import (category_chance, category_precision_at_k, mean_reciprocal_rank, median_rank, ranks_of_targets,
                               recall_at_k, summarize_ranks, top_k)


def unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_outputs_unit_vectors_and_handles_missing_modality(name):
    f = create_fusion(name, 16)
    s, t = unit(5, 16, 0), unit(5, 16, 1)
    q = f(s, t)
    assert q.shape == (5, 16) and torch.allclose(q.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(f(s, None), s, atol=1e-6)
    assert torch.allclose(f(None, t), t, atol=1e-6)
    mixed = f(s, t, has_sketch=torch.tensor([1, 0, 1, 1, 1]), has_text=torch.tensor([1, 1, 0, 1, 1]))
    assert torch.allclose(mixed[1], t[1], atol=1e-6) and torch.allclose(mixed[2], s[2], atol=1e-6)


@pytest.mark.parametrize("name", ["concat", "gated"])
def test_learned_fusions_start_as_average_and_learn(name):
    f = create_fusion(name, 8)
    s, t = unit(4, 8, 2), unit(4, 8, 3)
    assert torch.allclose(f(s, t), F.normalize(s + t, dim=-1), atol=1e-5)
    loss = (f(s, t) * unit(4, 8, 4)).sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


def test_avg_is_normalised_mean():
    s, t = unit(3, 8, 5), unit(3, 8, 6)
    assert torch.allclose(create_fusion("avg", 8)(s, t), F.normalize((s + t) / 2, dim=-1))


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(math.log(10.0))
    logits = 10 * q @ p.t()  # [[10, 6], [0, 8]]
    row = (-(10 - math.log(math.exp(10) + math.exp(6))) - (8 - math.log(math.exp(0) + math.exp(8)))) / 2
    col = (-(10 - math.log(math.exp(10) + math.exp(0))) - (8 - math.log(math.exp(6) + math.exp(8)))) / 2
    assert info_nce(q, p, scale).item() == pytest.approx((row + col) / 2, rel=1e-5)
    assert torch.allclose(logits, torch.tensor([[10.0, 6.0], [0.0, 8.0]]))


def test_info_nce_scale_clamped_at_100():
    q = unit(4, 8, 7)
    assert info_nce(q, q, torch.tensor(math.log(1000.0))).item() == pytest.approx(
        info_nce(q, q, torch.tensor(math.log(100.0))).item())


def test_info_nce_prefers_matching_pairs():
    q = unit(8, 16, 8)
    assert info_nce(q, q, torch.tensor(math.log(1 / 0.07))) < info_nce(q, q.roll(1, 0), torch.tensor(math.log(1 / 0.07)))


def test_category_term_counts_every_photo_of_the_category_as_a_positive():
    same = same_category(["shoe", None, "shoe", "bag", None])
    assert same.tolist() == [[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    torch.manual_seed(0)
    q, p = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(math.log(10.0))
    # With no shared category it is the query→photo half of InfoNCE.
    assert category_nce(q, p, scale, torch.eye(5)) == pytest.approx(F.cross_entropy(10 * q @ p.t(), torch.arange(5)).item())
    # A sketch that looks like another shoe is no longer wrong when shoes are positives.
    p2 = p.clone()
    p2[2] = q[0]
    labels = same_category(["shoe", "bag", "shoe", "belt", "cap"])
    assert category_nce(q, p2, scale, labels) < category_nce(q, p2, scale, torch.eye(5))


def test_ranks_recall_mrr_median():
    sim = np.array([[0.9, 0.1, 0.3],   # target 0 → rank 1
                    [0.5, 0.2, 0.7],   # target 1 → rank 3
                    [0.4, 0.6, 0.6]])  # target 2 → tie with item 1 → rank 1 or 2, even odds
    ranks = ranks_of_targets(sim, np.array([0, 1, 2]))
    assert ranks.best.tolist() == [1, 3, 1] and ranks.worst.tolist() == [1, 3, 2]
    assert recall_at_k(ranks, 1) == pytest.approx((1 + 0 + 0.5) / 3) and recall_at_k(ranks, 3) == 1.0
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + (1 + 1 / 2) / 2) / 3)
    assert median_rank(ranks) == 1.5
    s = summarize_ranks(ranks, 2)
    assert set(s) == {"R@1", "R@5", "R@2", "MRR", "median_rank"} and s["R@2"] == pytest.approx(2 / 3)


def test_constant_and_nan_scores_get_chance_or_nothing():
    n = 50
    targets = np.arange(n)
    constant = ranks_of_targets(np.zeros((n, n)), targets)
    assert recall_at_k(constant, 1) == pytest.approx(1 / n) and recall_at_k(constant, 10) == pytest.approx(10 / n)
    assert mean_reciprocal_rank(constant) == pytest.approx(sum(1 / r for r in range(1, n + 1)) / n)
    assert median_rank(constant) == pytest.approx((n + 1) / 2)
    nan = ranks_of_targets(np.full((n, n), np.nan), targets)
    assert recall_at_k(nan, 10) == 0.0 and median_rank(nan) == n


def test_top_k_and_category_precision():
    sim = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert top_k(sim, 3).tolist() == [[1, 3, 2]]
    gallery = ["shoe", "shoe", "bag", "hat"]
    assert category_precision_at_k(sim, [{"shoe"}], gallery, 2) == pytest.approx(0.5)
    assert category_precision_at_k(sim, [{"shoe", "hat"}], gallery, 2) == pytest.approx(1.0)
    assert category_chance([{"shoe"}, {"bag", "hat"}], gallery) == pytest.approx((2 / 4 + 2 / 4) / 2)
    assert category_chance([{"belt"}], gallery) == 0.0


def test_agreement_fusion_keeps_the_words_when_the_sketch_contradicts_them():
    from fsbir.retrieval.fusion import AgreementFusion, AvgFusion

    torch.manual_seed(0)
    text = F.normalize(torch.randn(4, 16), dim=-1)
    other = F.normalize(torch.randn(4, 16), dim=-1)
    contradicting = F.normalize(other - (other * text).sum(-1, keepdim=True) * text - 0.3 * text, dim=-1)  # cos < 0
    agreeing = F.normalize(text + 0.5 * other, dim=-1)  # cos well above 0.4
    fusion = AgreementFusion()
    assert torch.allclose(fusion(contradicting, text), text, atol=1e-6)
    assert torch.allclose(fusion(agreeing, text), AvgFusion()(agreeing, text), atol=1e-6)
    halfway = F.normalize(0.2 * text + (1 - 0.04) ** 0.5 * F.normalize(
        other - (other * text).sum(-1, keepdim=True) * text, dim=-1), dim=-1)  # cos = 0.2
    w = fusion.sketch_weight(halfway, text)
    assert torch.allclose(w, torch.full_like(w, 0.25), atol=1e-5)
    has_text = torch.tensor([True, False, True, True])
    out = fusion(contradicting, text, has_text=has_text)
    assert torch.allclose(out[1], contradicting[1], atol=1e-6)  # no words: the drawing is the query
    sketch = agreeing.clone().requires_grad_()
    fusion(sketch, text).sum().backward()
    assert sketch.grad.abs().sum() > 0


@pytest.mark.slow
def test_a_query_fusion_other_than_the_trained_one_reaches_every_query_path(tmp_path, demo_shards):
    """--fusion avg --query-fusion agree: trained as the average; eval and search fuse by agreement."""
    from fsbir.retrieval.checkpoint import model_from_checkpoint
    from fsbir.retrieval.evaluate import fuse
    from fsbir.retrieval.fusion import AgreementFusion, AvgFusion
    from fsbir.retrieval.training import TrainConfig, train

    train(TrainConfig(shards=str(demo_shards), out=str(tmp_path / "run"), model="fsbir-tiny", epochs=1, batch_size=8,
                      workers=0, warmup_steps=2, query_fusion="agree"))
    model, _, _, ckpt = model_from_checkpoint(tmp_path / "run")
    assert ckpt["model_spec"]["query_fusion"] == "agree"
    assert isinstance(model.fusion, AvgFusion) and isinstance(model.query_fusion, AgreementFusion)
    blank = torch.zeros(6, model.embed_dim - model.joint_dim)  # the colour block: words naming no colour
    t = torch.cat([unit(6, model.joint_dim, 1), blank], dim=1)
    s = torch.cat([F.normalize(unit(6, model.joint_dim, 0) - 2 * t[:, :model.joint_dim], dim=-1), blank], dim=1)
    assert torch.allclose(fuse(model, s, t), t, atol=1e-5)
    assert not torch.allclose(model.fusion(s, t), t, atol=1e-2)  # the trained average would not keep them
    assert "queries fused by `agree`" in (tmp_path / "run" / "MODEL_CARD.md").read_text()
    with pytest.raises(FsbirError, match="query fusion must be one of avg, agree"):
        create_model_with(query_fusion="gated")


def create_model_with(**spec):
    from fsbir.retrieval.factory import ModelSpec, create_model

    return create_model(ModelSpec(model="fsbir-tiny", **spec))
