from datetime import date

import numpy as np
import pandas as pd
import pytest

from jobs.infra.config import MonitorBounds, MonitorConfig
from jobs.infra.paths import Lake
from jobs.monitor import check_night, night_facts, removed_share, stale_ratio, trailing_records

DAY = date(2015, 9, 18)


def _lists(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def test_stale_ratio_averages_each_visitors_unchanged_share():
    today = _lists([(1, 10), (1, 11), (2, 20), (2, 21), (3, 30)])
    yesterday = _lists([(1, 10), (1, 11), (2, 20), (2, 99), (4, 40)])
    # Visitor 1 unchanged (1.0), visitor 2 half (0.5); 3 and 4 are on one day only.
    assert stale_ratio(today, yesterday) == pytest.approx(0.75)
    assert stale_ratio(today, _lists([(9, 10)])) is None


def test_night_facts_come_from_the_stage_reports():
    facts = night_facts(
        ingest={"quarantine_rate": 0.002},
        evaluate={"challenger": {"ndcg_at_10": 0.18}},
        export={
            "catalog_items": 200,
            "recommendations": {"rows": 100, "rows_by_source": {"als": 80, "popular": 20}},
        },
        events_by_type={"view": 900, "purchase": 10},
        bot_rate=0.025,
        listed_items=50,
        stale=None,
    )
    assert facts == {
        "events.view": 900.0,
        "events.cart": 0.0,
        "events.purchase": 10.0,
        "quarantine_rate": 0.002,
        "bot_rate": 0.025,
        "ndcg_at_10": 0.18,
        "catalog_coverage": 0.25,
        "stale_ratio": None,
        "fallback_share": pytest.approx(0.2),
    }


def test_the_bot_rate_is_the_days_share_of_events_clean_removed():
    day = pd.DataFrame({"visitor_id": [1, 1, 2, 3, 4], "item_id": [10, 11, 10, 99, 10]})
    # Visitor 1 is a bot (2 events); item 99 is a test SKU (1 event): 3 of 5.
    assert removed_share(day, np.array([1, 7]), (99,)) == pytest.approx(0.6)
    assert removed_share(day.iloc[:0], np.array([1]), ()) is None


CHECKS = {
    "events.view": MonitorBounds(max_drop=0.5, max_rise=1.0),
    "ndcg_at_10": MonitorBounds(max_drop=0.2),
    "stale_ratio": MonitorBounds(max=0.9),
}
TRAILING = [
    {"events.view": 100.0, "ndcg_at_10": 0.20},
    {"events.view": 120.0, "ndcg_at_10": 0.18},
    {"events.view": 80.0, "ndcg_at_10": None},
]


def test_a_drop_in_volume_and_a_worse_model_are_out_of_bounds():
    tonight = {"events.view": 40.0, "ndcg_at_10": 0.1, "stale_ratio": 0.5}
    made, failed = check_night(tonight, TRAILING, CHECKS, min_nights=2)
    # Views: median 100, so the bounds are 50 and 200; NDCG: median 0.19, bound 0.152.
    assert [(c["fact"], c["bound"]) for c in failed] == [
        ("events.view", "max_drop"),
        ("ndcg_at_10", "max_drop"),
    ]
    assert failed[0]["limit"] == 50 and failed[0]["baseline"] == 100
    assert failed[1]["limit"] == pytest.approx(0.152)
    assert failed[1]["message"] == (
        "ndcg_at_10 = 0.1; max_drop limit 0.152 (trailing median 0.19): too low"
    )
    assert len(made) == 4  # views twice, NDCG, stale ratio


def test_a_normal_night_passes_and_a_rise_is_caught_too():
    assert check_night({"events.view": 150.0}, TRAILING, CHECKS, 2)[1] == []
    [rise] = check_night({"events.view": 250.0}, TRAILING, CHECKS, 2)[1]
    assert rise["bound"] == "max_rise" and rise["limit"] == 200


def test_relative_bounds_wait_for_enough_nights_but_absolute_ones_do_not():
    tonight = {"events.view": 1.0, "ndcg_at_10": 0.0, "stale_ratio": 0.99}
    made, failed = check_night(tonight, TRAILING, CHECKS, min_nights=3)
    # Only views have 3 earlier values; NDCG has 2. The stale ratio's limit is absolute.
    assert [(c["fact"], c["bound"]) for c in failed] == [
        ("events.view", "max_drop"),
        ("stale_ratio", "max"),
    ]
    assert check_night(tonight, [], CHECKS, min_nights=1)[1] == [failed[1]]


def test_a_rise_from_nothing_is_not_a_relative_change():
    checks = {"quarantine_rate": MonitorBounds(max_rise=1.0)}
    trailing = [{"quarantine_rate": 0.0}] * 3
    assert check_night({"quarantine_rate": 0.001}, trailing, checks, 1) == ([], [])


def test_trailing_records_are_the_earlier_nights_within_the_window(tmp_path):
    lake = Lake(tmp_path)
    for day, views in ((date(2015, 9, 10), 1.0), (date(2015, 9, 12), 2.0), (DAY, 3.0)):
        lake.write_stage_report(day, "monitor", {"facts": {"events.view": views}})
    assert trailing_records(lake, DAY, 7) == {"2015-09-12": {"events.view": 2.0}}
    assert list(trailing_records(lake, DAY, 8)) == ["2015-09-10", "2015-09-12"]


def test_an_unknown_fact_in_the_config_is_refused():
    with pytest.raises(ValueError, match="unknown facts"):
        MonitorConfig(checks={"events.veiw": {"max_drop": 0.5}})
