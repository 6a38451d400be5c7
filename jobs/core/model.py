"""Recommenders behind one interface, the interaction matrix, and the MLflow pyfunc wrapper.

Every model answers ``recommend(visitor_ids, n, exclude, unavailable, fallback)`` with a frame of
``visitor_id, rank, item_id, score, source``: `n` rows per visitor (rank 1 is best) as long as
enough items are available, never an item in `exclude` for that visitor nor in `unavailable`.
Lists the model cannot fill are topped up by a Fallback: popular items in the visitor's top
categories (`category_popular`), then popular items overall (`popular`), so evaluation and
export see the same lists.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.core.schemas import (
    CATEGORY_ID,
    EVENT_TS,
    EVENT_TYPE,
    INTERACTION_WEIGHT,
    ITEM_ID,
    RANK,
    SCORE,
    SOURCE,
    VISITOR_ID,
)

REC_COLUMNS = [VISITOR_ID, RANK, ITEM_ID, SCORE, SOURCE]
SIMILAR_ITEM_ID = "similar_item_id"
# implicit marks filtered items with -FLT_MAX.
_FILTERED_SCORE = -1e38
# Fallback priorities: category candidates rank first, global popularity after all of them.
_GLOBAL_PRIORITY = 1 << 40


class UnknownEventTypeError(ValueError):
    """Events carry an event type that has no configured weight."""


def build_interactions(
    events: pd.DataFrame,
    weights: dict[str, float],
    *,
    as_of: pd.Timestamp | None = None,
    half_life_days: float | None = None,
    saturation: float | None = None,
) -> pd.DataFrame:
    """Sum per-event weights into one row per (visitor, item): the confidence ALS trains on.

    Optional, both off by default:
    - time decay (`as_of` and `half_life_days` together): each event's weight is multiplied by
      0.5 ** (age_days / half_life_days), age_days = (as_of - event_ts) in days (>= 0), so an
      event one half-life old counts half. Needs events[event_ts]; naive times are taken as UTC.
    - saturation (`saturation` = s > 0): the summed confidence c becomes s * log1p(c / s).
      Concave and increasing: about c while c << s, growing only logarithmically beyond, so a
      visitor's twentieth view of an item adds little over the fifth.

    Returns visitor_id, item_id, interaction_weight (> 0), sorted by visitor then item.
    """
    unknown = sorted(set(events[EVENT_TYPE].unique()) - set(weights))
    if unknown:
        raise UnknownEventTypeError(f"no weight configured for event types {unknown}")
    if saturation is not None and not saturation > 0:
        raise ValueError(f"saturation must be positive, got {saturation}")
    weight = events[EVENT_TYPE].map(weights)
    if as_of is not None or half_life_days is not None:
        weight = weight * _decay_factor(events, as_of, half_life_days)
    weighted = events.assign(**{INTERACTION_WEIGHT: weight})
    summed = weighted.groupby([VISITOR_ID, ITEM_ID], as_index=False, sort=True)[
        INTERACTION_WEIGHT
    ].sum()
    summed = summed[summed[INTERACTION_WEIGHT] > 0].reset_index(drop=True)
    if saturation is not None:
        summed[INTERACTION_WEIGHT] = saturation * np.log1p(summed[INTERACTION_WEIGHT] / saturation)
    return summed


def _decay_factor(
    events: pd.DataFrame, as_of: pd.Timestamp | None, half_life_days: float | None
) -> np.ndarray:
    """0.5 ** (age_days / half_life_days) per event, in (0, 1]; age measured back from as_of."""
    if as_of is None or half_life_days is None:
        raise ValueError("time decay needs both as_of and half_life_days")
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    if EVENT_TS not in events.columns:
        raise ValueError(f"time decay needs the {EVENT_TS} column")
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    age_days = (as_of - pd.to_datetime(events[EVENT_TS], utc=True)).dt.total_seconds() / 86_400
    if (age_days < 0).any():
        # Events after the cut-off mean the caller mixed windows: a silent weight > 1 would hide it.
        raise ValueError(f"events after as_of {as_of}: latest {events[EVENT_TS].max()}")
    return np.power(0.5, age_days.to_numpy() / half_life_days)


@dataclass(frozen=True)
class InteractionMatrix:
    """A visitors x items CSR matrix and the ids its rows and columns stand for (both sorted)."""

    matrix: sp.csr_matrix
    visitor_ids: np.ndarray
    item_ids: np.ndarray


def to_matrix(interactions: pd.DataFrame) -> InteractionMatrix:
    visitor_ids = np.sort(interactions[VISITOR_ID].unique())
    item_ids = np.sort(interactions[ITEM_ID].unique())
    rows = np.searchsorted(visitor_ids, interactions[VISITOR_ID].to_numpy())
    cols = np.searchsorted(item_ids, interactions[ITEM_ID].to_numpy())
    values = interactions[INTERACTION_WEIGHT].to_numpy(dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(visitor_ids), len(item_ids)))
    return InteractionMatrix(matrix=matrix, visitor_ids=visitor_ids, item_ids=item_ids)


def rank_by_popularity(interactions: pd.DataFrame) -> np.ndarray:
    """Item ids by total interaction weight, most popular first (ties by item id)."""
    totals = interactions.groupby(ITEM_ID)[INTERACTION_WEIGHT].sum().reset_index()
    totals = totals.sort_values([INTERACTION_WEIGHT, ITEM_ID], ascending=[False, True])
    return totals[ITEM_ID].to_numpy(dtype=np.int64)


def candidate_pool(popular: np.ndarray, params) -> np.ndarray | None:
    """The item ids lists are drawn from: the first `params.candidate_items` of `popular` (item
    ids, most popular first), or None (every item) when unset."""
    size = params.candidate_items
    return None if size is None else np.asarray(popular[:size], dtype=np.int64)


@dataclass(frozen=True)
class Fallback:
    """Items for lists a model cannot fill, in order of preference.

    popular: item ids, most popular first. category_items: category_id, item_id, pos (0 = the
    category's most popular item). visitor_categories: visitor_id, category_id, cat_rank (0 = the
    visitor's favourite category). Without the two frames, only global popularity is used.
    """

    popular: np.ndarray
    category_items: pd.DataFrame | None = None
    visitor_categories: pd.DataFrame | None = None

    def without(self, items: np.ndarray) -> Fallback:
        """The same fallback with `items` removed (positions close up)."""
        popular = self.popular[~np.isin(self.popular, items)]
        if self.category_items is None:
            return Fallback(popular)
        kept = self.category_items[~self.category_items[ITEM_ID].isin(items)]
        kept = kept.sort_values([CATEGORY_ID, "pos"]).assign(
            pos=lambda f: f.groupby(CATEGORY_ID).cumcount()
        )
        return Fallback(popular, kept, self.visitor_categories)

    def candidates(self, visitor_ids: np.ndarray, depth: int) -> pd.DataFrame:
        """visitor_id, item_id, priority (lower first), score, source; `depth` items per list."""
        top = np.asarray(self.popular[:depth], dtype=np.int64)
        parts = [
            pd.DataFrame(
                {
                    VISITOR_ID: np.repeat(visitor_ids, len(top)),
                    ITEM_ID: np.tile(top, len(visitor_ids)),
                    "priority": np.tile(_GLOBAL_PRIORITY + np.arange(len(top)), len(visitor_ids)),
                    SCORE: np.tile(1.0 / np.arange(1, len(top) + 1), len(visitor_ids)),
                    SOURCE: "popular",
                }
            )
        ]
        if self.category_items is not None and self.visitor_categories is not None:
            mine = self.visitor_categories[self.visitor_categories[VISITOR_ID].isin(visitor_ids)]
            items = self.category_items[self.category_items["pos"] < depth]
            by_category = mine.merge(items, on=CATEGORY_ID)
            parts.insert(
                0,
                pd.DataFrame(
                    {
                        VISITOR_ID: by_category[VISITOR_ID].to_numpy(),
                        ITEM_ID: by_category[ITEM_ID].to_numpy(),
                        "priority": (
                            by_category["cat_rank"] * depth + by_category["pos"]
                        ).to_numpy(),
                        SCORE: 1.0 / (by_category["pos"].to_numpy() + 1.0),
                        SOURCE: "category_popular",
                    }
                ),
            )
        return pd.concat(parts, ignore_index=True)


def build_fallback(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    weights: dict[str, float],
    as_of: pd.Timestamp,
    half_life_days: float,
    top_categories: int,
    depth: int,
) -> Fallback:
    """A Fallback from events up to `as_of` and the catalog snapshot.

    Item popularity is the sum of event weights decayed by age (halved every `half_life_days`),
    so last week's hits outrank last spring's. A visitor's top categories are the
    `top_categories` categories of the items they interacted with most (undecayed weights).
    events: visitor_id, item_id, event_type, event_ts (UTC); catalog: item_id, category_id.
    """
    if half_life_days <= 0 or top_categories < 0 or depth <= 0:
        raise ValueError("half_life_days and depth must be positive, top_categories >= 0")
    age_days = (as_of - pd.to_datetime(events[EVENT_TS], utc=True)).dt.total_seconds() / 86_400
    weight = events[EVENT_TYPE].map(weights).to_numpy() * np.power(0.5, age_days / half_life_days)
    decayed = pd.DataFrame({ITEM_ID: events[ITEM_ID].to_numpy(), "w": weight})
    totals = decayed.groupby(ITEM_ID, as_index=False)["w"].sum()
    totals = totals.sort_values(["w", ITEM_ID], ascending=[False, True])
    categories = catalog[[ITEM_ID, CATEGORY_ID]].dropna().astype({CATEGORY_ID: np.int64})
    ranked = totals.merge(categories, on=ITEM_ID).sort_values(
        [CATEGORY_ID, "w", ITEM_ID], ascending=[True, False, True]
    )
    ranked["pos"] = ranked.groupby(CATEGORY_ID).cumcount()
    category_items = ranked.loc[ranked["pos"] < depth, [CATEGORY_ID, ITEM_ID, "pos"]]
    liked = build_interactions(events, weights).merge(categories, on=ITEM_ID)
    liked = liked.groupby([VISITOR_ID, CATEGORY_ID], as_index=False)[INTERACTION_WEIGHT].sum()
    liked = liked.sort_values(
        [VISITOR_ID, INTERACTION_WEIGHT, CATEGORY_ID], ascending=[True, False, True]
    )
    liked["cat_rank"] = liked.groupby(VISITOR_ID).cumcount()
    visitor_categories = liked.loc[
        liked["cat_rank"] < top_categories, [VISITOR_ID, CATEGORY_ID, "cat_rank"]
    ]
    return Fallback(
        totals[ITEM_ID].to_numpy(dtype=np.int64),
        category_items.reset_index(drop=True),
        visitor_categories.reset_index(drop=True),
    )


def fill_lists(
    listed: pd.DataFrame,
    visitor_ids: np.ndarray,
    n: int,
    fallback: Fallback,
    exclude: pd.DataFrame | None,
    unavailable: np.ndarray | None,
) -> pd.DataFrame:
    """Top up each visitor's list in `listed` to `n` rows from `fallback`, skipping duplicates,
    excluded and unavailable items. Returns all lists, sorted by visitor and rank."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    counts = listed.groupby(VISITOR_ID).size().reindex(visitor_ids, fill_value=0)
    short = counts[counts < n].index.to_numpy()
    if len(short) == 0:
        return sort_lists(listed, VISITOR_ID)
    skip = [listed.loc[listed[VISITOR_ID].isin(short), [VISITOR_ID, ITEM_ID]]]
    if exclude is not None and not exclude.empty:
        skip.append(exclude.loc[exclude[VISITOR_ID].isin(short), [VISITOR_ID, ITEM_ID]])
    skip = pd.concat(skip, ignore_index=True).drop_duplicates()
    if unavailable is not None and len(unavailable):
        fallback = fallback.without(unavailable)
    # A visitor's fill is the same from any candidate depth of at least n + their own skips, so
    # visitors are asked in tiers of depth n, 2n, 4n, ...: the candidates grow with what each
    # visitor skips, not with the batch's heaviest buyer.
    skipped = skip.groupby(VISITOR_ID).size().reindex(short, fill_value=0).to_numpy()
    tiers = np.ceil(np.log2((n + skipped) / n)).astype(np.int64)
    fill = [
        _fill_rows(fallback, short[tiers == tier], n * 2**tier, n, skip, counts)
        for tier in np.unique(tiers)
    ]
    return sort_lists(pd.concat([listed, *fill]), VISITOR_ID)


def _fill_rows(
    fallback: Fallback,
    visitor_ids: np.ndarray,
    depth: int,
    n: int,
    skip: pd.DataFrame,
    counts: pd.Series,
) -> pd.DataFrame:
    """The fallback's rows topping up `visitor_ids`' lists to `n`, from `depth` candidates each,
    without the (visitor_id, item_id) pairs in `skip`; counts: rows each list already has."""
    cand = fallback.candidates(visitor_ids, depth)
    mine = skip[skip[VISITOR_ID].isin(visitor_ids)]
    cand = cand.merge(mine.assign(_skip=True), on=[VISITOR_ID, ITEM_ID], how="left")
    cand = cand[cand["_skip"].isna()].sort_values([VISITOR_ID, "priority"], kind="stable")
    cand = cand.drop_duplicates([VISITOR_ID, ITEM_ID])
    cand[RANK] = cand.groupby(VISITOR_ID).cumcount() + 1 + cand[VISITOR_ID].map(counts)
    return cand.loc[cand[RANK] <= n, REC_COLUMNS]


def sort_lists(lists: pd.DataFrame, key: str) -> pd.DataFrame:
    """`lists` sorted by `key`, then rank, with a fresh index; a frame already in that order
    (the model's own lists are built that way) is not sorted again."""
    keys, ranks = lists[key].to_numpy(), lists[RANK].to_numpy()
    before, after = keys[:-1], keys[1:]
    if np.all((after > before) | ((after == before) & (ranks[1:] > ranks[:-1]))):
        return lists.reset_index(drop=True)
    return lists.sort_values([key, RANK]).reset_index(drop=True)


class PopularityRecommender:
    """The baseline: the same most-popular list for everyone, minus what each visitor excludes."""

    name = "popular"

    def __init__(self, popular_items: np.ndarray):
        self.popular_items = np.asarray(popular_items, dtype=np.int64)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        fallback = fallback or Fallback(self.popular_items)
        return fill_lists(_empty_lists(), visitors, n, fallback, exclude, unavailable)


class AlsRecommender:
    """implicit's ALS with its id mappings and a popularity fallback, saved as plain files."""

    name = "als"

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
        known = _index_of(self.visitor_ids, visitor_ids) >= 0
        warm = visitor_ids[known]
        rows = _index_of(self.visitor_ids, warm)
        ids, scores = self._ranked(
            rows, n, _exclusion_matrix(exclude, warm, self.item_ids), unavailable
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
        rows = _index_of(self.visitor_ids, np.unique(np.asarray(visitor_ids, dtype=np.int64)))
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
        rows = _index_of(self.item_ids, item_ids)
        known = item_ids[rows >= 0]
        als = _empty_lists()
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
        own_category = item_categories.loc[
            item_categories[ITEM_ID].isin(item_ids), [ITEM_ID, CATEGORY_ID]
        ].dropna()
        by_item = Fallback(
            fallback.popular,
            fallback.category_items,
            pd.DataFrame(
                {
                    VISITOR_ID: own_category[ITEM_ID].to_numpy(dtype=np.int64),
                    CATEGORY_ID: own_category[CATEGORY_ID].to_numpy(dtype=np.int64),
                    "cat_rank": 0,
                }
            ),
        )
        itself = pd.DataFrame({VISITOR_ID: item_ids, ITEM_ID: item_ids})
        lists = fill_lists(als, item_ids, m, by_item, itself, unavailable)
        return lists.rename(columns={ITEM_ID: SIMILAR_ITEM_ID}).rename(
            columns={VISITOR_ID: ITEM_ID}
        )[[ITEM_ID, RANK, SIMILAR_ITEM_ID, SCORE, SOURCE]]

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
        idx = _index_of(self.item_ids, np.asarray(item_ids, dtype=np.int64))
        return idx[idx >= 0]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / "als.npz"))
        np.save(directory / "visitor_ids.npy", self.visitor_ids)
        np.save(directory / "item_ids.npy", self.item_ids)
        np.save(directory / "popular_items.npy", self.popular_items)
        if self.candidates is not None:
            np.save(directory / "candidates.npy", self.item_ids[self.candidates])
        (directory / "meta.json").write_text(
            json.dumps(
                {
                    "factors": int(self.model.factors),
                    "visitors": len(self.visitor_ids),
                    "items": len(self.item_ids),
                    "candidates": None if self.candidates is None else len(self.candidates),
                }
            )
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


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: input a frame with `visitor_id`; output top-`n` lists (params {"n": 10})."""

    def load_context(self, context):
        self.recommender = AlsRecommender.load(Path(context.artifacts["recommender"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        n = int((params or {}).get("n", 10))
        return self.recommender.recommend(model_input[VISITOR_ID].to_numpy(), n)


def _index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in `sorted_ids`, -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


def _exclusion_matrix(
    exclude: pd.DataFrame | None, visitors: np.ndarray, item_ids: np.ndarray
) -> sp.csr_matrix:
    """Rows aligned with `visitors`, a 1 where that visitor's item must not be recommended."""
    shape = (len(visitors), len(item_ids))
    if exclude is None or exclude.empty:
        return sp.csr_matrix(shape, dtype=np.float32)
    rows = _index_of(visitors, exclude[VISITOR_ID].to_numpy(dtype=np.int64))
    cols = _index_of(item_ids, exclude[ITEM_ID].to_numpy(dtype=np.int64))
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _empty_lists() -> pd.DataFrame:
    return pd.DataFrame(
        {
            VISITOR_ID: pd.Series(dtype=np.int64),
            RANK: pd.Series(dtype=np.int64),
            ITEM_ID: pd.Series(dtype=np.int64),
            SCORE: pd.Series(dtype=np.float64),
            SOURCE: pd.Series(dtype=object),
        }
    )
