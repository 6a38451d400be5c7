"""EASE (Steck 2019): a closed-form item-item model, B = I - P / diag(P) with
P = (X'X + l2 I)^-1 and a zero diagonal; a visitor's scores are their history times B.

Strong on small catalogs and short histories, where ALS has too little to factorize. B is a
dense items x items matrix, so the model keeps the `max_items` most popular items (5,000:
100 MB of float32 weights); other items reach lists only through the fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from jobs.infra.schemas import ITEM_ID
from jobs.recommenders.base import (
    META_FILE,
    Fallback,
    write_meta,
)
from jobs.recommenders.interactions import InteractionMatrix, rank_by_popularity, to_matrix
from jobs.recommenders.neighbours import _recommend_by_scores, similar_by_weights


class EaseRecommender:
    """EASE over the most popular items, behind the Recommender protocol."""

    name = family = "ease"
    candidates = None
    filter_history = False

    def __init__(
        self,
        weights: np.ndarray,
        data: InteractionMatrix,
        popular_items: np.ndarray,
        l2: float,
        batch_size: int = 2_000,
    ):
        """weights: B, items x items over data.item_ids; data: the visitors' history."""
        self.weights = np.asarray(weights, dtype=np.float32)
        self.data = data
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.l2 = float(l2)
        self.batch_size = batch_size

    @classmethod
    def fit(
        cls, interactions: pd.DataFrame, *, l2: float = 500.0, max_items: int = 5_000
    ) -> EaseRecommender:
        """interactions: visitor_id, item_id, interaction_weight; l2 > 0, max_items >= 1."""
        if not l2 > 0 or max_items < 1:
            raise ValueError(f"l2 must be positive and max_items >= 1, got {l2}, {max_items}")
        if interactions.empty:
            raise ValueError("EASE needs at least one interaction")
        popular = rank_by_popularity(interactions)
        pooled = interactions[interactions[ITEM_ID].isin(popular[:max_items])]
        data = to_matrix(pooled)
        gram = (data.matrix.T @ data.matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        # X'X + l2 I is symmetric positive definite: a Cholesky inverse, half an LU's work.
        inverse = scipy.linalg.inv(gram, assume_a="pos", overwrite_a=True, check_finite=False)
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        return cls(weights, data, popular, l2)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        # The best n + 100 per visitor leave room for exclusions; a visitor with more gets the
        # fallback for the rest.
        keep = n + 100

        def score(rows: np.ndarray) -> sp.csr_matrix:
            dense = np.asarray(self.data.matrix[rows] @ self.weights)
            if dense.shape[1] > keep:
                top = np.argpartition(-dense, keep - 1, axis=1)[:, :keep]
            else:
                top = np.broadcast_to(np.arange(dense.shape[1]), dense.shape)
            values = np.take_along_axis(dense, top, axis=1)
            # A stored zero would vanish from the sparse matrix: nudge it just above.
            values = np.where(values == 0, np.float32(1e-30), values)
            row = np.repeat(np.arange(len(rows)), top.shape[1])
            return sp.csr_matrix(
                (values.ravel(), (row, top.ravel())), shape=(len(rows), dense.shape[1])
            )

        return _recommend_by_scores(self, score, visitor_ids, n, exclude, unavailable, fallback)

    def for_visitors(self, visitor_ids: np.ndarray) -> EaseRecommender:
        return self

    def similar_items(
        self,
        item_ids: np.ndarray,
        m: int,
        fallback: Fallback,
        item_categories: pd.DataFrame,
        unavailable: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Each pooled item's `m` largest weights in B (the items it predicts), then the item's
        category's most popular items, then overall."""

        def positive(rows: np.ndarray) -> sp.csr_matrix:
            block = self.weights[rows]
            return sp.csr_matrix(np.where(block > 0, block, 0))

        return similar_by_weights(
            self, positive, item_ids, m, fallback, item_categories, unavailable
        )

    def save(self, directory: Path) -> None:
        write_meta(directory, self.family, l2=self.l2, items=len(self.data.item_ids))
        np.save(directory / "weights.npy", self.weights)
        self.data.save(directory)
        np.save(directory / "popular_items.npy", self.popular_items)

    @classmethod
    def load(cls, directory: Path) -> EaseRecommender:
        directory = Path(directory)
        data = InteractionMatrix.load(directory)
        l2 = json.loads((directory / META_FILE).read_text())["l2"]
        return cls(
            np.load(directory / "weights.npy"), data, np.load(directory / "popular_items.npy"), l2
        )
