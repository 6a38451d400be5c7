"""Re-ranking: business goals on top of the model's order (pure pandas/numpy).

The model (with its fallback) proposes `rerank.candidates` items per visitor, best first.
Re-ranking picks the final `n` of them, one position at a time, by a value per candidate:

    value = relevance          x (1 - (rank - 1) / candidates)   the model's order, in (0, 1]
          + freshness          x 0.5 ** (age / half-life)         launched recently (first_seen_ts)
          + sum(boosts[column] x column scaled to [0, 1])         catalog columns (price, ...)
          + cold_start_shuffle x u                                lists with no model row

Each position takes the candidate of highest value, less `diversity` when its category is
already in the list (maximal marginal relevance, with "same category" as the similarity), and
never a candidate whose category already holds `max_per_category` items. `u` is uniform in
[0, 1), drawn from a hash of (visitor, item, logical date), for lists without a single row from
the model (a visitor it has never seen, or one whose model items were all filtered out): such
a visitor gets a different order of the popular items from the next one, the same order on a
rerun of the date, and a new one the next day.

Weights of 0 (and no cap) keep the model's order exactly and skip the work. The `score` column
stays the model's (or fallback's) score; `rank` is the final order.

    reranker = Reranker.from_catalog(weights, catalog, as_of, day=run_date, candidates=100)
    final = reranker.apply(lists, n=50)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from jobs.infra.config import RerankWeights
from jobs.infra.schemas import CATEGORY_ID, FIRST_SEEN_TS, ITEM_ID, RANK, SOURCE, VISITOR_ID

# A list the model ranked has at least one row from it; the rest are fallback lists.
MODEL_SOURCE = "als"
_NO_CATEGORY = -1


class RerankInputError(ValueError):
    """The catalog lacks what the weights need, or the lists are not ranked lists."""


@dataclass(frozen=True, eq=False)
class Reranker:
    """The weights and, per item, what re-ranking knows of it as of the logical date.

    items: sorted item ids; category: their category codes (-1: none); bonus: freshness and
    boosts already weighted, one number per item (0 for an item not in the catalog).
    """

    weights: RerankWeights
    candidates: int
    day: date
    items: np.ndarray
    category: np.ndarray
    bonus: np.ndarray

    @classmethod
    def from_catalog(
        cls,
        weights: RerankWeights,
        catalog: pd.DataFrame,
        as_of: pd.Timestamp,
        day: date,
        candidates: int,
    ) -> Reranker:
        """catalog: item_id, category_id, first_seen_ts (UTC) and every column in
        `weights.boosts`; as_of: when freshness ages are counted to (UTC); day: the logical
        date, which seeds the cold-start shuffle."""
        if candidates <= 0:
            raise RerankInputError(f"candidates must be positive, got {candidates}")
        needed = [ITEM_ID, CATEGORY_ID, *weights.boosts]
        if weights.freshness:
            needed.append(FIRST_SEEN_TS)
        missing = [c for c in needed if c not in catalog.columns]
        if missing:
            raise RerankInputError(
                f"the catalog has no column {missing} (rerank weights need it); "
                f"its columns are {list(catalog.columns)}"
            )
        catalog = catalog.drop_duplicates(ITEM_ID).sort_values(ITEM_ID)
        bonus = np.zeros(len(catalog))
        if weights.freshness:
            first_seen = pd.to_datetime(catalog[FIRST_SEEN_TS], utc=True)
            age_days = ((as_of - first_seen).dt.total_seconds() / 86_400).clip(lower=0)
            fresh = np.power(0.5, age_days.to_numpy() / weights.freshness_half_life_days)
            bonus += weights.freshness * np.nan_to_num(fresh, nan=0.0)
        for column, weight in weights.boosts.items():
            bonus += weight * _scaled(catalog[column], column)
        category = catalog[CATEGORY_ID].fillna(_NO_CATEGORY).to_numpy(dtype=np.int64)
        return cls(
            weights,
            candidates,
            day,
            catalog[ITEM_ID].to_numpy(dtype=np.int64),
            category,
            bonus,
        )

    def apply(self, lists: pd.DataFrame, n: int) -> pd.DataFrame:
        """The top `n` of each visitor's candidates (visitor_id, rank, item_id, score, source,
        sorted by visitor and rank), re-ranked, ranked 1..k. A list comes out shorter than `n`
        when it has fewer candidates, or when `max_per_category` leaves too few."""
        if n <= 0:
            raise RerankInputError(f"n must be positive, got {n}")
        missing = [c for c in (VISITOR_ID, RANK, ITEM_ID, SOURCE) if c not in lists.columns]
        if missing:
            raise RerankInputError(f"the lists have no column {missing}")
        if lists.empty:
            return lists.reset_index(drop=True)
        lists = lists.sort_values([VISITOR_ID, RANK], kind="stable").reset_index(drop=True)
        if self.weights.is_identity:
            position = lists.groupby(VISITOR_ID).cumcount()
            kept = lists[position < n].copy()
            kept[RANK] = position[position < n] + 1
            return kept.reset_index(drop=True)

        visitors = lists[VISITOR_ID].to_numpy(dtype=np.int64)
        row, starts = _list_rows(visitors)
        col = np.arange(len(lists)) - starts[row]
        shape = (len(starts), int(col.max()) + 1)
        value = np.full(shape, -np.inf)
        value[row, col] = self._values(lists, visitors, row)
        category = np.full(shape, _NO_CATEGORY, dtype=np.int64)
        category[row, col] = self._lookup(lists[ITEM_ID].to_numpy(dtype=np.int64))[0]

        picks = _pick(value, category, n, self.weights.diversity, self.weights.max_per_category)
        chosen_rows, ranks = np.nonzero(picks >= 0)
        flat = starts[chosen_rows] + picks[chosen_rows, ranks]
        out = lists.iloc[flat].copy()
        out[RANK] = ranks + 1
        return out.reset_index(drop=True)

    def _values(self, lists, visitors, row) -> np.ndarray:
        w = self.weights
        ranks = lists[RANK].to_numpy(dtype=np.float64)
        items = lists[ITEM_ID].to_numpy(dtype=np.int64)
        value = w.relevance * (1.0 - (ranks - 1.0) / self.candidates)
        value += self._lookup(items)[1]
        if w.cold_start_shuffle:
            by_model = np.zeros(row.max() + 1, dtype=bool)
            by_model[row[lists[SOURCE].to_numpy() == MODEL_SOURCE]] = True
            cold = ~by_model[row]
            value[cold] += w.cold_start_shuffle * seeded_uniform(
                visitors[cold], items[cold], self.day
            )
        return value

    def _lookup(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self.items, items)
        found = pos < len(self.items)
        found[found] = self.items[pos[found]] == items[found]
        category = np.full(len(items), _NO_CATEGORY, dtype=np.int64)
        bonus = np.zeros(len(items))
        category[found] = self.category[pos[found]]
        bonus[found] = self.bonus[pos[found]]
        return category, bonus


def seeded_uniform(visitors: np.ndarray, items: np.ndarray, day: date) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (visitor, item), fixed by the day (splitmix64)."""
    with np.errstate(over="ignore"):
        x = (
            visitors.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ items.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
            ^ np.uint64(day.toordinal()) * np.uint64(0x94D049BB133111EB)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sample_visitors(visitors: np.ndarray, size: int, run_date: date) -> np.ndarray:
    """`size` of `visitors`, sorted, chosen by a hash of visitor and date: the same visitors on
    a rerun of the date, others the next day."""
    if size >= len(visitors):
        return np.sort(visitors)
    # A shop's text ids are hashed first: the same visitors are picked on a rerun either way.
    ids = visitors if visitors.dtype.kind in "iu" else pd.util.hash_array(visitors.astype(object))
    keys = seeded_uniform(ids, np.zeros(len(visitors), dtype=np.int64), run_date)
    return np.sort(visitors[np.argsort(keys, kind="stable")[:size]])


def _list_rows(visitors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # visitors sorted: each row's list index, and where each list starts.
    new = np.r_[True, visitors[1:] != visitors[:-1]]
    starts = np.flatnonzero(new)
    return np.cumsum(new) - 1, starts


def _pick(
    value: np.ndarray, category: np.ndarray, n: int, diversity: float, cap: int | None
) -> np.ndarray:
    """Column picked for each list and position (-1: none left), greedily, all lists at once."""
    lists, width = value.shape
    picks = np.full((lists, n), -1, dtype=np.int64)
    if not diversity and cap is None:
        # No interaction between picks: the order by value is the answer (ties: model order).
        order = np.argsort(-value, axis=1, kind="stable")[:, :n]
        taken = np.isfinite(np.take_along_axis(value, order, axis=1))
        picks[:, : order.shape[1]] = np.where(taken, order, -1)
        return picks
    rows = np.arange(lists)
    value = value.copy()
    listed = np.zeros((lists, width), dtype=np.int32)  # picked items of the candidate's category
    for position in range(min(n, width)):
        adjusted = value - diversity * (listed > 0)
        if cap is not None:
            adjusted[listed >= cap] = -np.inf
        best = adjusted.argmax(axis=1)
        ok = np.isfinite(adjusted[rows, best])
        picks[ok, position] = best[ok]
        value[rows[ok], best[ok]] = -np.inf
        picked = category[rows, best]
        grow = ok & (picked != _NO_CATEGORY)
        listed[grow] += category[grow] == picked[grow, None]
    return picks


def _scaled(values: pd.Series, column: str) -> np.ndarray:
    """A numeric catalog column min-max scaled to [0, 1] over the catalog. An item without a
    value gets the median of the scaled known values, so a boost of either sign leaves it in
    the middle rather than first or last."""
    if not pd.api.types.is_numeric_dtype(values):
        raise RerankInputError(f"boost column {column!r} is not numeric ({values.dtype})")
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    known = numbers[np.isfinite(numbers)]
    if known.size == 0 or known.min() == known.max():
        # A boost that cannot change any list is a config mistake, not something to ignore.
        raise RerankInputError(
            f"boost column {column!r} has {'no values' if known.size == 0 else 'one value'} in "
            "the catalog, so its boost would change nothing; remove it from rerank.boosts"
        )
    low, high = known.min(), known.max()
    scaled = (numbers - low) / (high - low)
    return np.where(np.isfinite(scaled), scaled, np.median((known - low) / (high - low)))
