"""Recommenders behind one interface, the interaction matrix, and the MLflow pyfunc wrapper.

Every model answers ``recommend(visitor_ids, n, exclude, unavailable)`` with a frame of
``visitor_id, rank, item_id, score, source``: at most `n` rows per visitor (rank 1 is best), never
an item in `exclude` for that visitor nor in `unavailable`. Lists the model cannot fill are topped
up from global popularity (`source = "popular"`), so evaluation and export see the same lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.core.schemas import (
    EVENT_TYPE,
    INTERACTION_WEIGHT,
    ITEM_ID,
    RANK,
    SCORE,
    SOURCE,
    VISITOR_ID,
)

REC_COLUMNS = [VISITOR_ID, RANK, ITEM_ID, SCORE, SOURCE]
# implicit marks filtered items with -FLT_MAX.
_FILTERED_SCORE = -1e38


class UnknownEventTypeError(ValueError):
    """Events carry an event type that has no configured weight."""


def build_interactions(events: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Sum per-event weights into one row per (visitor, item): the confidence ALS trains on.

    Returns visitor_id, item_id, interaction_weight (> 0), sorted by visitor then item.
    """
    unknown = sorted(set(events[EVENT_TYPE].unique()) - set(weights))
    if unknown:
        raise UnknownEventTypeError(f"no weight configured for event types {unknown}")
    weighted = events.assign(**{INTERACTION_WEIGHT: events[EVENT_TYPE].map(weights)})
    summed = weighted.groupby([VISITOR_ID, ITEM_ID], as_index=False, sort=True)[
        INTERACTION_WEIGHT
    ].sum()
    return summed[summed[INTERACTION_WEIGHT] > 0].reset_index(drop=True)


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
    ) -> pd.DataFrame:
        return _popular_lists(self.popular_items, np.asarray(visitor_ids), n, exclude, unavailable)


class AlsRecommender:
    """implicit's ALS with its id mappings and a popularity fallback, saved as plain files."""

    name = "als"

    def __init__(
        self, model, visitor_ids: np.ndarray, item_ids: np.ndarray, popular_items: np.ndarray
    ):
        self.model = model
        self.visitor_ids = np.asarray(visitor_ids, dtype=np.int64)
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.popular_items = np.asarray(popular_items, dtype=np.int64)

    def recommend(
        self,
        visitor_ids: np.ndarray,
        n: int,
        exclude: pd.DataFrame | None = None,
        unavailable: np.ndarray | None = None,
    ) -> pd.DataFrame:
        visitor_ids = np.unique(np.asarray(visitor_ids, dtype=np.int64))
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        known = _index_of(self.visitor_ids, visitor_ids) >= 0
        warm = visitor_ids[known]
        rows = _index_of(self.visitor_ids, warm)
        excluded = _exclusion_matrix(exclude, warm, self.item_ids)
        filter_items = None
        if unavailable is not None and len(unavailable):
            idx = _index_of(self.item_ids, np.asarray(unavailable, dtype=np.int64))
            filter_items = idx[idx >= 0]
        n_model = min(n, len(self.item_ids))
        ids, scores = self.model.recommend(
            rows, excluded, N=n_model, filter_already_liked_items=True, filter_items=filter_items
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
        # Top up short and cold lists from popularity, skipping what is already listed.
        counts = als.groupby(VISITOR_ID).size().reindex(visitor_ids, fill_value=0)
        short = counts[counts < n].index.to_numpy()
        if len(short) == 0:
            return als.sort_values([VISITOR_ID, RANK]).reset_index(drop=True)
        listed = als.loc[als[VISITOR_ID].isin(short), [VISITOR_ID, ITEM_ID]]
        skip = listed if exclude is None else pd.concat([exclude[[VISITOR_ID, ITEM_ID]], listed])
        fill = _popular_lists(self.popular_items, short, n, skip, unavailable)
        fill[RANK] += fill[VISITOR_ID].map(counts).to_numpy()
        fill = fill[fill[RANK] <= n]
        return pd.concat([als, fill]).sort_values([VISITOR_ID, RANK]).reset_index(drop=True)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / "als.npz"))
        np.save(directory / "visitor_ids.npy", self.visitor_ids)
        np.save(directory / "item_ids.npy", self.item_ids)
        np.save(directory / "popular_items.npy", self.popular_items)
        (directory / "meta.json").write_text(
            json.dumps(
                {
                    "factors": int(self.model.factors),
                    "visitors": len(self.visitor_ids),
                    "items": len(self.item_ids),
                }
            )
        )

    @classmethod
    def load(cls, directory: Path) -> AlsRecommender:
        from implicit.cpu.als import AlternatingLeastSquares

        directory = Path(directory)
        return cls(
            AlternatingLeastSquares.load(str(directory / "als.npz")),
            np.load(directory / "visitor_ids.npy"),
            np.load(directory / "item_ids.npy"),
            np.load(directory / "popular_items.npy"),
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


def _popular_lists(
    popular: np.ndarray,
    visitor_ids: np.ndarray,
    n: int,
    exclude: pd.DataFrame | None,
    unavailable: np.ndarray | None,
) -> pd.DataFrame:
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    candidates = popular
    if unavailable is not None and len(unavailable):
        candidates = candidates[~np.isin(candidates, unavailable)]
    max_skip = (
        0 if exclude is None or exclude.empty else int(exclude.groupby(VISITOR_ID).size().max())
    )
    candidates = candidates[: n + max_skip]
    grid = pd.DataFrame(
        {
            VISITOR_ID: np.repeat(visitor_ids, len(candidates)),
            ITEM_ID: np.tile(candidates, len(visitor_ids)),
            # Popular items score 1/position in the popularity ranking, in (0, 1].
            SCORE: np.tile(1.0 / np.arange(1, len(candidates) + 1), len(visitor_ids)),
        }
    )
    if max_skip:
        skip = exclude[[VISITOR_ID, ITEM_ID]].drop_duplicates().assign(_skip=True)
        grid = grid.merge(skip, on=[VISITOR_ID, ITEM_ID], how="left")
        grid = grid[grid["_skip"].isna()].drop(columns="_skip")
    grid[RANK] = grid.groupby(VISITOR_ID).cumcount() + 1
    grid = grid[grid[RANK] <= n]
    grid[SOURCE] = "popular"
    return grid[REC_COLUMNS].reset_index(drop=True)
