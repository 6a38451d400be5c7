"""What every recommender shares: the Recommender protocol, the list columns, and the Fallback
that tops up lists a model cannot fill (popular items in the visitor's top categories, then
popular items overall), so evaluation and export see the same lists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.infra.schemas import (
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
from jobs.recommenders.interactions import build_interactions

REC_COLUMNS = [VISITOR_ID, RANK, ITEM_ID, SCORE, SOURCE]


SIMILAR_ITEM_ID = "similar_item_id"


# Fallback priorities: category candidates rank first, global popularity after all of them.
_GLOBAL_PRIORITY = 1 << 40


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
        gone = self.category_items[ITEM_ID].isin(items).to_numpy()
        if not gone.any() and len(popular) == len(self.popular):
            return self  # already without them (the export removes them once, up front)
        kept = self.category_items[~gone]
        kept = kept.sort_values([CATEGORY_ID, "pos"]).assign(
            pos=lambda f: f.groupby(CATEGORY_ID).cumcount()
        )
        return Fallback(popular, kept, self.visitor_categories)

    @cached_property
    def one_slot_per_item(self) -> bool:
        """True when an item can stand at one place only in a visitor's candidates: popular items
        unique, each item in one category (a visitor's category named twice counts once, at its
        better rank). Catalog snapshots give one category per item, so build_fallback's
        fallbacks always are. Cached: the export asks once per batch of the same fallback."""
        if len(np.unique(self.popular)) != len(self.popular):
            return False
        if self.category_items is None or self.visitor_categories is None:
            return True
        return (
            self.category_items[ITEM_ID].is_unique
            and not self.category_items.duplicated([CATEGORY_ID, "pos"]).any()
        )

    @cached_property
    def _sorted_visitors(self) -> np.ndarray | None:
        keys = self.visitor_categories[VISITOR_ID].to_numpy()
        return keys if np.all(keys[1:] >= keys[:-1]) else None

    def categories_of(self, visitor_ids: np.ndarray) -> pd.DataFrame:
        """visitor_categories' rows for `visitor_ids` (sorted). Where the frame is sorted by
        visitor, as build_fallback's is, only the batch's range is searched: a batch then costs
        the same whatever the number of visitors in the shop."""
        frame, keys = self.visitor_categories, self._sorted_visitors
        if keys is not None:
            frame = frame.iloc[visitor_range(keys, visitor_ids)]
        return frame[frame[VISITOR_ID].isin(visitor_ids)]

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
            mine = self.categories_of(np.sort(np.asarray(visitor_ids, dtype=np.int64)))
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


class Recommender(Protocol):
    """Every model: `name` (the `source` its own rows carry) and `recommend`.

    recommend(visitor_ids, n, exclude, unavailable, fallback) returns ``visitor_id, rank, item_id,
    score, source``: `n` rows per visitor (rank 1 best) while enough items exist, never an item
    `exclude` lists for that visitor nor one in `unavailable`; lists the model cannot fill are
    topped up from `fallback` (default: the model's own popularity). Visitors are unique'd.
    """

    name: str

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame: ...


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
    fill_rows = _fill_rows_by_position if fallback.one_slot_per_item else _fill_rows
    fill = [
        fill_rows(fallback, short[tiers == tier], n * 2**tier, n, skip, counts)
        for tier in np.unique(tiers)
    ]
    lists = pd.concat([sort_lists(listed, VISITOR_ID), *fill], ignore_index=True)
    # Each tier's rows come by visitor and rank, a visitor's fill from one tier and ranked after
    # their own rows: a stable order by visitor alone is the order by visitor, then rank (which
    # sort_lists checks, and only sorts again if a model's ranks had gaps).
    order = np.argsort(lists[VISITOR_ID].to_numpy(), kind="stable")
    return sort_lists(lists.take(order), VISITOR_ID)


# Candidate cells per block of visitors in _fill_rows_by_position (8 bytes each).
_CELLS_PER_BLOCK = 4_000_000


def _fill_rows_by_position(
    fallback: Fallback,
    visitor_ids: np.ndarray,
    depth: int,
    n: int,
    skip: pd.DataFrame,
    counts: pd.Series,
) -> pd.DataFrame:
    """`_fill_rows` for a fallback where each item has one slot (`one_slot_per_item`): each
    visitor's candidates laid out in one row of slots, `depth` per favourite category in
    cat_rank order, then `depth` popular ones, so a skipped or repeated item is found by
    arithmetic on its category position and popularity rank instead of joins and sorts."""
    visitor_ids = np.sort(np.asarray(visitor_ids, dtype=np.int64))
    popular = np.asarray(fallback.popular[:depth], dtype=np.int64)
    blocks, table, cat_of_item, pos_of_item, items_sorted = 0, None, None, None, None
    rows_cats = np.empty((len(visitor_ids), 0), dtype=np.int64)
    if fallback.category_items is not None and fallback.visitor_categories is not None:
        items = fallback.category_items[fallback.category_items["pos"] < depth]
        categories = np.unique(items[CATEGORY_ID].to_numpy(dtype=np.int64))
        # One row per category (the last one empty: "no category"), its items by position.
        table = np.full((len(categories) + 1, depth), -1, dtype=np.int64)
        cat_row = np.searchsorted(categories, items[CATEGORY_ID].to_numpy(dtype=np.int64))
        pos = items["pos"].to_numpy(dtype=np.int64)
        table[cat_row, pos] = items[ITEM_ID].to_numpy(dtype=np.int64)
        order = np.argsort(items[ITEM_ID].to_numpy(dtype=np.int64))
        items_sorted = items[ITEM_ID].to_numpy(dtype=np.int64)[order]
        cat_of_item, pos_of_item = cat_row[order], pos[order]
        mine = fallback.categories_of(visitor_ids).sort_values("cat_rank", kind="stable")
        if mine.duplicated([VISITOR_ID, "cat_rank"]).any():
            # Two categories at one rank have no slot order of their own.
            return _fill_rows(fallback, visitor_ids, depth, n, skip, counts)
        mine = mine.drop_duplicates([VISITOR_ID, CATEGORY_ID])
        mine_cats = mine[CATEGORY_ID].to_numpy(dtype=np.int64)
        known = index_of(categories, mine_cats) >= 0
        mine, mine_cats = mine[known], mine_cats[known]
        blocks = int(mine["cat_rank"].max()) + 1 if len(mine) else 0
        rows_cats = np.full((len(visitor_ids), blocks), len(categories), dtype=np.int64)
        rows_cats[
            np.searchsorted(visitor_ids, mine[VISITOR_ID].to_numpy(dtype=np.int64)),
            mine["cat_rank"].to_numpy(dtype=np.int64),
        ] = np.searchsorted(categories, mine_cats)
    width = (blocks + 1) * depth
    need = n - counts.reindex(visitor_ids).to_numpy(dtype=np.int64)
    mine_skip = skip[skip[VISITOR_ID].isin(visitor_ids)]
    skip_rows = np.searchsorted(visitor_ids, mine_skip[VISITOR_ID].to_numpy(dtype=np.int64))
    skip_items = mine_skip[ITEM_ID].to_numpy(dtype=np.int64)
    popular_order = np.argsort(popular)
    parts = []
    step = max(1, _CELLS_PER_BLOCK // width)
    for start in range(0, len(visitor_ids), step):
        rows = slice(start, start + step)
        cats = rows_cats[rows]
        slots = np.empty((len(cats), width), dtype=np.int64)
        for block in range(blocks):
            slots[:, block * depth : (block + 1) * depth] = table[cats[:, block]]
        slots[:, blocks * depth : blocks * depth + len(popular)] = popular
        slots[:, blocks * depth + len(popular) :] = -1
        free = slots >= 0
        # A popular item already among the visitor's categories' candidates is a repeat.
        if blocks and len(popular):
            at = index_of(items_sorted, popular[popular_order])
            cat_pop = np.full(len(popular), -1, dtype=np.int64)
            cat_pop[popular_order[at >= 0]] = cat_of_item[at[at >= 0]]
            repeat = (cats[:, :, None] == cat_pop[None, None, :]).any(axis=1)
            free[:, blocks * depth : blocks * depth + len(popular)] &= ~repeat
        # Each skipped pair closes the slots its item holds in that visitor's row.
        in_rows = (skip_rows >= start) & (skip_rows < start + len(cats))
        r, item = skip_rows[in_rows] - start, skip_items[in_rows]
        rank = index_of(popular[popular_order], item)
        hit = rank >= 0
        free[r[hit], blocks * depth + popular_order[rank[hit]]] = False
        if blocks:
            at = index_of(items_sorted, item)
            r, at = r[at >= 0], at[at >= 0]
            for block in range(blocks):
                same = cats[r, block] == cat_of_item[at]
                free[r[same], block * depth + pos_of_item[at[same]]] = False
        taken = np.cumsum(free, axis=1)
        keep = free & (taken <= need[rows, None])
        row, col = np.nonzero(keep)
        in_category = col < blocks * depth
        place = np.where(in_category, col % depth, col - blocks * depth)
        parts.append(
            pd.DataFrame(
                {
                    VISITOR_ID: visitor_ids[rows][row],
                    RANK: (n - need[rows][row]) + taken[row, col],
                    ITEM_ID: slots[row, col],
                    SCORE: 1.0 / (place + 1.0),
                    SOURCE: np.where(in_category, "category_popular", "popular"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else empty_lists()


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


def visitor_range(sorted_keys: np.ndarray, visitor_ids: np.ndarray) -> slice:
    """The rows of `sorted_keys` from the first to the last of `visitor_ids` (sorted): a batch
    searches only its own range, whatever the number of visitors in the shop."""
    if len(visitor_ids) == 0:
        return slice(0, 0)
    lo = np.searchsorted(sorted_keys, visitor_ids[0], side="left")
    return slice(lo, np.searchsorted(sorted_keys, visitor_ids[-1], side="right"))


def index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in `sorted_ids`, -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


def exclusion_matrix(
    exclude: pd.DataFrame | None, visitors: np.ndarray, item_ids: np.ndarray
) -> sp.csr_matrix:
    """Rows aligned with `visitors`, a 1 where that visitor's item must not be recommended."""
    shape = (len(visitors), len(item_ids))
    if exclude is None or exclude.empty:
        return sp.csr_matrix(shape, dtype=np.float32)
    rows = index_of(visitors, exclude[VISITOR_ID].to_numpy(dtype=np.int64))
    cols = index_of(item_ids, exclude[ITEM_ID].to_numpy(dtype=np.int64))
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def empty_lists() -> pd.DataFrame:
    return pd.DataFrame(
        {
            VISITOR_ID: pd.Series(dtype=np.int64),
            RANK: pd.Series(dtype=np.int64),
            ITEM_ID: pd.Series(dtype=np.int64),
            SCORE: pd.Series(dtype=np.float64),
            SOURCE: pd.Series(dtype=object),
        }
    )


def fill_similar(
    own: pd.DataFrame,
    item_ids: np.ndarray,
    m: int,
    fallback: Fallback,
    item_categories: pd.DataFrame,
    unavailable: np.ndarray | None,
) -> pd.DataFrame:
    """Similar-item lists: the model's `own` rows (visitor_id standing for the item) topped up
    to `m` with the most popular items of the item's own category, then overall; never the item
    itself nor an unavailable item. Returns item_id, rank, similar_item_id, score, source."""
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
    lists = fill_lists(own, item_ids, m, by_item, itself, unavailable)
    return lists.rename(columns={ITEM_ID: SIMILAR_ITEM_ID}).rename(columns={VISITOR_ID: ITEM_ID})[
        [ITEM_ID, RANK, SIMILAR_ITEM_ID, SCORE, SOURCE]
    ]


META_FILE = "meta.json"


def write_meta(directory: Path, family: str, **facts) -> None:
    """The saved model's family (how to load it back) and facts about it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_FILE).write_text(json.dumps({"family": family, **facts}, default=int))


def read_family(directory: Path) -> str:
    """The family a saved model belongs to; models saved before families existed are ALS."""
    return json.loads((Path(directory) / META_FILE).read_text()).get("family", "als")
