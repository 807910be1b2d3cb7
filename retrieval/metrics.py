"""Retrieval metrics on a query × gallery similarity matrix. Ranks are 1-based."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranks:
    """Where each query's relevant item lands, 1-based. Items scored exactly as high as the
    target are ordered at random, so the rank is spread evenly over [best, worst]; every metric is
    its expectation over that spread. A model that scores everything alike therefore gets chance
    (R@k = k / gallery), never a perfect score, and a NaN score is a miss at the last rank."""

    best: np.ndarray
    worst: np.ndarray

    def __len__(self) -> int:
        return len(self.best)


def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray) -> Ranks:
    n = similarity.shape[1]
    target_scores = similarity[np.arange(len(targets)), targets]
    with np.errstate(invalid="ignore"):
        higher = (similarity > target_scores[:, None]).sum(axis=1)
        tied = (similarity == target_scores[:, None]).sum(axis=1)
    miss = np.isnan(target_scores)
    best = np.where(miss, n, higher + 1)
    worst = np.where(miss, n, higher + np.maximum(tied, 1))
    return Ranks(best, worst)


def recall_at_k(ranks: Ranks, k: int) -> float:
    if not len(ranks):
        return 0.0
    spread = ranks.worst - ranks.best + 1
    return float(np.clip((k - ranks.best + 1) / spread, 0, 1).mean())


def mean_reciprocal_rank(ranks: Ranks) -> float:
    if not len(ranks):
        return 0.0
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(ranks.worst.max()) + 1))])
    spread = ranks.worst - ranks.best + 1
    return float(((harmonic[ranks.worst] - harmonic[ranks.best - 1]) / spread).mean())


def median_rank(ranks: Ranks) -> float:
    return float(np.median((ranks.best + ranks.worst) / 2)) if len(ranks) else 0.0


def top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best gallery items per query, best first."""
    k = min(k, similarity.shape[1])
    part = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(similarity, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def category_precision_at_k(similarity: np.ndarray, query_categories: list[set], gallery_categories: list, k: int) -> float:
    """Mean over queries of the share of the top-k gallery items whose category is one of the
    query's accepted categories."""
    if not len(query_categories):
        return 0.0
    best = top_k(similarity, k)
    hits = [np.mean([gallery_categories[j] in accepted for j in row]) for row, accepted in zip(best, query_categories)]
    return float(np.mean(hits))


def summarize_ranks(ranks: Ranks, k: int) -> dict:
    out = {"R@1": recall_at_k(ranks, 1), "R@5": recall_at_k(ranks, 5)}
    out[f"R@{k}"] = recall_at_k(ranks, k)
    out.update(MRR=mean_reciprocal_rank(ranks), median_rank=median_rank(ranks))
    return out


def category_chance(query_categories: list[set], gallery_categories: list) -> float:
    """Expected category precision of a random ranking: the mean share of gallery items each
    query accepts. The baseline a P@K_category number should be read against."""
    if not len(query_categories) or not len(gallery_categories):
        return 0.0
    counts: dict = {}
    for c in gallery_categories:
        counts[c] = counts.get(c, 0) + 1
    n = len(gallery_categories)
    return float(np.mean([sum(counts.get(c, 0) for c in accepted) / n for accepted in query_categories]))
