"""Own history: each visitor's own items again, most recent and strongest first.

Where visitors come back to what they viewed or bought (groceries, consumables, a shortlist
they compare), their own items beat any model of taste. Items the export excludes (bought ones
by default) never reappear; lists are topped up with recent popularity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jobs.infra.schemas import INTERACTION_WEIGHT, ITEM_ID, RANK, SCORE, SOURCE, VISITOR_ID
from jobs.recommenders.base import (
    Fallback,
    empty_lists,
    fill_lists,
    index_of,
    visitor_range,
    write_meta,
)
from jobs.recommenders.interactions import build_interactions, rank_by_popularity
from jobs.recommenders.popularity import _SameForEveryone


class RepeatRecommender(_SameForEveryone):
    """Per visitor, the items of their history ranked by time-decayed weight; `score` is it.

    history: visitor_id, item_id, interaction_weight (decayed), one row per pair;
    popular_items: the top-up for short lists and unknown visitors, most popular first.
    """

    name = family = "repeat"

    def __init__(self, history: pd.DataFrame, popular_items: np.ndarray):
        history = history[[VISITOR_ID, ITEM_ID, INTERACTION_WEIGHT]].astype(
            {VISITOR_ID: np.int64, ITEM_ID: np.int64, INTERACTION_WEIGHT: np.float64}
        )
        if not _in_list_order(history):  # a saved history is; loading need not sort it again
            history = history.sort_values(
                [VISITOR_ID, INTERACTION_WEIGHT, ITEM_ID], ascending=[True, False, True]
            )
        self.history = history.reset_index(drop=True)
        self.popular_items = np.asarray(popular_items, dtype=np.int64)
        self.visitor_ids = pd.unique(self.history[VISITOR_ID].to_numpy())  # sorted already

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        weights: dict[str, float],
        *,
        as_of: pd.Timestamp,
        half_life_days: float,
    ) -> RepeatRecommender:
        """events: visitor_id, item_id, event_type, event_ts; weights halve every half-life."""
        decayed = build_interactions(events, weights, as_of=as_of, half_life_days=half_life_days)
        return cls(decayed, rank_by_popularity(decayed))

    def save(self, directory: Path) -> None:
        write_meta(directory, self.family, pairs=len(self.history))
        self.history.to_parquet(directory / "history.parquet", index=False)
        np.save(directory / "popular_items.npy", self.popular_items)

    @classmethod
    def load(cls, directory: Path) -> RepeatRecommender:
        directory = Path(directory)
        return cls(
            pd.read_parquet(directory / "history.parquet"),
            np.load(directory / "popular_items.npy"),
        )

    def for_visitors(self, visitor_ids: np.ndarray) -> RepeatRecommender:
        """The same model holding only `visitor_ids`' histories (serving a batch needs no more)."""
        keep = (
            index_of(
                np.unique(np.asarray(visitor_ids, dtype=np.int64)),
                self.history[VISITOR_ID].to_numpy(),
            )
            >= 0
        )
        return RepeatRecommender(self.history[keep], self.popular_items)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        own = self.history.iloc[visitor_range(self.history[VISITOR_ID].to_numpy(), visitors)]
        own = own[index_of(visitors, own[VISITOR_ID].to_numpy()) >= 0]
        if unavailable is not None and len(unavailable):
            own = own[~own[ITEM_ID].isin(unavailable)]
        if exclude is not None and not exclude.empty:
            pairs = exclude[[VISITOR_ID, ITEM_ID]].drop_duplicates().assign(_skip=True)
            own = own.merge(pairs, on=[VISITOR_ID, ITEM_ID], how="left")
            own = own[own["_skip"].isna()]
        # history is sorted by visitor, then weight: a visitor's first n rows are their list
        rank = own.groupby(VISITOR_ID).cumcount().to_numpy() + 1
        lists = pd.DataFrame(
            {
                VISITOR_ID: own[VISITOR_ID].to_numpy(),
                RANK: rank,
                ITEM_ID: own[ITEM_ID].to_numpy(),
                SCORE: own[INTERACTION_WEIGHT].to_numpy(),
                SOURCE: self.name,
            }
        )
        lists = lists[lists[RANK] <= n] if len(lists) else empty_lists()
        top_up = fallback or Fallback(self.popular_items)
        return fill_lists(lists, visitors, n, top_up, exclude, unavailable)


def _in_list_order(history: pd.DataFrame) -> bool:
    """True when `history` is by visitor, then weight (highest first), then item: in O(rows)."""
    v, w, i = (history[c].to_numpy() for c in (VISITOR_ID, INTERACTION_WEIGHT, ITEM_ID))
    same_v, same_w = v[1:] == v[:-1], w[1:] == w[:-1]
    after = (v[1:] > v[:-1]) | (same_v & ((w[1:] < w[:-1]) | (same_w & (i[1:] > i[:-1]))))
    return bool(after.all())
