"""Offline metrics of recommendation lists against held-out interactions (pure pandas/numpy).

Relevance is binary: an item is relevant to a visitor if the visitor interacted with it in the
test window. The frames use the schema's column names:

    recs      visitor_id, rank (1 = best), item_id: one row per list slot
    truth     visitor_id, item_id: test-window interactions (duplicates ignored)
    expected  visitor_id, rank, item_id: an obvious list per visitor (e.g. the popularity
              baseline's), against which serendipity is measured

`ranking_metrics` scores accuracy over the visitors in `truth`; `beyond_accuracy_metrics`
describes the lists themselves with training popularity and catalog categories (an
`ItemContext`); `offline_metrics` does both for the same visitors in one call, and
`metrics_by_segment` repeats that per visitor segment (`segment_visitors`: new / casual / power,
`segment_warm_cold`: warm / cold). `flatten_metrics` turns the nested result into MLflow keys:

    by_segment = metrics_by_segment(recs, truth, (10, 20), segment_visitors(counts, visitors))
    mlflow.log_metrics(flatten_metrics({"segment": by_segment}))  # "segment.power.ndcg_at_10"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobs.infra.schemas import ITEM_ID, RANK, VISITOR_ID

# Activity segments (training interactions per visitor) and history segments.
NEW, CASUAL, POWER = "new", "casual", "power"
WARM, COLD = "warm", "cold"

_EXPECTED_RANK = "expected_rank"


class EmptyEvaluationError(ValueError):
    """There is no visitor with relevant items to evaluate on."""


class MetricInputError(ValueError):
    """Inputs the metrics cannot be computed on: bad ks, duplicated list slots, bad counts."""


@dataclass(frozen=True, eq=False)
class ItemContext:
    """What the beyond-accuracy metrics know about items, from the training window and catalog.

    categories: item_id -> category_id; an item that is missing or NaN has no category.
    popularity: item_id -> distinct training visitors who interacted with it, in [0, n_visitors];
        a missing item has 0.
    n_visitors: distinct training visitors (>= 1), so p(i) = popularity / n_visitors in [0, 1].
    catalog_size: items that could be recommended (>= 1), the denominator of coverage.
    """

    categories: pd.Series
    popularity: pd.Series
    n_visitors: int
    catalog_size: int

    def __post_init__(self) -> None:
        if self.n_visitors < 1 or self.catalog_size < 1:
            raise MetricInputError(
                f"n_visitors ({self.n_visitors}) and catalog_size ({self.catalog_size}) "
                "must be >= 1"
            )
        for name in ("categories", "popularity"):
            if getattr(self, name).index.has_duplicates:
                raise MetricInputError(f"{name} lists an item_id more than once")
        popularity = self.popularity
        if (
            popularity.isna().any()
            or (popularity < 0).any()
            or (popularity > self.n_visitors).any()
        ):
            raise MetricInputError(
                f"popularity must count training visitors, in [0, {self.n_visitors}]"
            )

    @classmethod
    def from_training(
        cls, train: pd.DataFrame, categories: pd.Series, catalog_size: int
    ) -> ItemContext:
        """Popularity and visitor count from training interactions (visitor_id, item_id)."""
        return cls(
            categories=categories,
            popularity=train.groupby(ITEM_ID)[VISITOR_ID].nunique(),
            n_visitors=int(train[VISITOR_ID].nunique()),
            catalog_size=catalog_size,
        )


def ranking_metrics(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    ks: tuple[int, ...],
    expected: pd.DataFrame | None = None,
) -> dict:
    """Accuracy at each k, averaged over the visitors in `truth`; every value is in [0, 1].

    For a visitor with R relevant items and hits (relevant items) at ranks r in their list:
      precision@k  hits in the top k / k
      recall@k     hits in the top k / R
      ndcg@k       sum over hits r <= k of 1/log2(r + 1), over the same sum for min(R, k) hits
      hit_rate@k   1 if any hit in the top k, else 0
      map@k        sum over hits r <= k of precision@r, / min(R, k)
      mrr@k        1 / rank of the first hit if it is within k, else 0
      serendipity@k (only with `expected`) hits in the top k that are not in the visitor's top
                   k of `expected` / k; a visitor with no expected list finds every hit
                   unexpected
    A visitor in `truth` with no list scores 0; lists of visitors outside `truth` are ignored.
    Returns {"precision_at_10": ..., "map_at_10": ..., ..., "users": n}.
    """
    ks = _check_ks(ks)
    truth = _require_columns(truth, (VISITOR_ID, ITEM_ID), "truth").drop_duplicates()
    if truth.empty:
        raise EmptyEvaluationError("no relevant items: the test window is empty")
    recs = _check_lists(recs, "recs")
    n_relevant = truth.groupby(VISITOR_ID).size()
    users = n_relevant.index
    n_rel = n_relevant.to_numpy()
    hits = recs.merge(truth, on=[VISITOR_ID, ITEM_ID])
    if expected is not None:
        expected = _check_lists(expected, "expected").rename(columns={RANK: _EXPECTED_RANK})
        hits = hits.merge(expected, on=[VISITOR_ID, ITEM_ID], how="left")
    hits = hits.sort_values([VISITOR_ID, RANK], ignore_index=True)
    user_pos = users.get_indexer(hits[VISITOR_ID])
    rank = hits[RANK].to_numpy(dtype=float)
    # Every hit ranked above a hit at r <= k is also within k, so precision@r does not depend on k.
    hits_so_far = hits.groupby(VISITOR_ID).cumcount().to_numpy() + 1
    precision_at_hit = hits_so_far / rank
    gain = 1.0 / np.log2(rank + 1.0)
    first_hit = np.full(len(users), np.inf)
    first_hit[user_pos[hits_so_far == 1]] = rank[hits_so_far == 1]
    ideal_dcg = _ideal_dcg_table(max(ks))

    def per_user(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return np.bincount(user_pos, weights=np.where(keep, values, 0.0), minlength=len(users))

    result: dict[str, float] = {"users": int(len(users))}
    for k in ks:
        within = rank <= k
        n_hits = per_user(np.ones_like(rank), within)
        result[f"precision_at_{k}"] = float((n_hits / k).mean())
        result[f"recall_at_{k}"] = float((n_hits / n_rel).mean())
        result[f"ndcg_at_{k}"] = float(
            (per_user(gain, within) / ideal_dcg[np.minimum(n_rel, k)]).mean()
        )
        result[f"hit_rate_at_{k}"] = float((n_hits > 0).mean())
        result[f"map_at_{k}"] = float(
            (per_user(precision_at_hit, within) / np.minimum(n_rel, k)).mean()
        )
        result[f"mrr_at_{k}"] = float(np.where(first_hit <= k, 1.0 / first_hit, 0.0).mean())
        if expected is not None:
            # A missing expected rank (NaN) compares False: the item was not expected.
            unexpected = ~(hits[_EXPECTED_RANK].to_numpy(dtype=float) <= k)
            result[f"serendipity_at_{k}"] = float(
                (per_user(np.ones_like(rank), within & unexpected) / k).mean()
            )
    return result


def beyond_accuracy_metrics(recs: pd.DataFrame, ks: tuple[int, ...], context: ItemContext) -> dict:
    """What the top k of every list in `recs` looks like, whatever the visitors later did.

    With p(i) = popularity(i) / n_visitors, the share of training visitors who interacted with i:
      coverage@k        distinct items in all top-k lists / catalog_size, in [0, 1]
      diversity@k       intra-list diversity: share of item pairs in a top k whose categories
                        differ, in [0, 1]; an item with no category is a category of its own;
                        lists of fewer than 2 items are skipped
      novelty@k         mean self-information -log2 p(i) of the top k, in bits (>= 0); an item
                        no training visitor touched gets p = 1 / (n_visitors + 1), just rarer
                        than an item seen once
      popularity_bias@k average recommendation popularity (ARP): mean p(i) of the top k, in
                        [0, 1], with p = 0 for an item no training visitor touched
    diversity, novelty and popularity_bias are averaged per list, then over the visitors with a
    list; they are NaN when no list qualifies. Returns {"coverage_at_10": ..., ...}.
    """
    ks = _check_ks(ks)
    recs = _check_lists(recs, "recs")
    items = recs[ITEM_ID]
    rank = recs[RANK].to_numpy()
    list_pos, visitors = pd.factorize(recs[VISITOR_ID])
    share = items.map(context.popularity).fillna(0).to_numpy(dtype=float) / context.n_visitors
    self_information = -np.log2(np.where(share > 0, share, 1.0 / (context.n_visitors + 1)))
    category = items.map(context.categories).to_numpy()
    has_category = pd.notna(category)

    result: dict[str, float] = {}
    for k in ks:
        top = rank <= k
        pos = list_pos[top]
        size = np.bincount(pos, minlength=len(visitors)).astype(float)
        listed = size > 0
        distinct = items[top].nunique()
        if distinct > context.catalog_size:
            raise MetricInputError(
                f"the top-{k} lists hold {distinct} distinct items, more than catalog_size "
                f"{context.catalog_size}: coverage would exceed 1; count every item the lists "
                "can draw from"
            )
        result[f"coverage_at_{k}"] = distinct / context.catalog_size

        # Same-category pairs: sum over the list's categories of m (m - 1) / 2.
        known = has_category[top]
        per_category = pd.DataFrame({"pos": pos[known], "category": category[top][known]})
        m = per_category.groupby(["pos", "category"]).size()
        same = np.bincount(
            m.index.get_level_values("pos").to_numpy(),
            weights=(m * (m - 1) / 2).to_numpy(dtype=float),
            minlength=len(visitors),
        )
        pairs = size * (size - 1) / 2
        has_pairs = size >= 2
        result[f"diversity_at_{k}"] = _mean(1.0 - same[has_pairs] / pairs[has_pairs])

        for name, values in (("novelty", self_information), ("popularity_bias", share)):
            total = np.bincount(pos, weights=values[top], minlength=len(visitors))
            result[f"{name}_at_{k}"] = _mean(total[listed] / size[listed])
    return result


def offline_metrics(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    ks: tuple[int, ...],
    context: ItemContext | None = None,
    expected: pd.DataFrame | None = None,
) -> dict:
    """`ranking_metrics` and, with a `context`, `beyond_accuracy_metrics`, on the same visitors.

    Only the lists of visitors in `truth` are described, so accuracy and beyond-accuracy speak
    of one population. `expected` adds serendipity (see `ranking_metrics`).
    """
    result = ranking_metrics(recs, truth, ks, expected=expected)
    if context is not None:
        evaluated = recs[recs[VISITOR_ID].isin(truth[VISITOR_ID].unique())]
        result.update(beyond_accuracy_metrics(evaluated, ks, context))
    return result


def metrics_by_segment(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    ks: tuple[int, ...],
    segments: pd.Series,
    context: ItemContext | None = None,
    expected: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """`offline_metrics` per segment label: {"power": {"ndcg_at_10": ..., "users": n}, ...}.

    segments: visitor_id -> label (e.g. from `segment_visitors` or `segment_warm_cold`); every
    visitor in `truth` needs one. Labels with no visitor in `truth` are left out.
    """
    truth = _require_columns(truth, (VISITOR_ID, ITEM_ID), "truth")
    if truth.empty:
        raise EmptyEvaluationError("no relevant items: the test window is empty")
    if segments.index.has_duplicates:
        raise MetricInputError("segments lists a visitor_id more than once")
    labels = segments.reindex(truth[VISITOR_ID].unique())
    unlabelled = labels.index[labels.isna()]
    if len(unlabelled):
        raise MetricInputError(
            f"{len(unlabelled)} test visitors have no segment, e.g. {list(unlabelled[:5])}"
        )
    result = {}
    for label in sorted(labels.unique(), key=str):
        members = labels.index[labels == label]
        result[str(label)] = offline_metrics(
            recs[recs[VISITOR_ID].isin(members)],
            truth[truth[VISITOR_ID].isin(members)],
            ks,
            context=context,
            expected=expected,
        )
    return result


def segment_visitors(
    train_interaction_counts: pd.Series,
    visitors: Iterable | None = None,
    *,
    thresholds: tuple[int, int] = (5, 20),
) -> pd.Series:
    """visitor_id -> "new" | "casual" | "power" by training interactions.

    With thresholds (new_below, power_above): new < new_below <= casual <= power_above < power.
    train_interaction_counts: visitor_id -> interactions in the training window (>= 0).
    visitors: the visitors to label (default: the counts' index); one absent from the counts
    is cold, with 0 interactions, so new.
    """
    new_below, power_above = thresholds
    if not 0 < new_below <= power_above:
        raise MetricInputError(f"thresholds {thresholds}: need 0 < new_below <= power_above")
    counts = _visitor_counts(train_interaction_counts, visitors)
    labels = np.select([counts < new_below, counts > power_above], [NEW, POWER], CASUAL)
    return pd.Series(labels, index=counts.index, name="segment")


def segment_warm_cold(train_interaction_counts: pd.Series, visitors: Iterable) -> pd.Series:
    """visitor_id -> "warm" (at least one training interaction) | "cold" for `visitors`."""
    counts = _visitor_counts(train_interaction_counts, visitors)
    return pd.Series(np.where(counts > 0, WARM, COLD), index=counts.index, name="segment")


def flatten_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat MLflow keys joined by ".": {"segment.power.ndcg_at_10": 0.1}."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        leaves = flatten_metrics(value, name) if isinstance(value, Mapping) else {name: value}
        for leaf, number in leaves.items():
            if leaf in flat:
                raise MetricInputError(f"two metrics flatten to the key {leaf!r}")
            try:
                flat[leaf] = float(number)
            except (TypeError, ValueError) as exc:
                raise MetricInputError(f"metric {leaf!r} is not a number: {number!r}") from exc
    return flat


def _check_ks(ks: tuple[int, ...]) -> tuple[int, ...]:
    ks = tuple(ks)
    valid = all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in ks)
    if not ks or not valid or min(ks) < 1:
        raise MetricInputError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _check_lists(lists: pd.DataFrame, name: str) -> pd.DataFrame:
    """The list columns, after checking each visitor's ranks and items are unique and >= 1."""
    lists = _require_columns(lists, (VISITOR_ID, RANK, ITEM_ID), name)
    if (lists[RANK] < 1).any():
        raise MetricInputError(f"{name}: ranks start at 1")
    for column in (RANK, ITEM_ID):
        if lists.duplicated([VISITOR_ID, column]).any():
            raise MetricInputError(f"{name}: a visitor's list repeats a {column}")
    return lists


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MetricInputError(f"{name} lacks columns {missing}")
    return frame[list(columns)]


def _visitor_counts(counts: pd.Series, visitors: Iterable | None) -> pd.Series:
    if counts.index.has_duplicates:
        raise MetricInputError("train_interaction_counts lists a visitor_id more than once")
    if counts.isna().any() or (counts < 0).any():
        raise MetricInputError("train_interaction_counts must be counts >= 0")
    if visitors is not None:
        counts = counts.reindex(pd.Index(visitors).unique(), fill_value=0)
    return counts.rename_axis(VISITOR_ID)


def _ideal_dcg_table(k: int) -> np.ndarray:
    """IDCG of n relevant items at the top, for n = 0..k (index with min(R, k))."""
    return np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
