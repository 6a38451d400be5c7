"""Bias and segment audit of recommendation lists (pure pandas/numpy).

Who gets good lists, and who is recommended what:

- `segment_tenure`: visitors by days since their first training event (new visitors are
  `unseen`), to set beside the activity segments of jobs/recommenders/metrics.py;
- `segment_by_attribute`: visitors by a column of a shop-provided attribute table;
- `exposure_gini`: how unequally the top-k slots are spread over the catalog, in [0, 1];
- `exposure_by_category`: share of top-k slots per category (the largest, then `other`);
- `audit_warnings`: the findings past the configured thresholds (evaluate.audit), as sentences.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from jobs.infra.schemas import ITEM_ID, RANK, VISITOR_ID

UNSEEN = "unseen"
UNKNOWN = "unknown"
OTHER = "other"


class AuditInputError(ValueError):
    """Thresholds, k or an attribute table the audit cannot use."""


def segment_tenure(
    first_seen: pd.Series, visitors: Iterable, as_of: pd.Timestamp, days: tuple[int, int]
) -> pd.Series:
    """visitor_id -> tenure label as of `as_of`: `under_<a>_days`, `<a>_to_<b>_days`,
    `over_<b>_days` with days = (a, b), 0 < a <= b; `unseen` for a visitor absent from
    first_seen (visitor_id -> first training event, UTC)."""
    short, long = days
    if not 0 < short <= long:
        raise AuditInputError(f"tenure days {days}: need 0 < first <= second")
    visitors = pd.Index(pd.unique(np.asarray(list(visitors))), name=VISITOR_ID)
    since = pd.to_datetime(first_seen.reindex(visitors), utc=True)
    age = (as_of - since).dt.total_seconds().to_numpy() / 86_400
    labels = np.select(
        [np.isnan(age), age < short, age <= long],
        [UNSEEN, f"under_{short}_days", f"{short}_to_{long}_days"],
        f"over_{long}_days",
    )
    return pd.Series(labels, index=visitors, name="tenure")


def segment_by_attribute(attributes: pd.DataFrame, column: str, visitors: Iterable) -> pd.Series:
    """visitor_id -> the visitor's value of `column` as text; `unknown` when absent.
    attributes: visitor_id and attribute columns, one row per visitor."""
    if VISITOR_ID not in attributes.columns or column not in attributes.columns:
        raise AuditInputError(f"the visitor attributes have no {VISITOR_ID!r} or {column!r}")
    if attributes[VISITOR_ID].duplicated().any():
        raise AuditInputError("the visitor attributes list a visitor_id more than once")
    values = attributes.set_index(VISITOR_ID)[column]
    labels = values.reindex(pd.unique(np.asarray(list(visitors))))
    return labels.astype("string").fillna(UNKNOWN).astype(object).rename(column)


def exposure_gini(recs: pd.DataFrame, k: int, catalog_size: int) -> float:
    """Gini coefficient of top-k slots over the catalog, in [0, 1]: 0 when every catalog item
    is shown equally often, near 1 when a few items take every slot. Items never shown count
    as zero exposure; when more items are shown than `catalog_size` (a model recommending items
    the catalog snapshot lacks), the items shown are the population."""
    if k <= 0:
        raise AuditInputError(f"k must be positive, got {k}")
    counts = recs.loc[recs[RANK] <= k, ITEM_ID].value_counts().to_numpy(dtype=np.float64)
    if counts.sum() == 0:
        return float("nan")
    size = max(catalog_size, len(counts))
    x = np.sort(np.r_[np.zeros(size - len(counts)), counts])
    i = np.arange(1, size + 1)
    return float(((2 * i - size - 1) * x).sum() / (size * x.sum()))


def exposure_by_category(
    recs: pd.DataFrame, categories: pd.Series, k: int, top: int = 10
) -> dict[str, float]:
    """Share of top-k slots per category: the `top` largest, then `other` (the rest, items
    without a category included). categories: item_id -> category_id. Shares sum to 1."""
    if k <= 0 or top <= 0:
        raise AuditInputError(f"k and top must be positive, got {k} and {top}")
    shown = recs.loc[recs[RANK] <= k, ITEM_ID]
    if shown.empty:
        return {}
    counts = shown.map(categories).value_counts(dropna=True)
    # Largest first; ties by category id, so the result never depends on row order.
    order = np.lexsort((counts.index.to_numpy(dtype=np.int64), -counts.to_numpy()))
    head = counts.iloc[order].head(top) / len(shown)
    result = {str(int(c)): round(float(share), 6) for c, share in head.items()}
    rest = 1.0 - float(head.sum())
    if rest > 1e-9:
        result[OTHER] = round(rest, 6)
    return result


def audit_warnings(audit: dict, thresholds) -> list[str]:
    """Sentences for each finding past `thresholds` (evaluate.audit): the challenger's exposure
    Gini and top-decile share, and every segment dimension's worst-to-best NDCG@10 ratio."""
    found = []
    gini = audit["exposure_gini"].get("challenger")
    if gini is not None and gini > thresholds.max_exposure_gini:
        found.append(
            f"exposure Gini {gini:.3f} > {thresholds.max_exposure_gini}: a few items take "
            "most of the slots"
        )
    deciles = audit["exposure_by_popularity_decile"].get("challenger")
    if deciles and deciles[-1] > thresholds.max_top_decile_share:
        found.append(
            f"{deciles[-1]:.1%} of top-10 slots go to the most popular tenth of items "
            f"(> {thresholds.max_top_decile_share:.0%})"
        )
    for dimension, segments in audit["segments"].items():
        ndcg = {
            label: m["ndcg_at_10"]
            for label, m in segments.items()
            if m.get("ndcg_at_10") is not None
        }
        if len(ndcg) < 2 or max(ndcg.values()) == 0:
            continue
        worst = min(ndcg, key=ndcg.get)
        ratio = ndcg[worst] / max(ndcg.values())
        if ratio < thresholds.min_segment_ndcg_ratio:
            found.append(
                f"{dimension} segment {worst!r} gets NDCG@10 {ndcg[worst]:.4f}, "
                f"{ratio:.0%} of the best {dimension} segment's "
                f"(< {thresholds.min_segment_ndcg_ratio:.0%})"
            )
    return found
