"""implicit's ALS behind the Recommender protocol, with its id mappings, candidate pool and
similar items; saved and loaded as plain files."""

from __future__ import annotations

import copy
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
    Fallback,
    empty_lists,
    exclusion_matrix,
    fill_lists,
    fill_similar,
    index_of,
    write_meta,
)

# implicit marks filtered items with -FLT_MAX.
_FILTERED_SCORE = -1e38


class AlsRecommender:
    """implicit's ALS with its id mappings and a popularity fallback, saved as plain files."""

    name = family = "als"

    def __init__(
        self,
        model,
        visitor_ids: np.ndarray,
        item_ids: np.ndarray,
        popular_items: np.ndarray,
        candidates: np.ndarray | None = None,
    ):
        """candidates: the item ids lists are drawn from (None: every item the model knows);
        ranking a fixed pool keeps scoring linear in visitors as the catalog grows."""
        self.model = model
        self.visitor_ids = np.asarray(visitor_ids, dtype=np.int64)
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.candidates = None
        if candidates is not None:
            self.candidates = np.unique(self._item_positions(np.asarray(candidates)))

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        visitor_ids = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        known = index_of(self.visitor_ids, visitor_ids) >= 0
        warm = visitor_ids[known]
        rows = index_of(self.visitor_ids, warm)
        ids, scores = self._ranked(
            rows, n, exclusion_matrix(exclude, warm, self.item_ids), unavailable
        )
        ok = scores > _FILTERED_SCORE
        user_pos, rank_pos = np.nonzero(ok)
        als = pd.DataFrame(
            {
                VISITOR_ID: warm[user_pos],
                RANK: rank_pos + 1,
                ITEM_ID: self.item_ids[ids[ok]],
                SCORE: scores[ok].astype(np.float64),
                SOURCE: self.name,
            }
        )
        return fill_lists(
            als, visitor_ids, n, fallback or Fallback(self.popular_items), exclude, unavailable
        )

    def for_visitors(self, visitor_ids: np.ndarray) -> AlsRecommender:
        """The same recommender holding only `visitor_ids`' factor rows: their lists are
        unchanged, any other visitor is unseen. Evaluate asks for the test window's visitors
        only, and every visitor's factors (7 GB at scale 10) need not stay in memory for that."""
        rows = index_of(self.visitor_ids, np.unique(np.asarray(visitor_ids, dtype=np.int64)))
        rows = rows[rows >= 0]
        model = copy.copy(self.model)
        model.user_factors = self.model.user_factors[rows]
        model._user_norms = model._XtX = None  # implicit's caches over the user factors
        subset = copy.copy(self)
        subset.model, subset.visitor_ids = model, self.visitor_ids[rows]
        return subset

    def similar_items(
        self,
        item_ids: np.ndarray,
        m: int,
        fallback: Fallback,
        item_categories: pd.DataFrame,
        unavailable: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Top-`m` neighbours per item: item_id, rank, similar_item_id, score, source.

        Items the model knows get the closest items by cosine of their ALS factors (`als`);
        the rest, and short lists, are filled with the most popular items of the item's own
        category (`category_popular`), then overall (`popular`). Never the item itself nor an
        unavailable item. item_categories: item_id, category_id (the catalog snapshot).
        """
        item_ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        rows = index_of(self.item_ids, item_ids)
        known = item_ids[rows >= 0]
        als = empty_lists()
        if len(known):
            ids, scores = self._top(self.model.similar_items, rows[rows >= 0], m + 1, unavailable)
            neighbour = self.item_ids[ids]
            ok = (scores > _FILTERED_SCORE) & (neighbour != known[:, None])
            rank = np.cumsum(ok, axis=1)
            ok &= rank <= m
            item_pos, _ = np.nonzero(ok)
            als = pd.DataFrame(
                {
                    VISITOR_ID: known[item_pos],
                    RANK: rank[ok],
                    ITEM_ID: neighbour[ok],
                    SCORE: scores[ok].astype(np.float64),
                    SOURCE: self.name,
                }
            )
        return fill_similar(als, item_ids, m, fallback, item_categories, unavailable)

    def _ranked(self, rows: np.ndarray, n: int, excluded: sp.csr_matrix, unavailable):
        """Top-`n` (ids, scores) for model rows `rows`, without the items `excluded` marks.

        implicit filters liked items one visitor at a time in Python, so only the visitors with
        something to exclude (buyers, a small minority) go through that path; the rest are
        ranked unfiltered, which gives the same lists faster.
        """
        filtered = np.diff(excluded.indptr) > 0
        if filtered.all() or not filtered.any():
            liked = {"user_items": excluded, "filter_already_liked_items": bool(filtered.any())}
            return self._top(self.model.recommend, rows, n, unavailable, **liked)
        plain = self._top(
            self.model.recommend,
            rows[~filtered],
            n,
            unavailable,
            user_items=None,
            filter_already_liked_items=False,
        )
        liked = self._top(
            self.model.recommend,
            rows[filtered],
            n,
            unavailable,
            user_items=excluded[filtered],
            filter_already_liked_items=True,
        )
        ids = np.empty((len(rows), plain[0].shape[1]), dtype=plain[0].dtype)
        scores = np.empty((len(rows), plain[1].shape[1]), dtype=plain[1].dtype)
        ids[~filtered], scores[~filtered] = plain
        ids[filtered], scores[filtered] = liked
        return ids, scores

    def _top(self, query, rows: np.ndarray, n: int, unavailable: np.ndarray | None, **kwargs):
        """implicit's top-`n` `query` (recommend or similar_items) for model rows `rows`, over
        the candidate pool (or every item) minus the unavailable items: (ids, scores)."""
        filtered = self._item_positions(unavailable)
        if self.candidates is None:
            pool_size, options = len(self.item_ids), {"filter_items": filtered}
        else:
            pool = self.candidates
            if filtered is not None:
                pool = np.setdiff1d(pool, filtered, assume_unique=True)
            pool_size, options = len(pool), {"items": pool}
        if pool_size == 0:
            return np.empty((len(rows), 0), dtype=np.int64), np.empty((len(rows), 0))
        return query(rows, N=min(n, pool_size), **kwargs, **options)

    def _item_positions(self, item_ids: np.ndarray | None) -> np.ndarray | None:
        """Model columns of the given items (unknown ones dropped), for implicit's filter_items."""
        if item_ids is None or len(item_ids) == 0:
            return None
        idx = index_of(self.item_ids, np.asarray(item_ids, dtype=np.int64))
        return idx[idx >= 0]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / "als.npz"))
        np.save(directory / "visitor_ids.npy", self.visitor_ids)
        np.save(directory / "item_ids.npy", self.item_ids)
        np.save(directory / "popular_items.npy", self.popular_items)
        if self.candidates is not None:
            np.save(directory / "candidates.npy", self.item_ids[self.candidates])
        write_meta(
            directory,
            self.family,
            factors=int(self.model.factors),
            visitors=len(self.visitor_ids),
            items=len(self.item_ids),
            candidates=None if self.candidates is None else len(self.candidates),
        )

    @classmethod
    def load(cls, directory: Path) -> AlsRecommender:
        from implicit.cpu.als import AlternatingLeastSquares

        directory = Path(directory)
        candidates = directory / "candidates.npy"
        return cls(
            AlternatingLeastSquares.load(str(directory / "als.npz")),
            np.load(directory / "visitor_ids.npy"),
            np.load(directory / "item_ids.npy"),
            np.load(directory / "popular_items.npy"),
            np.load(candidates) if candidates.exists() else None,
        )
