"""jobs/validate.py: the GX suites pass clean partitions and name what broke in bad ones.

The data is one tiny shop: items 10-14, visitors 1-5, silver history from 2015-09-15 (four events
a day) and five events on the logical date 2015-09-18, of which bronze holds the ones that
arrived for that date (plus a late event of the 17th).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from jobs.infra.config import ValidateConfig, VolumeCheckConfig, load_config
from jobs.infra.paths import Lake
from jobs.validate import (
    BRONZE_EVENTS_SUITE,
    CATALOG_SUITE,
    COVERAGE_SUITE,
    NOT_IN_CATALOG,
    SILVER_EVENTS_SUITE,
    VOLUME_SUITE,
    DataValidationError,
    VolumeBaseline,
    events_on_day,
    expectation_parameters,
    flag_items_missing_from_catalog,
    history_load_start,
    load_suite,
    run,
    run_suites,
    summarize,
    trailing_volume,
    volume_parameters,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = PROJECT_ROOT / "great_expectations" / "expectations"
ALL_SUITES = (BRONZE_EVENTS_SUITE, CATALOG_SUITE, SILVER_EVENTS_SUITE, COVERAGE_SUITE, VOLUME_SUITE)
RUN_DATE = date(2015, 9, 18)
# Expectations per suite: pinned so that editing a suite is a decision, not an accident.
EXPECTATION_COUNTS = {
    BRONZE_EVENTS_SUITE: 21,
    CATALOG_SUITE: 12,
    SILVER_EVENTS_SUITE: 23,
    COVERAGE_SUITE: 1,
    VOLUME_SUITE: 1,
}

EVENTS_DDL = (
    "event_ts timestamp, visitor_id long, item_id long, event_type string, session_id string, "
    "price double, quantity int, transaction_id string, source string, ingest_run string"
)
OLD_EVENTS_DDL = EVENTS_DDL.replace("transaction_id string", "transaction_id long")
CATALOG_DDL = (
    "item_id long, category_id long, price double, available boolean, first_seen_ts timestamp"
)


def _ts(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 9) -> datetime:
    return datetime(2015, month, day, hour, minute, second, tzinfo=UTC)


def _event(when, visitor, item, event_type="view", price=None, quantity=None, txn=None) -> tuple:
    return (when, visitor, item, event_type, f"s{visitor}", price, quantity, txn, "shop", "ingest")


def _history() -> list[tuple]:
    """Silver events of 2015-09-15 to 17, four a day: the trailing mean is 4.0 events per day."""
    return [
        _event(_ts(15, 9), 1, 10),
        _event(_ts(15, 10), 1, 11),
        _event(_ts(15, 11), 2, 12),
        _event(_ts(15, 12), 2, 12, "cart"),
        _event(_ts(16, 9), 3, 13),
        _event(_ts(16, 10), 3, 10),
        _event(_ts(16, 11), 1, 10, "cart"),
        _event(_ts(16, 12), 1, 10, "purchase", 19.99, 1, "t-501"),
        _event(_ts(17, 9), 4, 14),
        _event(_ts(17, 10), 4, 11),
        _event(_ts(17, 11), 2, 13),
        _event(_ts(17, 23, 59, 59), 5, 12),  # arrived late: in bronze of the 18th
    ]


def _day() -> list[tuple]:
    """The five events dated 2015-09-18, from 00:00:00 to 23:59:59 UTC."""
    return [
        _event(_ts(18, 0), 1, 11),
        _event(_ts(18, 8), 3, 13, "cart", 5.0, 2),
        _event(_ts(18, 8, 5), 3, 13, "purchase", 5.0, 2, "t-502"),
        _event(_ts(18, 12), 4, 12),
        _event(_ts(18, 23, 59, 59), 5, 14),
    ]


def _catalog() -> list[tuple]:
    return [
        (10, 1, 19.99, True, _ts(1, 0)),
        (11, 1, None, False, _ts(2, 0)),
        (12, None, 7.5, True, _ts(3, 0)),
        (13, 2, 5.0, True, _ts(4, 0)),
        (14, 2, 0.0, True, _ts(5, 0)),
    ]


@dataclass
class Shop:
    """The rows of each partition, for a test to corrupt before they become DataFrames."""

    bronze: list[tuple] = field(default_factory=lambda: _day() + _history()[-1:])
    catalog: list[tuple] = field(default_factory=_catalog)
    silver: list[tuple] = field(default_factory=lambda: _history() + _day())
    events_ddl: str = EVENTS_DDL


SETTINGS = ValidateConfig(min_events=10, max_price=1000.0, catalog_coverage=0.9)
VOLUME = VolumeCheckConfig(trailing_days=7, min_ratio=0.5, max_ratio=2.0)  # 4.0 a day -> [2, 8]


def _frames(spark, shop: Shop) -> dict:
    bronze = spark.createDataFrame(shop.bronze, shop.events_ddl)
    catalog = spark.createDataFrame(shop.catalog, CATALOG_DDL)
    silver = spark.createDataFrame(shop.silver, shop.events_ddl)
    return {
        BRONZE_EVENTS_SUITE: bronze,
        CATALOG_SUITE: catalog,
        SILVER_EVENTS_SUITE: silver,
        COVERAGE_SUITE: flag_items_missing_from_catalog(silver, catalog),
        VOLUME_SUITE: events_on_day(silver, RUN_DATE),
    }


def _parameters(spark, shop: Shop, min_event_date: date = date(2015, 1, 1)) -> dict:
    silver = spark.createDataFrame(shop.silver, shop.events_ddl)
    baseline = trailing_volume(silver, RUN_DATE, VOLUME)
    return {
        **expectation_parameters(RUN_DATE, SETTINGS, min_event_date),
        **volume_parameters(baseline),
    }


def _validate_one(spark, tmp_path, suite: str, shop: Shop, **params) -> dict:
    """Run one suite on its frame of the shop; returns its summary."""
    results = run_suites(
        {suite: _frames(spark, shop)[suite]},
        {suite: load_suite(SUITES_DIR, suite)},
        {**_parameters(spark, shop), **params},
        tmp_path / "docs",
        run_name="test",
    )
    return summarize(results)["suites"][suite]


def _write_partitions(spark, lake_root: Path, shop: Shop) -> None:
    lake = Lake(lake_root)
    for layer, table, rows, ddl in [
        ("bronze", "events", shop.bronze, shop.events_ddl),
        ("bronze", "catalog", shop.catalog, CATALOG_DDL),
        ("silver", "events", shop.silver, shop.events_ddl),
    ]:
        path = lake.partition(layer, table, RUN_DATE)
        spark.createDataFrame(rows, ddl).write.mode("overwrite").parquet(str(path))


# --- parameters, suites and result summaries (no Spark) ---


def test_expectation_parameters_bound_the_data_interval():
    assert expectation_parameters(RUN_DATE, SETTINGS, date(2015, 5, 3)) == {
        "start_of_data": datetime(2015, 5, 3, tzinfo=UTC),
        "end_of_logical_date": datetime(2015, 9, 19, tzinfo=UTC),
        "min_events": 10,
        "max_price": 1000.0,
        "catalog_coverage": 0.9,
    }


def test_expectation_parameters_reject_a_min_event_date_after_the_run_date():
    with pytest.raises(ValueError, match="min_event_date 2015-09-19 is after the run date"):
        expectation_parameters(RUN_DATE, SETTINGS, date(2015, 9, 19))


def test_volume_ratios_out_of_order_are_a_config_error():
    from jobs.infra.config import ConfigError, load_config

    with pytest.raises(
        ConfigError, match="validate.volume: .*min_ratio 5.0 is above max_ratio 4.0"
    ):
        load_config(
            PROJECT_ROOT / "configs" / "test.yaml",
            environ={"RECS__VALIDATE__VOLUME__MIN_RATIO": "5"},
        )


def test_volume_parameters_are_the_baseline_bounds_and_need_history():
    baseline = VolumeBaseline(days=3, events=12, mean_per_day=4.0, min_events=2, max_events=8)
    assert volume_parameters(baseline) == {"volume_min_events": 2, "volume_max_events": 8}
    with pytest.raises(ValueError, match="no trailing history"):
        volume_parameters(VolumeBaseline(0, 0, None, None, None))


def test_every_suite_loads_under_its_own_name_with_the_pinned_number_of_expectations():
    from great_expectations.core import ExpectationSuite

    counts = {
        name: len(ExpectationSuite(**load_suite(SUITES_DIR, name)).expectations)
        for name in ALL_SUITES
    }
    assert counts == EXPECTATION_COUNTS


def test_load_suite_rejects_a_missing_or_misnamed_suite(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_suite(tmp_path, "nope")
    (tmp_path / "catalog.json").write_text(json.dumps({"name": "events", "expectations": []}))
    with pytest.raises(ValueError, match="named 'events', expected 'catalog'"):
        load_suite(tmp_path, "catalog")


def _result(success: bool, results: list[dict]) -> dict:
    failed = sum(not r["success"] for r in results)
    return {
        "success": success,
        "statistics": {
            "evaluated_expectations": len(results),
            "successful_expectations": len(results) - failed,
            "unsuccessful_expectations": failed,
        },
        "results": results,
    }


def test_summarize_counts_and_names_failures_from_result_json():
    results = {
        "catalog": _result(
            False,
            [
                {
                    "success": True,
                    "expectation_config": {"type": "expect_column_to_exist", "kwargs": {}},
                    "result": {},
                },
                {
                    "success": False,
                    "expectation_config": {
                        "type": "expect_column_values_to_be_unique",
                        "kwargs": {"column": "item_id"},
                    },
                    "result": {
                        "element_count": 3,
                        "unexpected_count": 2,
                        "partial_unexpected_list": [7, 7],
                    },
                },
            ],
        )
    }
    summary = summarize(results)
    assert summary["success"] is False
    assert summary["suites"]["catalog"] == {
        "success": False,
        "evaluated": 2,
        "successful": 1,
        "failed": 1,
        "failed_expectations": ["expect_column_values_to_be_unique(item_id)"],
        "failures": [
            {
                "expectation": "expect_column_values_to_be_unique(item_id)",
                "observed": "2 of 3 rows unexpected, e.g. [7]",
            }
        ],
    }


def test_summarize_quotes_the_bounds_and_mostly_the_run_applied():
    failed_volume = {
        "success": False,
        "expectation_config": {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 2, "max_value": 8},
        },
        "result": {"observed_value": 9},
    }
    failed_time = {
        "success": False,
        "expectation_config": {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "event_ts", "max_value": "2015-09-19", "strict_max": True},
        },
        "result": {"element_count": 4, "unexpected_count": 1, "partial_unexpected_list": ["x"]},
    }
    failed_coverage = {
        "success": False,
        "expectation_config": {
            "type": "expect_column_values_to_be_null",
            "kwargs": {"column": "c", "mostly": 0.9},
        },
        "result": {"element_count": 4, "unexpected_count": 2, "partial_unexpected_list": [99]},
    }
    outcome = summarize({"s": _result(False, [failed_volume, failed_time, failed_coverage])})
    assert [f["observed"] for f in outcome["suites"]["s"]["failures"]] == [
        "observed 9; allowed [2, 8]",
        "1 of 4 rows unexpected, e.g. ['x']; allowed [-inf, 2015-09-19)",
        "2 of 4 rows unexpected, e.g. [99]; mostly 0.9",
    ]


def test_summarize_reports_a_metric_error_as_the_observed_value():
    failed_by_error = {
        "success": False,
        "expectation_config": {"type": "expect_column_values_to_be_in_set", "kwargs": {}},
        "result": {},
        # GX keys metric errors by metric id.
        "exception_info": {
            "('column_values.in_set', 'abc')": {
                "raised_exception": True,
                "exception_message": "Column 'event_type' does not exist",
            }
        },
    }
    [failure] = summarize({"silver_events": _result(False, [failed_by_error])})["suites"][
        "silver_events"
    ]["failures"]
    assert failure == {
        "expectation": "expect_column_values_to_be_in_set",
        "observed": "error: Column 'event_type' does not exist",
    }


# --- derived frames ---


@pytest.mark.spark
def test_flag_items_missing_from_catalog_keeps_one_row_per_event(spark):
    events = spark.createDataFrame([(10,), (99,), (10,), (98,), (99,)], "item_id long")
    catalog = spark.createDataFrame([(10,), (10,), (11,)], "item_id long")  # 10 duplicated

    flagged = flag_items_missing_from_catalog(events, catalog)

    assert flagged.columns == [NOT_IN_CATALOG]
    assert sorted(flagged.collect(), key=lambda r: (r[0] is not None, r[0] or 0)) == [
        (None,),
        (None,),
        (98,),
        (99,),
        (99,),
    ]


@pytest.mark.spark
@pytest.mark.parametrize(
    ("derive", "column"),
    [
        (lambda f: flag_items_missing_from_catalog(f, f).collect(), "item_id"),
        (lambda f: events_on_day(f, RUN_DATE).collect(), "event_ts"),
        (lambda f: trailing_volume(f, RUN_DATE, VOLUME), "event_ts"),
    ],
    ids=["coverage", "on-day", "trailing"],
)
def test_derived_frames_name_a_missing_column(spark, derive, column):
    from pyspark.errors import AnalysisException

    frame = spark.createDataFrame([(10,)], "other long")
    with pytest.raises(AnalysisException, match=column):
        derive(frame)


@pytest.mark.spark
def test_events_on_day_is_the_utc_day_of_the_run(spark):
    rows = [(_ts(17, 23, 59, 59),), (_ts(18, 0),), (_ts(18, 23, 59, 59),), (_ts(19, 0),)]
    events = spark.createDataFrame(rows, "event_ts timestamp")

    kept = events_on_day(events, RUN_DATE).collect()

    # PySpark hands back naive local times; .timestamp() reads them as such.
    assert [r.event_ts.timestamp() for r in kept] == [
        _ts(18, 0).timestamp(),
        _ts(18, 23, 59, 59).timestamp(),
    ]


@pytest.mark.spark
@pytest.mark.parametrize(
    ("volume", "rows", "expected"),
    [
        # History from the 15th: the mean is over 3 days, not 7 (12 events / 3 = 4.0).
        (VOLUME, _history() + _day(), VolumeBaseline(3, 12, 4.0, 2, 8)),
        # Only the 16th and 17th are trailing days: 8 / 2 = 4.0; 4.0 * 0.3 = 1.2 -> at least 2.
        (
            VolumeCheckConfig(trailing_days=2, min_ratio=0.3, max_ratio=1.1),
            _history() + _day(),
            VolumeBaseline(2, 8, 4.0, 2, 4),
        ),
        # A day without events inside the window counts as zero: (4 + 4) / 3.
        (VOLUME, _history()[:4] + _history()[8:] + _day(), VolumeBaseline(3, 8, 8 / 3, 2, 5)),
        (VOLUME, _day(), VolumeBaseline(0, 0, None, None, None)),  # no history before D
        (VOLUME, [], VolumeBaseline(0, 0, None, None, None)),
    ],
    ids=[
        "young-history",
        "window-shorter-than-history",
        "quiet-day-in-window",
        "no-history",
        "empty",
    ],
)
def test_trailing_volume_means_over_the_days_before_the_run_date(spark, volume, rows, expected):
    events = spark.createDataFrame(rows, EVENTS_DDL)
    assert trailing_volume(events, RUN_DATE, volume) == expected


# --- each suite on its frame ---


@pytest.mark.spark
@pytest.mark.parametrize("suite", ALL_SUITES)
def test_each_suite_passes_the_clean_shop(spark, tmp_path, suite):
    outcome = _validate_one(spark, tmp_path, suite, Shop())
    assert (outcome["success"], outcome["failed_expectations"]) == (True, [])
    assert outcome["evaluated"] == EXPECTATION_COUNTS[suite]


@pytest.mark.spark
def test_bronze_suite_passes_an_empty_day(spark, tmp_path):
    outcome = _validate_one(spark, tmp_path, BRONZE_EVENTS_SUITE, Shop(bronze=[]))
    assert (outcome["success"], outcome["evaluated"]) == (True, EXPECTATION_COUNTS["bronze_events"])


_FIELDS = {"when": 0, "item": 2, "event_type": 3, "price": 5, "quantity": 6, "txn": 7}


def _set(rows: list[tuple], index: int, **changes) -> None:
    row = list(rows[index])
    for name, value in changes.items():
        row[_FIELDS[name]] = value
    rows[index] = tuple(row)


def _bronze_defects(shop):
    _set(shop.bronze, 0, when=datetime(2014, 12, 31, 23, 59, tzinfo=UTC))  # before min date
    _set(shop.bronze, 4, when=_ts(19, 0))  # midnight of the 19th: the exclusive bound itself
    _set(shop.bronze, 1, price=-5.0)
    _set(shop.bronze, 2, price=5000.0)  # above max_price 1000
    _set(shop.bronze, 3, event_type="click")
    _set(shop.bronze, 5, event_type=None)
    # The old layout's numeric transaction ids.
    shop.events_ddl = OLD_EVENTS_DDL
    for rows in (shop.bronze, shop.silver):
        for i, row in enumerate(rows):
            rows[i] = row[:7] + (None if row[7] is None else int(row[7][2:]),) + row[8:]


def _catalog_defects(shop):
    shop.catalog.append((13, 3, 5.0, False, _ts(6, 0)))  # item 13 twice
    shop.catalog[2] = (12, None, -7.5, True, _ts(3, 0))
    shop.catalog[4] = (14, 2, 0.0, True, _ts(19, 0, 0, 1))  # first seen after D


def _silver_defects(shop):
    _set(shop.silver, -4, quantity=-2)
    _set(shop.silver, 0, txn="t-777")  # on a view
    del shop.silver[5:13]  # 9 events left, min_events is 10


def _silver_items_missing_from_catalog(shop):
    _set(shop.silver, 0, item=99)  # 2 of 17 events: 88% < 90% covered
    _set(shop.silver, 1, item=99)


def _volume_spike(shop):
    shop.silver += [_event(_ts(18, 13, m), 2, 10) for m in range(4)]  # 9 > 4.0 * 2


def _volume_drop(shop):
    del shop.silver[-4:]  # 1 < 4.0 * 0.5


BETWEEN = "expect_column_values_to_be_between"
ALLOWED_TIMES = "allowed [2015-01-01T00:00:00+00:00, 2015-09-19T00:00:00+00:00)"


@pytest.mark.spark
@pytest.mark.parametrize(
    ("corrupt", "suite", "failures"),
    [
        pytest.param(
            _bronze_defects,
            BRONZE_EVENTS_SUITE,
            {
                "expect_column_values_to_be_of_type(transaction_id)": "observed 'LongType'",
                "expect_column_values_to_not_be_null(event_type)": (
                    "1 of 6 rows unexpected, e.g. [None]"
                ),
                "expect_column_values_to_be_in_set(event_type)": (
                    "1 of 6 rows unexpected, e.g. ['click']"
                ),
                # The values show in the driver's local time zone; the bounds are UTC.
                f"{BETWEEN}(event_ts)": f"2 of 6 rows unexpected, e.g. [...]; {ALLOWED_TIMES}",
                f"{BETWEEN}(price)": "2 of 6 rows unexpected, e.g. [-5.0, 5000.0]; "
                "allowed [0.0, 1000.0]",
            },
            id="bronze-out-of-interval-price-event-type-transaction-type",
        ),
        pytest.param(
            _catalog_defects,
            CATALOG_SUITE,
            {
                "expect_column_values_to_be_unique(item_id)": "2 of 6 rows unexpected, e.g. [13]",
                f"{BETWEEN}(price)": "1 of 6 rows unexpected, e.g. [-7.5]; allowed [0.0, 1000.0]",
                f"{BETWEEN}(first_seen_ts)": f"1 of 6 rows unexpected, e.g. [...]; {ALLOWED_TIMES}",
            },
            id="catalog-duplicate-price-first-seen",
        ),
        pytest.param(
            _silver_defects,
            SILVER_EVENTS_SUITE,
            {
                "expect_table_row_count_to_be_between": "observed 9; allowed [10, inf]",
                f"{BETWEEN}(quantity)": "1 of 9 rows unexpected, e.g. [-2]; allowed [0.0, inf]",
                "expect_column_values_to_be_null(transaction_id) where event_type != 'purchase'": (
                    "1 of 8 rows unexpected, e.g. ['t-777']"  # 8 non-purchases
                ),
            },
            id="silver-row-count-quantity-transaction-on-view",
        ),
        pytest.param(
            _silver_items_missing_from_catalog,
            COVERAGE_SUITE,
            {
                f"expect_column_values_to_be_null({NOT_IN_CATALOG})": (
                    "2 of 17 rows unexpected, e.g. [99]; mostly 0.9"
                )
            },
            id="silver-item-missing-from-catalog",
        ),
        pytest.param(
            _volume_spike,
            VOLUME_SUITE,
            {"expect_table_row_count_to_be_between": "observed 9; allowed [2, 8]"},
            id="volume-spike",
        ),
        pytest.param(
            _volume_drop,
            VOLUME_SUITE,
            {"expect_table_row_count_to_be_between": "observed 1; allowed [2, 8]"},
            id="volume-drop",
        ),
    ],
)
def test_a_bad_frame_fails_its_suite_naming_each_broken_expectation(
    spark, tmp_path, corrupt, suite, failures
):
    shop = Shop()
    corrupt(shop)

    outcome = _validate_one(spark, tmp_path, suite, shop)

    assert outcome["success"] is False
    # Timestamps are rendered in the driver's local zone: compare everything else exactly.
    observed = {
        f["expectation"]: re.sub(r"e\.g\. \['\d{4}-[^]]*\]", "e.g. [...]", f["observed"])
        for f in outcome["failures"]
    }
    assert observed == failures


@pytest.mark.spark
def test_coverage_at_the_threshold_passes(spark, tmp_path):
    shop = Shop()
    _set(shop.silver, 0, item=99)  # 1 of 17 events: 94% >= 90% covered
    outcome = _validate_one(spark, tmp_path, COVERAGE_SUITE, shop)
    assert outcome["success"] is True
    # ... and fails when every event's item must be known.
    outcome = _validate_one(spark, tmp_path, COVERAGE_SUITE, shop, catalog_coverage=1.0)
    assert outcome["failed_expectations"] == [f"expect_column_values_to_be_null({NOT_IN_CATALOG})"]


@pytest.mark.spark
def test_run_suites_rejects_a_frame_without_a_suite(spark, tmp_path):
    frame = spark.createDataFrame([(1,)], "item_id long")
    with pytest.raises(ValueError, match=r"no suite for frame\(s\) \['orphan'\]"):
        run_suites({"orphan": frame}, {}, {}, tmp_path, run_name="test")


# --- the stage ---


@pytest.mark.spark
def test_stage_fails_naming_every_failing_expectation_after_writing_its_reports(spark, cfg, caplog):
    shop = Shop()
    _set(shop.bronze, 3, event_type="click")
    for i in range(3):
        _set(shop.silver, i, item=99)  # 3 of 17 events: 82% < the test config's 95% coverage
    _write_partitions(spark, cfg.paths.lake, shop)

    with (
        caplog.at_level(logging.INFO, logger="jobs.validate"),
        pytest.raises(DataValidationError) as failure,
    ):
        run(cfg, RUN_DATE, spark)

    message = str(failure.value)
    assert message.startswith("data validation failed for 2015-09-18: 2 expectation(s) failed")
    assert (
        "bronze_events: expect_column_values_to_be_in_set(event_type): "
        "1 of 6 rows unexpected, e.g. ['click']" in message
    )
    assert (
        "silver_catalog_coverage: expect_column_values_to_be_null(item_id_not_in_catalog): "
        "3 of 17 rows unexpected, e.g. [99]; mostly 0.95" in message
    )
    report = Lake(cfg.paths.lake).read_stage_report(RUN_DATE, "validate")
    assert report["success"] is False
    assert {name: s["failed_expectations"] for name, s in report["suites"].items()} == {
        BRONZE_EVENTS_SUITE: ["expect_column_values_to_be_in_set(event_type)"],
        CATALOG_SUITE: [],
        SILVER_EVENTS_SUITE: [],
        COVERAGE_SUITE: [f"expect_column_values_to_be_null({NOT_IN_CATALOG})"],
        VOLUME_SUITE: [],
    }
    index = cfg.paths.reports / "validation" / "dt=2015-09-18" / "index.html"
    assert report["data_docs_index"] == str(index) and index.is_file()
    assert f"Data Docs: {index}" in message and "validate.json" in message
    assert f"Data Docs at {index}" in caplog.text


@pytest.mark.spark
def test_the_stage_passes_the_clean_shop_and_reports_exact_counts(spark, tmp_path):
    lake_root, reports = tmp_path / "lake", tmp_path / "reports"
    # Relative paths resolve against the overlay's grandparent, so every path used is absolute.
    overlay = tmp_path / "configs" / "validate.yaml"
    overlay.parent.mkdir()
    overlay.write_text(
        f"extends: {PROJECT_ROOT / 'configs' / 'test.yaml'}\n"
        f"paths: {{lake: {lake_root}, reports: {reports}, suites: {SUITES_DIR}}}\n"
    )
    _write_partitions(spark, lake_root, Shop())

    run(load_config(overlay, environ={}), RUN_DATE, spark)

    report = Lake(lake_root).read_stage_report(RUN_DATE, "validate")
    assert report["success"] is True
    assert report["rows_validated"] == {"bronze_events": 6, "catalog": 5, "silver_events": 17}
    counts = {
        name: (s["evaluated"], s["successful"], s["failed"]) for name, s in report["suites"].items()
    }
    assert counts == {name: (n, n, 0) for name, n in EXPECTATION_COUNTS.items()}
    # test.yaml: trailing 7 days, ratios 0.25 and 4.0 around 4.0 events a day.
    assert report["volume"] == {
        "days": 3,
        "events": 12,
        "mean_per_day": 4.0,
        "min_events": 1,
        "max_events": 16,
    }
    assert report["skipped"] == {}
    docs = reports / "validation" / "dt=2015-09-18"
    assert report["data_docs_index"] == str(docs / "index.html")
    assert (docs / "index.html").is_file()
    raw = json.loads((docs / "validation_results.json").read_text())
    assert sorted(raw) == sorted(ALL_SUITES)
    [volume] = raw[VOLUME_SUITE]["results"]
    assert volume["result"]["observed_value"] == 5


@pytest.mark.spark
def test_an_empty_bronze_day_without_history_passes_and_notes_the_skipped_volume_check(spark, cfg):
    from jobs.infra.schemas import event_schema

    shop = Shop(silver=_day() * 2)  # 10 events, all on the logical date
    _write_partitions(spark, cfg.paths.lake, shop)
    # What ingest writes for a day without files: a typed partition with no rows.
    bronze = Lake(cfg.paths.lake).partition("bronze", "events", RUN_DATE)
    spark.createDataFrame([], event_schema()).write.mode("overwrite").parquet(str(bronze))

    report = run(cfg, RUN_DATE, spark)

    assert report["success"] is True
    assert report["rows_validated"]["bronze_events"] == 0
    assert report["suites"][BRONZE_EVENTS_SUITE]["successful"] == 21
    assert sorted(report["suites"]) == sorted(ALL_SUITES[:4])
    assert report["skipped"] == {
        VOLUME_SUITE: "no silver events before 2015-09-18: no trailing days to compare the "
        "day's volume with"
    }
    assert report["volume"]["days"] == 0


@pytest.mark.spark
def test_a_silver_partition_without_item_id_is_reported_not_a_crash(spark, cfg):
    shop = Shop()
    _write_partitions(spark, cfg.paths.lake, shop)
    silver = Lake(cfg.paths.lake).partition("silver", "events", RUN_DATE)
    spark.createDataFrame(shop.silver, EVENTS_DDL).drop("item_id").write.mode("overwrite").parquet(
        str(silver)
    )

    with pytest.raises(DataValidationError, match=r"silver_events: expect_table_columns_to_match"):
        run(cfg, RUN_DATE, spark)

    report = Lake(cfg.paths.lake).read_stage_report(RUN_DATE, "validate")
    assert report["skipped"] == {
        COVERAGE_SUITE: "column ['item_id'] missing (see the other suites)"
    }
    assert COVERAGE_SUITE not in report["suites"]
    assert report["suites"][VOLUME_SUITE]["success"] is True


def test_missing_partition_names_the_path_and_removes_an_earlier_verdict(cfg):
    lake = Lake(cfg.paths.lake)
    lake.write_stage_report(RUN_DATE, "validate", {"run_date": "2015-09-18", "success": True})
    for layer, table in [("bronze", "events"), ("bronze", "catalog")]:
        lake.partition(layer, table, RUN_DATE).mkdir(parents=True)
        (lake.partition(layer, table, RUN_DATE) / "_SUCCESS").touch()
    expected = cfg.paths.lake / "silver" / "events" / "dt=2015-09-18"

    with pytest.raises(FileNotFoundError, match=re.escape(f"{expected}: run clean for 2015-09-18")):
        run(cfg, RUN_DATE, None)  # fails before it needs Spark

    # train must not find the earlier run's success for data that was never validated.
    assert not lake.stage_report(RUN_DATE, "validate").exists()


@pytest.mark.spark
def test_a_history_load_is_told_from_a_nightly_arrival_by_its_first_event(spark):
    ddl = Shop().events_ddl
    nightly = spark.createDataFrame(_day() + _history()[-1:], ddl)  # a late event of the 17th
    loaded = spark.createDataFrame(_history() + _day(), ddl)  # the 15th on, landed at once

    assert history_load_start(nightly, RUN_DATE) is None
    assert history_load_start(loaded, RUN_DATE) == date(2015, 9, 15)
