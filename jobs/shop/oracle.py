"""The oracle: lists ranked by the synthetic shop's own preference model, the best achievable.

On a shop from jobs/shop/generate.py the law of a visitor's next fresh view is known
(ground_truth/preference_model.json). With E = explore_share, p_i an item's popularity, g_i its
category at launch, s_i its style, and the visitor's interests (c, w_c) and style mix m_v:

    P(i | v) = E * p_i / sum_j p_j
             + (1 - E) * w_{g_i} * m_v[s_i] * p_i / sum_{j: g_j = g_i} m_v[s_j] * p_j

(w_c = 0 outside the visitor's interests; repeated rows add up; weights sum to 1 per visitor). Views
only fall on launched items, so at a cutoff the law is P(i | v) restricted to the items launched
before it and divided by their total. Stock does not change views, so out-of-stock items keep
their probability; `unavailable` only keeps them off the lists. Revisits (a share of views
re-opening an item seen before) are outside this law, so the oracle is the best ranking of the
fresh views, not of re-views. NDCG@10 of a model over the oracle's reads as a share of the best.

Only a visitor's 1-3 interest categories lift an item above E * p_i / sum_j p_j, so a top-n is
the best of: the global popularity list, and each (category, style) block of the visitor's
interests, each cut to n + the visitor's exclusions. No visitors x items matrix is built.

    oracle = OracleRecommender.from_ground_truth(Path("data/raw"), as_of=cutoff)
    lists = oracle.recommend(visitor_ids, 10, exclude=bought)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.infra.schemas import CATEGORY_ID, ITEM_ID, RANK, SCORE, SOURCE, VISITOR_ID
from jobs.recommenders.base import Fallback, empty_lists, fill_lists, index_of

STYLE, POPULARITY, WEIGHT, LAUNCH_TS = "style", "popularity", "weight", "launch_ts"
GROUND_TRUTH_FILES = (
    "model_items.csv",
    "model_visitors.csv",
    "model_interests.csv",
    "preference_model.json",
)


# Visitors ranked per batch: candidates are about 13 * (n + exclusions) rows per visitor.
_BATCH_VISITORS = 2_048


class GroundTruthError(ValueError):
    """The generator's ground truth is missing or inconsistent."""


class UnknownVisitorsError(ValueError):
    """None of the requested visitors is in the ground truth (pseudonymized ids, or no shop)."""


class OracleRecommender:
    """Ranks items by the generator's P(next fresh view = item | visitor); score is that P.

    items: item_id, category_id (at launch), style (in [0, n styles)), popularity (> 0), and
    launch_ts (UTC) when `as_of` is given. visitors: visitor_id and one column per style,
    style_0, style_1, ... (the style mix, >= 0). interests: visitor_id, category_id, weight
    (> 0). explore_share in [0, 1]. as_of: keep only items launched strictly before it (the
    catalog a recommender trained up to that instant can know); None keeps every item.
    """

    name = "oracle"

    def __init__(
        self,
        items: pd.DataFrame,
        visitors: pd.DataFrame,
        interests: pd.DataFrame,
        explore_share: float,
        as_of: pd.Timestamp | None = None,
    ):
        if not 0.0 <= explore_share <= 1.0:
            raise GroundTruthError(f"explore_share must be in [0, 1], got {explore_share}")
        style_columns = [c for c in visitors.columns if c != VISITOR_ID]
        if style_columns != [f"style_{s}" for s in range(len(style_columns))] or not len(
            style_columns
        ):
            raise GroundTruthError(
                f"visitor columns must be style_0, style_1, ...: {style_columns}"
            )
        n_styles = len(style_columns)
        _require(items, [ITEM_ID, CATEGORY_ID, STYLE, POPULARITY], "items")
        _require(interests, [VISITOR_ID, CATEGORY_ID, WEIGHT], "interests")
        if items.empty or items[ITEM_ID].duplicated().any():
            raise GroundTruthError("items must be non-empty with one row per item_id")
        style = items[STYLE].to_numpy(dtype=np.int64)
        popularity = items[POPULARITY].to_numpy(dtype=np.float64)
        if ((style < 0) | (style >= n_styles)).any() or not (popularity > 0).all():
            raise GroundTruthError(f"item styles must be in [0, {n_styles}), popularity > 0")

        categories, group = np.unique(
            items[CATEGORY_ID].to_numpy(dtype=np.int64), return_inverse=True
        )
        launched = np.ones(len(items), dtype=bool)
        if as_of is not None:
            _require(items, [LAUNCH_TS], "items (as_of is given)")
            launched = (pd.to_datetime(items[LAUNCH_TS], utc=True) < _utc(as_of)).to_numpy()
            if not launched.any():
                raise GroundTruthError(f"no item was launched before {as_of}")

        # Items by block (category, style), most popular first: a block's top-k is one slice.
        block = group * n_styles + style
        order = np.lexsort((items[ITEM_ID].to_numpy(), -popularity, block))
        self.n_styles = n_styles
        self.explore_share = float(explore_share)
        self.categories = categories
        self.item_ids = items[ITEM_ID].to_numpy(dtype=np.int64)[order]
        self.popularity = popularity[order]
        self.group = group[order]
        self.block = block[order]
        self.launched = launched[order]
        n_blocks = len(categories) * n_styles
        self.block_mass = np.bincount(self.block, self.popularity, n_blocks).reshape(-1, n_styles)
        self.launched_mass = np.bincount(
            self.block, self.popularity * self.launched, n_blocks
        ).reshape(-1, n_styles)
        self.total_mass = float(self.popularity.sum())
        self.by_popularity = np.lexsort((self.item_ids, -self.popularity))  # positions
        self._by_id = np.argsort(self.item_ids)

        visitors = visitors.sort_values(VISITOR_ID)
        self.visitor_ids = visitors[VISITOR_ID].to_numpy(dtype=np.int64)
        if (np.diff(self.visitor_ids) == 0).any():
            raise GroundTruthError("visitors must have one row per visitor_id")
        self.style_mix = visitors[style_columns].to_numpy(dtype=np.float64)
        if (self.style_mix < 0).any():
            raise GroundTruthError("style mixes must be >= 0")

        # One interest per (visitor, category): the law adds up the weights of repeated rows.
        owner = index_of(self.visitor_ids, interests[VISITOR_ID].to_numpy(dtype=np.int64))
        interest_group = index_of(categories, interests[CATEGORY_ID].to_numpy(dtype=np.int64))
        weight = interests[WEIGHT].to_numpy(dtype=np.float64)
        if (owner < 0).any() or (interest_group < 0).any() or not (weight > 0).all():
            raise GroundTruthError(
                "every interest needs a known visitor, a category with items and a weight > 0"
            )
        key, inverse = np.unique(owner * len(categories) + interest_group, return_inverse=True)
        owner, self.interest_group = key // len(categories), key % len(categories)
        self.interest_ptr = np.searchsorted(owner, np.arange(len(self.visitor_ids) + 1))
        if (np.diff(self.interest_ptr) == 0).any():
            raise GroundTruthError("every visitor needs at least one interest")
        # The generator draws an interest with probability proportional to its weight.
        weight = np.bincount(inverse, weight)
        self.interest_weight = weight / np.add.reduceat(weight, self.interest_ptr[:-1])[owner]

    @classmethod
    def from_ground_truth(
        cls, folder: Path, as_of: pd.Timestamp | None = None
    ) -> OracleRecommender:
        """Load the oracle of a generated shop: `folder` is the generator's --out directory (or
        its ground_truth/ subfolder). With `as_of`, launch times come from the
        item_properties.csv next to ground_truth/ (an item's first row is its launch)."""
        folder = Path(folder)
        truth = folder / "ground_truth" if (folder / "ground_truth").is_dir() else folder
        missing = [name for name in GROUND_TRUTH_FILES if not (truth / name).is_file()]
        if missing:
            raise GroundTruthError(f"{truth} lacks {missing}: not a jobs.shop.generate output")
        spec = json.loads((truth / "preference_model.json").read_text())
        if "explore_share" not in spec:
            raise GroundTruthError(f"{truth / 'preference_model.json'} has no explore_share")
        items = pd.read_csv(truth / "model_items.csv").rename(
            columns={"itemid": ITEM_ID, "categoryid": CATEGORY_ID}
        )
        visitors = pd.read_csv(truth / "model_visitors.csv").rename(
            columns={"visitorid": VISITOR_ID}
        )
        interests = pd.read_csv(truth / "model_interests.csv").rename(
            columns={"visitorid": VISITOR_ID, "categoryid": CATEGORY_ID}
        )
        if as_of is not None:
            properties = truth.parent / "item_properties.csv"
            if not properties.is_file():
                raise GroundTruthError(f"as_of needs launch times from {properties}: missing")
            facts = pd.read_csv(properties, usecols=["timestamp", "itemid"])
            launch = facts.groupby("itemid")["timestamp"].min()
            launch_ms = items[ITEM_ID].map(launch)
            if launch_ms.isna().any():
                raise GroundTruthError(f"{properties} lacks the launch of some model items")
            items[LAUNCH_TS] = pd.to_datetime(
                launch_ms.to_numpy(dtype=np.int64), unit="ms", utc=True
            )
        return cls(items, visitors, interests, float(spec["explore_share"]), as_of)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
        fallback: Fallback | None = None,
    ) -> pd.DataFrame:
        """Top-`n` lists (visitor_id, rank, item_id, score, source) by P(item | visitor), score in
        [0, 1]; ties by popularity then item id. Visitors the ground truth lacks (bots, test
        accounts) get the fallback's lists, by default launched items by popularity."""
        visitors = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        rows = index_of(self.visitor_ids, visitors)
        if len(visitors) and not (rows >= 0).any():
            raise UnknownVisitorsError(
                f"none of the {len(visitors)} requested visitors (e.g. {visitors[:5].tolist()}) is "
                "in the ground truth: were visitor ids pseudonymized, or is it another shop?"
            )
        known, rows = visitors[rows >= 0], rows[rows >= 0]
        allowed = self.launched.copy()
        if unavailable is not None and len(unavailable):
            allowed &= ~np.isin(self.item_ids, np.asarray(unavailable, dtype=np.int64))
        n_items = len(self.item_ids)
        excluded = self._excluded_keys(exclude, known)  # position in known * n_items + item
        depth = n + np.bincount(excluded // n_items, minlength=len(known))
        shelf = _Shelf(
            ranked=self.by_popularity[allowed[self.by_popularity]],
            allowed=np.flatnonzero(allowed),
            block_start=np.searchsorted(self.block[allowed], np.arange(self.block_mass.size + 1)),
            excluded=rows[excluded // n_items] * n_items + excluded % n_items,
        )
        parts = [
            self._rank_batch(
                rows[i : i + _BATCH_VISITORS], depth[i : i + _BATCH_VISITORS], n, shelf
            )
            for i in range(0, len(rows), _BATCH_VISITORS)
        ]
        listed = pd.concat(parts, ignore_index=True) if parts else empty_lists()
        popular = self.item_ids[self.by_popularity[self.launched[self.by_popularity]]]
        return fill_lists(listed, visitors, n, fallback or Fallback(popular), exclude, unavailable)

    def _excluded_keys(self, exclude: pd.DataFrame | None, known: np.ndarray) -> np.ndarray:
        """Distinct excluded pairs of the known visitors as position in known * items + item
        position, sorted (so grouped by visitor)."""
        if exclude is None or exclude.empty or not len(known):
            return np.empty(0, dtype=np.int64)
        who = index_of(known, exclude[VISITOR_ID].to_numpy(dtype=np.int64))
        at = index_of(self.item_ids[self._by_id], exclude[ITEM_ID].to_numpy(dtype=np.int64))
        keep = (who >= 0) & (at >= 0)
        return np.unique(who[keep] * len(self.item_ids) + self._by_id[at[keep]])

    def _rank_batch(
        self, rows: np.ndarray, depth: np.ndarray, n: int, shelf: _Shelf
    ) -> pd.DataFrame:
        """Lists of the visitors at `rows`; depth[k] candidates per source for visitor k."""
        ranked, allowed, block_start = shelf.ranked, shelf.allowed, shelf.block_start
        n_items, n_groups, k_styles = len(self.item_ids), len(self.categories), self.n_styles
        e = self.explore_share
        lo, hi = self.interest_ptr[rows], self.interest_ptr[rows + 1]
        interest = _ranges(lo, hi - lo)
        owner = np.repeat(np.arange(len(rows)), hi - lo)  # position in the batch
        group, weight = self.interest_group[interest], self.interest_weight[interest]
        mix = self.style_mix[rows[owner]]
        # sum over items j of the category of m_v[s_j] * p_j, then the lift of each block
        mass = (mix * self.block_mass[group]).sum(axis=1)
        share = np.divide(weight, mass, out=np.zeros_like(mass), where=mass > 0)
        lift = (1.0 - e) * share[:, None] * mix  # (interests, styles)
        # Rejection of unlaunched draws: divide by the launched share of the visitor's law.
        launched = e * self.launched_mass.sum() / self.total_mass + (1.0 - e) * np.bincount(
            owner, share * (mix * self.launched_mass[group]).sum(axis=1), minlength=len(rows)
        )
        base = e / self.total_mass

        # Candidates from the visitor's blocks, n + exclusions deep each.
        blocks = (group[:, None] * k_styles + np.arange(k_styles)).ravel()
        block_owner = np.repeat(owner, k_styles)
        start = block_start[blocks]
        take = np.minimum(block_start[blocks + 1] - start, depth[block_owner])
        block_pos = allowed[_ranges(start, take)]
        block_who = np.repeat(block_owner, take)
        block_factor = np.repeat((base + lift.ravel()) / launched[block_owner], take)
        # Candidates from the popularity list, minus items of the visitor's categories (their
        # blocks already hold every one of them that can make the list).
        top = np.minimum(depth, len(ranked))
        pop_pos = ranked[_ranges(np.zeros_like(top), top)]
        pop_who = np.repeat(np.arange(len(rows)), top)
        mine = np.isin(pop_who * n_groups + self.group[pop_pos], owner * n_groups + group)
        pop_pos, pop_who = pop_pos[~mine], pop_who[~mine]
        pop_factor = (base / launched)[pop_who]

        who = np.concatenate([block_who, pop_who])
        pos = np.concatenate([block_pos, pop_pos])
        score = self.popularity[pos] * np.concatenate([block_factor, pop_factor])
        keep = ~np.isin(rows[who] * n_items + pos, shelf.excluded)
        who, pos, score = who[keep], pos[keep], score[keep]
        # -popularity breaks score ties as the block and popularity lists do: the cut is exact.
        order = np.lexsort((self.item_ids[pos], -self.popularity[pos], -score, who))
        who, pos, score = who[order], pos[order], score[order]
        rank = np.arange(len(who)) - np.searchsorted(who, who) + 1
        top_n = rank <= n
        return pd.DataFrame(
            {
                VISITOR_ID: self.visitor_ids[rows[who[top_n]]],
                RANK: rank[top_n],
                ITEM_ID: self.item_ids[pos[top_n]],
                SCORE: score[top_n],
                SOURCE: self.name,
            }
        )


@dataclass(frozen=True)
class _Shelf:
    """What one recommend call may list, as item positions (see OracleRecommender)."""

    ranked: np.ndarray  # allowed items, most popular first
    allowed: np.ndarray  # allowed items in block order
    block_start: np.ndarray  # block b is allowed[block_start[b]:block_start[b + 1]]
    excluded: np.ndarray  # visitor row * items + item position, sorted


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GroundTruthError(f"{what} lack columns {missing}")


def _ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenated start[k] .. start[k] + count[k] - 1."""
    count = np.asarray(count, dtype=np.int64)
    offset = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(np.asarray(start, dtype=np.int64), count) + np.arange(count.sum()) - offset


def _utc(moment) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is read as UTC."""
    moment = pd.Timestamp(moment)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
