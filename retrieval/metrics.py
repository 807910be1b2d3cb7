"""Retrieval metrics on a query × gallery similarity matrix. Ranks are 1-based."""
from __future__ import annotations

import numpy as np


def ranks_of_targets(similarity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each query's relevant gallery item: 1 + number of items scored strictly higher
    (ties resolved in the query's favour)."""
    target_scores = similarity[np.arange(len(targets)), targets]
    return 1 + (similarity > target_scores[:, None]).sum(axis=1)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    return float((ranks <= k).mean()) if len(ranks) else 0.0


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float((1.0 / ranks).mean()) if len(ranks) else 0.0


def median_rank(ranks: np.ndarray) -> float:
    return float(np.median(ranks)) if len(ranks) else 0.0


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


def summarize_ranks(ranks: np.ndarray, k: int) -> dict:
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
