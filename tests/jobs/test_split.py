from datetime import UTC, date, datetime, timedelta

import pytest

from jobs.split import cutoff_for, split_by_time

pytestmark = pytest.mark.spark


def test_cutoff_is_midnight_starting_the_last_test_days():
    assert cutoff_for(date(2015, 9, 18), 14) == datetime(2015, 9, 5, tzinfo=UTC)
    assert cutoff_for(date(2015, 9, 18), 1) == datetime(2015, 9, 18, tzinfo=UTC)
    with pytest.raises(ValueError, match="test_days"):
        cutoff_for(date(2015, 9, 18), 0)


def test_every_test_event_is_later_than_every_train_event(spark):
    base = datetime(2015, 9, 1)
    rows = [(base + timedelta(hours=7 * i), i % 3, i % 5, "view", None) for i in range(60)]
    events = spark.createDataFrame(
        rows,
        "event_ts timestamp, visitor_id long, item_id long, event_type string, transaction_id long",
    )
    cutoff = cutoff_for(date(2015, 9, 18), 14)
    train, test = split_by_time(events, cutoff)
    train_ts = [r.event_ts for r in train.collect()]
    test_ts = [r.event_ts for r in test.collect()]
    assert len(train_ts) + len(test_ts) == 60
    assert max(train_ts) < datetime(2015, 9, 5) <= min(test_ts)
    assert len(train_ts) == 14  # 4 days x 24 h / 7 h, rounded up
