from datetime import date, datetime

import pytest

from jobs.core.paths import end_of_day
from jobs.ingest import (
    SchemaMismatchError,
    check_header,
    parse_events,
    reconcile,
    snapshot_catalog,
)

pytestmark = pytest.mark.spark
UNTIL = end_of_day(date(2015, 9, 18))  # 2015-09-19 00:00 UTC
T0 = 1442534400000  # 2015-09-18 00:00:00 UTC in ms


def _lines(spark, lines):
    return spark.createDataFrame([(line,) for line in lines], "value string")


def test_parse_events_accepts_good_rows_and_quarantines_each_bad_kind(spark):
    lines = [
        f"{T0},1,view,10,",
        f"{T0 + 1000},1,addtocart,10,",
        f"{T0 + 2000},1,transaction,10,555",
        "not-a-time,1,view,10,",
        f"{T0},,view,10,",
        f"{T0},2,click,10,",
        f"{T0},2,transaction,10,",
        f"{T0},2,view,10,77",
        f"{T0},2,view",
        f"{T0},2,view,-5,",
        "1000,2,view,10,",
        f"{T0 + 86_400_000},3,view,10,",  # 2015-09-19: after the logical date
    ]
    parsed = parse_events(_lines(spark, lines), UNTIL)
    accepted = [tuple(r) for r in parsed.accepted.orderBy("event_ts").collect()]
    assert accepted == [
        (datetime(2015, 9, 18, 0, 0, 0), 1, 10, "view", None),
        (datetime(2015, 9, 18, 0, 0, 1), 1, 10, "cart", None),
        (datetime(2015, 9, 18, 0, 0, 2), 1, 10, "purchase", 555),
    ]
    reasons = {r.raw_line: r.reason for r in parsed.quarantined.collect()}
    assert reasons == {
        "not-a-time,1,view,10,": "bad_timestamp",
        f"{T0},,view,10,": "bad_visitor_id",
        f"{T0},2,click,10,": "unknown_event_type",
        f"{T0},2,transaction,10,": "transaction_id_mismatch",
        f"{T0},2,view,10,77": "transaction_id_mismatch",
        f"{T0},2,view": "wrong_field_count",
        f"{T0},2,view,-5,": "bad_item_id",
        "1000,2,view,10,": "timestamp_out_of_range",
    }
    assert parsed.later.count() == 1


def test_catalog_snapshot_uses_only_facts_up_to_the_logical_date(spark):
    props = spark.createDataFrame(
        [
            (str(T0 - 5000), "10", "categoryid", "3"),
            (str(T0 - 4000), "10", "available", "1"),
            (str(T0 - 1000), "10", "available", "0"),
            (str(T0 + 86_400_000), "10", "available", "1"),  # tomorrow: must not be seen
            (str(T0 + 86_400_000), "11", "categoryid", "4"),  # launched tomorrow
            (str(T0 - 9000), "12", "categoryid", "5"),  # never had an availability fact
        ],
        "timestamp string, itemid string, property string, value string",
    )
    rows = [tuple(r) for r in snapshot_catalog(props, UNTIL).orderBy("item_id").collect()]
    assert rows == [
        (10, 3, False, datetime(2015, 9, 17, 23, 59, 55)),
        (12, 5, True, datetime(2015, 9, 17, 23, 59, 51)),
    ]


def test_header_check_names_the_file_and_missing_column():
    check_header(
        "timestamp,visitorid,event,itemid,transactionid",
        ("timestamp", "visitorid", "event", "itemid", "transactionid"),
        "events.csv",
    )
    with pytest.raises(SchemaMismatchError, match=r"events.csv.*missing \['visitorid'\]"):
        check_header(
            "timestamp,visitor,event,itemid,transactionid",
            ("timestamp", "visitorid", "event", "itemid", "transactionid"),
            "events.csv",
        )


def test_reconcile_raises_when_a_row_is_unaccounted_for():
    reconcile(
        {"raw_rows": 10, "accepted": 6, "quarantined": 2, "duplicates": 1, "after_run_date": 1}
    )
    with pytest.raises(AssertionError, match="do not reconcile"):
        reconcile(
            {"raw_rows": 10, "accepted": 6, "quarantined": 2, "duplicates": 1, "after_run_date": 0}
        )
