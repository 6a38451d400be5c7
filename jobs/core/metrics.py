"""Offline ranking metrics over recommendation lists and held-out interactions.

Relevance is binary: an item is relevant to a visitor if the visitor interacted with it in the
test window. Averages are over visitors with at least one relevant item; every metric is in [0, 1].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.core.schemas import ITEM_ID, RANK, VISITOR_ID


class EmptyEvaluationError(ValueError):
    """There is no visitor with relevant items to evaluate on."""


def ranking_metrics(recs: pd.DataFrame, truth: pd.DataFrame, ks: tuple[int, ...]) -> dict:
    """precision@k, recall@k, ndcg@k and hit_rate@k averaged over the visitors in `truth`.

    recs: visitor_id, rank (1 = best), item_id. truth: visitor_id, item_id (duplicates ignored).
    A visitor in `truth` with no list scores 0. Returns {"precision_at_10": ..., ..., "users": n}.
    """
    truth = truth[[VISITOR_ID, ITEM_ID]].drop_duplicates()
    if truth.empty:
        raise EmptyEvaluationError("no relevant items: the test window is empty")
    n_relevant = truth.groupby(VISITOR_ID).size()
    users = n_relevant.index
    hits = recs[[VISITOR_ID, RANK, ITEM_ID]].merge(truth, on=[VISITOR_ID, ITEM_ID])
    hits = hits[hits[VISITOR_ID].isin(users)]
    gain = 1.0 / np.log2(hits[RANK].to_numpy() + 1.0)
    result: dict[str, float] = {"users": int(len(users))}
    for k in ks:
        at_k = hits[RANK].to_numpy() <= k
        n_hits = pd.Series(at_k.astype(float)).groupby(hits[VISITOR_ID].to_numpy()).sum()
        dcg = pd.Series(np.where(at_k, gain, 0.0)).groupby(hits[VISITOR_ID].to_numpy()).sum()
        n_hits = n_hits.reindex(users, fill_value=0.0)
        dcg = dcg.reindex(users, fill_value=0.0)
        ideal = n_relevant.clip(upper=k).map(_ideal_dcg)
        result[f"precision_at_{k}"] = float((n_hits / k).mean())
        result[f"recall_at_{k}"] = float((n_hits / n_relevant).mean())
        result[f"ndcg_at_{k}"] = float((dcg / ideal).mean())
        result[f"hit_rate_at_{k}"] = float((n_hits > 0).mean())
    return result


def _ideal_dcg(n: int) -> float:
    return float((1.0 / np.log2(np.arange(2, n + 2))).sum())
