from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from jobs.recommenders.audit import (
    AuditInputError,
    audit_warnings,
    exposure_by_category,
    exposure_gini,
    segment_by_attribute,
    segment_tenure,
)

AS_OF = pd.Timestamp("2015-09-04", tz="UTC")


def _recs(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "rank", "item_id"])


def test_tenure_counts_days_since_the_first_training_event():
    first_seen = pd.Series(
        pd.to_datetime(["2015-09-01", "2015-08-20", "2015-01-01"], utc=True), index=[1, 2, 3]
    )
    got = segment_tenure(first_seen, [1, 2, 3, 4], AS_OF, (7, 30))
    assert got.to_dict() == {
        1: "under_7_days",  # 3 days
        2: "7_to_30_days",  # 15 days
        3: "over_30_days",
        4: "unseen",  # first seen in the test window
    }


def test_tenure_thresholds_must_be_ordered():
    with pytest.raises(AuditInputError):
        segment_tenure(pd.Series(dtype="datetime64[ns, UTC]"), [1], AS_OF, (30, 7))


def test_attribute_segments_label_missing_visitors_unknown():
    attributes = pd.DataFrame({"visitor_id": [1, 2], "region": ["north", "south"]})
    got = segment_by_attribute(attributes, "region", [2, 1, 9])
    assert got.to_dict() == {2: "south", 1: "north", 9: "unknown"}


def test_attribute_table_with_a_repeated_visitor_is_refused():
    attributes = pd.DataFrame({"visitor_id": [1, 1], "region": ["north", "south"]})
    with pytest.raises(AuditInputError, match="more than once"):
        segment_by_attribute(attributes, "region", [1])


def test_gini_is_zero_for_equal_exposure_and_grows_with_concentration():
    equal = _recs([(1, 1, 10), (2, 1, 11), (3, 1, 12), (4, 1, 13)])
    assert exposure_gini(equal, 10, catalog_size=4) == pytest.approx(0.0)
    # One item of four takes every slot: x = (0, 0, 0, 4) -> (2*4 - 4 - 1) * 4 / (4 * 4) = 0.75.
    one = _recs([(v, 1, 10) for v in range(4)])
    assert exposure_gini(one, 10, catalog_size=4) == pytest.approx(0.75)
    # Slots past k do not count.
    assert exposure_gini(_recs([(1, 1, 10), (1, 2, 11)]), 1, catalog_size=2) == pytest.approx(0.5)


def test_gini_over_a_catalog_smaller_than_what_was_shown_uses_the_items_shown():
    # Two items shown once each, a catalog of 1: the population is the 2 items, equal exposure.
    assert exposure_gini(_recs([(1, 1, 10), (1, 2, 11)]), 10, catalog_size=1) == 0.0
    with pytest.raises(AuditInputError):
        exposure_gini(_recs([(1, 1, 10)]), 0, catalog_size=1)


def test_category_shares_keep_the_largest_and_sum_the_rest():
    categories = pd.Series({10: 7, 11: 7, 12: 8, 13: 9})
    recs = _recs([(1, 1, 10), (1, 2, 11), (2, 1, 12), (2, 2, 13), (3, 1, 13), (3, 2, 99)])
    # Six slots: categories 7 and 9 two each (tied: lower id first), 8 one, item 99 (no
    # category) one; the two largest are kept and 8 and 99 go to `other`.
    assert exposure_by_category(recs, categories, 10, top=2) == {
        "7": pytest.approx(1 / 3, abs=1e-6),
        "9": pytest.approx(1 / 3, abs=1e-6),
        "other": pytest.approx(1 / 3, abs=1e-6),
    }
    assert list(exposure_by_category(recs, categories, 10, top=2)) == ["7", "9", "other"]
    # Slots past k are not counted.
    assert exposure_by_category(recs, categories, 1) == {
        "7": pytest.approx(1 / 3, abs=1e-6),
        "8": pytest.approx(1 / 3, abs=1e-6),
        "9": pytest.approx(1 / 3, abs=1e-6),
    }


THRESHOLDS = SimpleNamespace(
    max_exposure_gini=0.9, max_top_decile_share=0.5, min_segment_ndcg_ratio=0.5
)


def test_warnings_name_each_finding_past_its_threshold():
    audit = {
        "exposure_gini": {"challenger": 0.95},
        "exposure_by_popularity_decile": {"challenger": [0.0] * 9 + [0.6]},
        "segments": {
            "activity": {"new": {"ndcg_at_10": 0.01}, "power": {"ndcg_at_10": 0.2}},
            "tenure": {"unseen": {"ndcg_at_10": 0.15}, "over_30_days": {"ndcg_at_10": 0.2}},
        },
    }
    found = audit_warnings(audit, THRESHOLDS)
    assert len(found) == 3
    assert "Gini 0.950" in found[0]
    assert "60.0%" in found[1]
    assert "activity segment 'new'" in found[2]


def test_no_warning_within_thresholds():
    audit = {
        "exposure_gini": {"challenger": 0.5},
        "exposure_by_popularity_decile": {"challenger": list(np.full(10, 0.1))},
        "segments": {"activity": {"new": {"ndcg_at_10": 0.1}, "power": {"ndcg_at_10": 0.12}}},
    }
    assert audit_warnings(audit, THRESHOLDS) == []
