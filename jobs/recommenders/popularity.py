"""Popularity baselines: the all-time bestseller list and recent popularity (decayed weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jobs.infra.schemas import (
    INTERACTION_WEIGHT,
    ITEM_ID,
    SCORE,
    SOURCE,
)
from jobs.recommenders.base import Fallback, empty_lists, fill_lists, fill_similar, write_meta
from jobs.recommenders.interactions import build_interactions, rank_by_popularity


class _SameForEveryone:
    """What serving needs of a model holding one list for everyone and no item-item signal."""

    candidates = None

    def for_visitors(self, visitor_ids: np.ndarray):
        """The same lists for `visitor_ids`: nothing per visitor is held to drop."""
        return self

    def similar_items(
        self,
        item_ids: np.ndarray,
        m: int,
        fallback: Fallback,
        item_categories: pd.DataFrame,
        unavailable: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """No item-item signal: the item's own category's most popular items, then overall."""
        item_ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        return fill_similar(empty_lists(), item_ids, m, fallback, item_categories, unavailable)


class PopularityRecommender(_SameForEveryone):
    """The baseline: the same most-popular list for everyone, minus what each visitor excludes."""

    name = family = "popular"

    def __init__(self, popular_items: np.ndarray):
        self.popular_items = np.asarray(popular_items, dtype=np.int64)

    def save(self, directory: Path) -> None:
        write_meta(directory, self.family, items=len(self.popular_items))
        np.save(directory / "popular_items.npy", self.popular_items)

    @classmethod
    def load(cls, directory: Path) -> PopularityRecommender:
        return cls(np.load(Path(directory) / "popular_items.npy"))

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        own = Fallback(self.popular_items)
        lists = fill_lists(empty_lists(), visitors, n, own, exclude, unavailable)
        # Only when the popular items run out (tiny catalogs) does the fallback add anything.
        return fill_lists(lists, visitors, n, fallback or own, exclude, unavailable)


class RecentPopularityRecommender(_SameForEveryone):
    """The same list for everyone, ranked by time-decayed weight: last week's hits first.

    Every visitor is served (popularity needs no history); `score` is the item's decayed total.
    """

    name = family = "recent_popular"

    def __init__(self, popular_items: np.ndarray, scores: np.ndarray):
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        if self.popular_items.shape != self.scores.shape:
            raise ValueError("popular_items and scores must have the same length")

    def save(self, directory: Path) -> None:
        write_meta(directory, self.family, items=len(self.popular_items))
        np.save(directory / "popular_items.npy", self.popular_items)
        np.save(directory / "scores.npy", self.scores)

    @classmethod
    def load(cls, directory: Path) -> RecentPopularityRecommender:
        directory = Path(directory)
        return cls(np.load(directory / "popular_items.npy"), np.load(directory / "scores.npy"))

    @classmethod
    def fit(cls, interactions: pd.DataFrame) -> RecentPopularityRecommender:
        """From interactions whose weights are already decayed (see `from_events`)."""
        popular = rank_by_popularity(interactions)
        totals = interactions.groupby(ITEM_ID)[INTERACTION_WEIGHT].sum()
        return cls(popular, totals.reindex(popular).to_numpy())

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        weights: dict[str, float],
        *,
        as_of: pd.Timestamp,
        half_life_days: float,
    ) -> RecentPopularityRecommender:
        """events: visitor_id, item_id, event_type, event_ts; weights halve every half-life."""
        return cls.fit(
            build_interactions(events, weights, as_of=as_of, half_life_days=half_life_days)
        )

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        own = Fallback(self.popular_items)
        lists = fill_lists(empty_lists(), visitors, n, own, exclude, unavailable)
        score_of = pd.Series(self.scores, index=self.popular_items)
        lists = lists.assign(
            **{SCORE: lists[ITEM_ID].map(score_of).astype(np.float64), SOURCE: self.name}
        )
        # Only when the ranked items run out (tiny catalogs) does the fallback add anything.
        return fill_lists(lists, visitors, n, fallback or own, exclude, unavailable)
