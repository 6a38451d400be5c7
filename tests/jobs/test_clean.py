from datetime import datetime, timedelta

import pytest

from jobs.clean import count_by_rule, drop_flagged, flag_bots
from jobs.core.config import CleanConfig

pytestmark = pytest.mark.spark
DAY = datetime(2015, 9, 1)
RULES = CleanConfig(
    max_events_per_day=5,
    max_views_without_conversion=4,
    test_visitor_ids=(900,),
    test_item_ids=(77,),
)


def _events(spark, rows):
    return spark.createDataFrame(
        [(DAY + timedelta(minutes=m), v, i, t, None) for m, v, i, t in rows],
        "event_ts timestamp, visitor_id long, item_id long, event_type string, transaction_id long",
    )


@pytest.fixture()
def events(spark):
    rows = [(0, 1, 10, "view"), (1, 1, 10, "cart")]  # a shopper
    rows += [(m, 2, 10 + m, "view") for m in range(6)]  # 6 events in one day: crawler
    rows += [(m * 1440, 3, 20 + m, "view") for m in range(4)]  # 4 views over 4 days, no cart
    rows += [(0, 900, 10, "view")]  # QA account
    rows += [(5, 4, 77, "view"), (6, 4, 11, "view")]  # a shopper who viewed a test SKU
    return _events(spark, rows)


def test_flag_bots_names_the_first_rule_each_visitor_breaks(events):
    flagged = {r.visitor_id: r.rule for r in flag_bots(events, RULES).collect()}
    assert flagged == {2: "events_per_day", 3: "views_without_conversion", 900: "test_account"}


def test_drop_flagged_keeps_shoppers_without_test_skus(events):
    kept = drop_flagged(events, flag_bots(events, RULES), RULES.test_item_ids)
    assert sorted((r.visitor_id, r.item_id) for r in kept.collect()) == [(1, 10), (1, 10), (4, 11)]


def test_count_by_rule_accounts_for_every_removed_event(events):
    counts = count_by_rule(events, flag_bots(events, RULES), RULES.test_item_ids)
    assert counts == {
        "test_account": {"visitors": 1, "events": 1},
        "events_per_day": {"visitors": 1, "events": 6},
        "views_without_conversion": {"visitors": 1, "events": 4},
        "test_item": {"visitors": None, "events": 1},
    }
    assert events.count() == 3 + sum(c["events"] for c in counts.values())
