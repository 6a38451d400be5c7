from datetime import UTC, date, datetime, timedelta

import pytest

from jobs.infra.paths import IncompletePartitionError, Lake
from jobs.split import (
    LeakageError,
    check_no_leakage,
    cutoff_for,
    quantile_cutoff,
    run,
    split_by_time,
    validation_cutoff_for,
)

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


def test_validation_window_is_the_last_days_before_the_cutoff():
    cutoff = cutoff_for(date(2015, 9, 18), 14)
    assert validation_cutoff_for(cutoff, 7) == datetime(2015, 8, 29, tzinfo=UTC)
    with pytest.raises(ValueError, match="validation_days"):
        validation_cutoff_for(cutoff, 0)


def test_quantile_cutoff_is_exact_and_whole_seconds(spark):
    # Ten events one hour apart from midnight: the 0.9 quantile of 0..9 h (linear
    # interpolation) is 8.1 h = 08:06:00, so the last event (09:00) alone is the test window.
    base = datetime(2015, 9, 1)
    events = spark.createDataFrame(
        [(base + timedelta(hours=i),) for i in range(10)], "event_ts timestamp"
    )
    assert quantile_cutoff(events, 0.9) == datetime(2015, 9, 1, 8, 6, tzinfo=UTC)
    assert quantile_cutoff(events.where("false"), 0.9) is None
    with pytest.raises(ValueError, match="quantile"):
        quantile_cutoff(events, 1.0)


def _report(train_max, test_min, late_items=0):
    return {
        "cutoff": "2015-09-05T00:00:00+00:00",
        "train": {"rows": 1, "max_ts": train_max},
        "test": {"rows": 1, "min_ts": test_min},
        "catalog": {"items": 3, "items_first_seen_after_cutoff": late_items},
    }


def test_leakage_guard_names_what_leaked():
    check_no_leakage(_report(datetime(2015, 9, 4), datetime(2015, 9, 5)))
    with pytest.raises(LeakageError, match="train ends"):
        check_no_leakage(_report(datetime(2015, 9, 5), datetime(2015, 9, 5)))
    with pytest.raises(LeakageError, match="2 items first seen at or after"):
        check_no_leakage(_report(datetime(2015, 9, 4), datetime(2015, 9, 5), late_items=2))


def test_split_on_a_killed_cleans_output_names_the_partition_and_the_stage(cfg):
    silver = Lake(cfg.paths.lake).partition("silver", "events", date(2015, 9, 18))
    silver.mkdir(parents=True)
    (silver / "part-00000.parquet").write_bytes(b"PAR1 half")  # no _SUCCESS: clean was killed
    with pytest.raises(IncompletePartitionError, match=f"{silver} is incomplete.*Run clean"):
        run(cfg, date(2015, 9, 18), None)  # fails before it needs Spark
