"""The interaction matrix models train on: weighted (visitor, item) confidences, popularity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.infra.schemas import (
    EVENT_TS,
    EVENT_TYPE,
    INTERACTION_WEIGHT,
    ITEM_ID,
    VISITOR_ID,
)


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

    def save(self, directory: Path) -> None:
        sp.save_npz(directory / "history.npz", self.matrix)
        np.save(directory / "visitor_ids.npy", self.visitor_ids)
        np.save(directory / "item_ids.npy", self.item_ids)

    @classmethod
    def load(cls, directory: Path) -> InteractionMatrix:
        return cls(
            sp.load_npz(directory / "history.npz").tocsr(),
            np.load(directory / "visitor_ids.npy"),
            np.load(directory / "item_ids.npy"),
        )


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
    ids, most popular first), or None (every item) when unset or when there are at most
    `params.rank_every_item_below` items."""
    size, every_below = params.candidate_items, params.rank_every_item_below
    if size is None or (every_below is not None and len(popular) <= every_below):
        return None
    return np.asarray(popular[:size], dtype=np.int64)
