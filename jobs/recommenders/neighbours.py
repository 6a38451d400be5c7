"""Neighbour baselines to hold ALS against: item-item kNN and user-user kNN.

Each answers ``recommend(visitor_ids, n, exclude, unavailable, fallback)`` exactly like the
Recommender protocol (base.py): `n` rows of ``visitor_id, rank, item_id, score, source`` per
visitor when enough items exist, never an item in `exclude` for that visitor nor in
`unavailable`, short lists topped up by `fill_lists` from the Fallback. Visitors a kNN model never
saw get fallback lists only. Each is built by ``fit(interactions, ...)`` from the frame
`build_interactions` returns (visitor_id, item_id, interaction_weight).

As in AlsRecommender, only `exclude` (and `unavailable`) removes items: a visitor's own history
stays recommendable unless the caller excludes it, so every model is scored under the same
rules. `filter_history=True` on the kNN models also drops everything the visitor interacted with.

Use, next to evaluate.py's models:
    interactions = build_interactions(train_events, cfg.train.event_weights)
    user_knn = UserKnnRecommender.fit(interactions, neighbours=50)
    recs = user_knn.recommend(visitor_ids, 20, exclude=bought)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.infra.schemas import (
    ITEM_ID,
    RANK,
    SCORE,
    SOURCE,
    VISITOR_ID,
)
from jobs.recommenders.base import (
    META_FILE,
    Fallback,
    empty_lists,
    exclusion_matrix,
    fill_lists,
    fill_similar,
    index_of,
    write_meta,
)
from jobs.recommenders.interactions import InteractionMatrix, rank_by_popularity, to_matrix

ITEM_SIMILARITIES = ("cosine", "bm25")


_ITEM_KNN_NAMES = {"CosineRecommender": "item_knn_cosine", "BM25Recommender": "item_knn_bm25"}


class ItemKnnRecommender:
    """implicit's item-item nearest neighbours (cosine or BM25), scored from visitor history.

    An item's score for a visitor is the sum over the visitor's items i of
    interaction_weight(i) * similarity(i, item), over each item's `neighbours` nearest items:
    what implicit's own recommend computes, done here as one sparse product per batch (implicit
    loops over visitors in Python and widens every list by the whole unavailable set).
    """

    def __init__(
        self,
        model,
        data: InteractionMatrix,
        popular_items: np.ndarray,
        *,
        filter_history: bool = False,
        batch_size: int = 5_000,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.data = data
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.filter_history = filter_history
        self.batch_size = batch_size
        self.name = _ITEM_KNN_NAMES.get(type(model).__name__, "item_knn")

    family = "item_knn"
    candidates = None

    def save(self, directory: Path) -> None:
        """The item-item similarity, the visitors' history it scores from, and popularity."""
        write_meta(directory, self.family, name=self.name, items=len(self.data.item_ids))
        sp.save_npz(directory / "similarity.npz", sp.csr_matrix(self.model.similarity))
        self.data.save(directory)
        np.save(directory / "popular_items.npy", self.popular_items)

    @classmethod
    def load(cls, directory: Path) -> ItemKnnRecommender:
        directory = Path(directory)
        data = InteractionMatrix.load(directory)
        model = _Similarity(sp.load_npz(directory / "similarity.npz").tocsr())
        loaded = cls(model, data, np.load(directory / "popular_items.npy"))
        loaded.name = json.loads((directory / META_FILE).read_text())["name"]
        return loaded

    def for_visitors(self, visitor_ids: np.ndarray) -> ItemKnnRecommender:
        """The same lists for `visitor_ids`; the history is a sparse matrix, kept whole."""
        return self

    def similar_items(
        self,
        item_ids: np.ndarray,
        m: int,
        fallback: Fallback,
        item_categories: pd.DataFrame,
        unavailable: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Each known item's `m` most similar items (the model's own neighbours), topped up like
        ALS's: the item's category's most popular items, then overall."""
        similarity = sp.csr_matrix(self.model.similarity)
        return similar_by_weights(
            self, lambda rows: similarity[rows], item_ids, m, fallback, item_categories, unavailable
        )

    @classmethod
    def fit(
        cls,
        interactions: pd.DataFrame,
        *,
        similarity: str = "cosine",
        neighbours: int = 20,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        num_threads: int = 1,
        filter_history: bool = False,
    ) -> ItemKnnRecommender:
        """similarity: "cosine" or "bm25"; neighbours: items kept per item (K, >= 1)."""
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        if similarity not in ITEM_SIMILARITIES:
            raise ValueError(f"similarity must be one of {ITEM_SIMILARITIES}, got {similarity!r}")
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        data = _require_interactions(interactions)
        if similarity == "bm25":
            model = BM25Recommender(K=neighbours, K1=bm25_k1, B=bm25_b, num_threads=num_threads)
        else:
            model = CosineRecommender(K=neighbours, num_threads=num_threads)
        with warnings.catch_warnings():
            # implicit hands its own re-weighted COO matrix to a CSR-only check; nothing to fix.
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(data.matrix, show_progress=False)
        return cls(model, data, rank_by_popularity(interactions), filter_history=filter_history)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        similarity = self.model.similarity

        def score(rows: np.ndarray) -> sp.csr_matrix:
            return self.data.matrix[rows] @ similarity

        return _recommend_by_scores(self, score, visitor_ids, n, exclude, unavailable, fallback)


class UserKnnRecommender:
    """User-user collaborative filtering: items of the `neighbours` most similar visitors.

    Similarity is the cosine between visitors' interaction rows (weights, or 0/1 with
    `binary=True`), in [0, 1]; the visitor is never their own neighbour. An item's score is
    sum over neighbours of similarity * the neighbour's interaction with it. Target visitors are
    processed `batch_size` at a time: one batch's similarity rows (sparse, every training visitor
    sharing an item) are the memory peak.
    """

    name = "user_knn"

    def __init__(
        self,
        data: InteractionMatrix,
        popular_items: np.ndarray,
        *,
        neighbours: int = 50,
        binary: bool = False,
        filter_history: bool = False,
        batch_size: int = 1_000,
    ):
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data = data
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.neighbours = neighbours
        self.binary = binary
        self.filter_history = filter_history
        self.batch_size = batch_size
        matrix = data.matrix.astype(np.float32)
        if binary:
            matrix.data[:] = 1.0
        matrix.sort_indices()
        self._values = matrix
        norms = np.sqrt(
            np.bincount(
                np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr)),
                weights=matrix.data.astype(np.float64) ** 2,
                minlength=matrix.shape[0],
            )
        )
        self._normalized = matrix.copy()
        norms[norms == 0] = 1.0  # an all-zero row has no neighbours either way
        self._normalized.data /= np.repeat(norms, np.diff(matrix.indptr)).astype(np.float32)
        # Item-major copy so a batch's similarities are one CSR x CSR product.
        self._normalized_t = self._normalized.T.tocsr()

    @classmethod
    def fit(
        cls,
        interactions: pd.DataFrame,
        *,
        neighbours: int = 50,
        binary: bool = False,
        filter_history: bool = False,
        batch_size: int = 1_000,
    ) -> UserKnnRecommender:
        return cls(
            _require_interactions(interactions),
            rank_by_popularity(interactions),
            neighbours=neighbours,
            binary=binary,
            filter_history=filter_history,
            batch_size=batch_size,
        )

    def neighbours_of(self, rows: np.ndarray) -> sp.csr_matrix:
        """Similarity rows of the given training rows (positions in data.visitor_ids) to every
        training visitor, pruned to the top `neighbours` per row; the diagonal is left out.

        Ties are broken by the lower training row, so results do not depend on batching.
        """
        sim = (self._normalized[rows] @ self._normalized_t).tocoo()
        other = sim.col != rows[sim.row]
        r, c, v = _top_per_row(sim.row[other], sim.col[other], sim.data[other], self.neighbours)
        return sp.csr_matrix((v, (r, c)), shape=(len(rows), self._values.shape[0]))

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        def score(rows: np.ndarray) -> sp.csr_matrix:
            return self.neighbours_of(rows) @ self._values

        return _recommend_by_scores(self, score, visitor_ids, n, exclude, unavailable, fallback)


def _require_interactions(interactions: pd.DataFrame) -> InteractionMatrix:
    if interactions.empty:
        raise ValueError("no interactions to fit on")
    return to_matrix(interactions)


def similar_by_weights(
    model, weights, item_ids, m, fallback, item_categories, unavailable
) -> pd.DataFrame:
    """Similar items from an item-item matrix: `weights(model rows) -> sparse rows` over
    model.data.item_ids; each known item's `m` largest stored weights (never itself nor an
    unavailable item) as the model's own rows, then topped up by `fill_similar`."""
    item_ids = np.unique(np.asarray(item_ids, dtype=np.int64))
    rows = index_of(model.data.item_ids, item_ids)
    known = rows >= 0
    block = sp.coo_matrix(weights(rows[known]))
    neighbour = model.data.item_ids[block.col]
    keep = neighbour != item_ids[known][block.row]
    if unavailable is not None and len(unavailable):
        keep &= ~np.isin(neighbour, unavailable)
    r, c, v = _top_per_row(block.row[keep], neighbour[keep], block.data[keep], m)
    own = pd.DataFrame(
        {
            VISITOR_ID: item_ids[known][r],
            RANK: _rank_in_row(r),
            ITEM_ID: c,
            SCORE: v.astype(np.float64),
            SOURCE: model.name,
        }
    )
    return fill_similar(own, item_ids, m, fallback, item_categories, unavailable)


def _recommend_by_scores(
    model,
    score,
    visitor_ids: np.ndarray,
    n: int,
    exclude: pd.DataFrame | None,
    unavailable: np.ndarray | None,
    fallback: Fallback | None,
) -> pd.DataFrame:
    """Lists from `score(training rows) -> (rows x items) CSR`, batch by batch, then topped up.

    Items without a stored score are never listed by the model; the fallback fills in for them.
    """
    visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    data = model.data
    rows = index_of(data.visitor_ids, visitors)
    warm, rows = visitors[rows >= 0], rows[rows >= 0]
    if model.filter_history:
        # As exclusions, so the fallback cannot bring the history back either.
        exclude = _with_history(exclude, data, rows)
    available = np.ones(len(data.item_ids), dtype=bool)
    if unavailable is not None and len(unavailable):
        cols = index_of(data.item_ids, np.asarray(unavailable, dtype=np.int64))
        available[cols[cols >= 0]] = False
    parts = []
    for start in range(0, len(warm), model.batch_size):
        part = slice(start, start + model.batch_size)
        batch, batch_rows = warm[part], rows[part]
        blocked = exclusion_matrix(exclude, batch, data.item_ids)
        scores = score(batch_rows).tocoo()
        keep = available[scores.col] & ~_is_stored(blocked, scores.row, scores.col)
        r, c, v = _top_per_row(scores.row[keep], scores.col[keep], scores.data[keep], n)
        parts.append(
            pd.DataFrame(
                {
                    VISITOR_ID: batch[r],
                    RANK: _rank_in_row(r),
                    ITEM_ID: data.item_ids[c],
                    SCORE: v.astype(np.float64),
                    SOURCE: model.name,
                }
            )
        )
    lists = pd.concat(parts, ignore_index=True) if parts else empty_lists()
    fallback = fallback or Fallback(model.popular_items)
    return fill_lists(lists, visitors, n, fallback, exclude, unavailable)


def _with_history(
    exclude: pd.DataFrame | None, data: InteractionMatrix, rows: np.ndarray
) -> pd.DataFrame:
    """`exclude` plus every (visitor, item) the given training rows interacted with."""
    history = data.matrix[rows].tocoo()
    own = pd.DataFrame(
        {VISITOR_ID: data.visitor_ids[rows][history.row], ITEM_ID: data.item_ids[history.col]}
    )
    if exclude is None or exclude.empty:
        return own
    return pd.concat([exclude[[VISITOR_ID, ITEM_ID]], own], ignore_index=True)


def _is_stored(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether (rows[i], cols[i]) is a stored entry of `matrix`."""
    if matrix.nnz == 0:
        return np.zeros(len(rows), dtype=bool)
    coo = matrix.tocoo()
    width = np.int64(matrix.shape[1])
    stored = np.unique(coo.row.astype(np.int64) * width + coo.col)
    return np.isin(rows.astype(np.int64) * width + cols, stored, assume_unique=False)


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `k` largest entries of each row, sorted by row, value descending, then column."""
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    top = _rank_in_row(rows) <= k
    return rows[top], cols[top], values[top]


def _rank_in_row(sorted_rows: np.ndarray) -> np.ndarray:
    """1, 2, ... within each run of equal values in an already sorted array."""
    return np.arange(1, len(sorted_rows) + 1) - np.searchsorted(sorted_rows, sorted_rows)


@dataclass(frozen=True)
class _Similarity:
    """A loaded item-kNN model: only its item-item similarity is needed to serve."""

    similarity: sp.csr_matrix
