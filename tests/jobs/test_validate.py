"""jobs/validate.py: the GX suites pass clean partitions and name what broke in bad ones."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from jobs.core.paths import Lake
from jobs.validate import (
    DataValidationError,
    expectation_parameters,
    load_suite,
    main,
    summarize,
    validate_partitions,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = date(2015, 9, 18)

EVENTS_DDL = (
    "event_ts timestamp, visitor_id long, item_id long, event_type string, transaction_id long"
)
CATALOG_DDL = "item_id long, category_id long, available boolean, first_seen_ts timestamp"


def _ts(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2015, 9, day, hour, minute, second, tzinfo=UTC)


def _clean_events() -> list[tuple]:
    """12 events on 2015-09-18 (test config: min_events = 10), the last 1 s before midnight UTC."""
    return [
        (_ts(18, 0), 1, 10, "view", None),
        (_ts(18, 1), 1, 11, "view", None),
        (_ts(18, 2), 1, 10, "cart", None),
        (_ts(18, 3), 1, 10, "purchase", 501),
        (_ts(18, 4), 2, 12, "view", None),
        (_ts(18, 5), 2, 13, "view", None),
        (_ts(18, 6), 2, 13, "cart", None),
        (_ts(18, 7), 3, 14, "view", None),
        (_ts(18, 8), 3, 10, "view", None),
        (_ts(18, 9), 3, 10, "purchase", 502),
        (_ts(18, 10), 4, 11, "view", None),
        (_ts(18, 23, 59, 59), 4, 12, "view", None),
    ]


def _clean_catalog() -> list[tuple]:
    return [
        (10, 1, True, _ts(1, 0)),
        (11, 1, False, _ts(2, 0)),
        (12, None, True, _ts(3, 0)),
        (13, 2, True, _ts(4, 0)),
        (14, 2, True, _ts(5, 0)),
    ]


def _write_partitions(spark, lake_root: Path, events: list[tuple], catalog: list[tuple]) -> None:
    lake = Lake(lake_root)
    for table, layer, rows, ddl in [
        ("events", "silver", events, EVENTS_DDL),
        ("catalog", "bronze", catalog, CATALOG_DDL),
    ]:
        path = lake.partition(layer, table, RUN_DATE)
        spark.createDataFrame(rows, ddl).write.mode("overwrite").parquet(str(path))


def test_expectation_parameters_bound_the_logical_date_exclusively():
    assert expectation_parameters(RUN_DATE, 10) == {
        "end_of_logical_date": datetime(2015, 9, 19, tzinfo=UTC),
        "min_events": 10,
    }


def test_load_suite_rejects_a_missing_or_misnamed_suite(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_suite(tmp_path, "nope")
    (tmp_path / "catalog.json").write_text(json.dumps({"name": "events", "expectations": []}))
    with pytest.raises(ValueError, match="named 'events', expected 'catalog'"):
        load_suite(tmp_path, "catalog")


def test_summarize_counts_and_names_failures_from_result_json():
    results = {
        "catalog": {
            "success": False,
            "statistics": {
                "evaluated_expectations": 2,
                "successful_expectations": 1,
                "unsuccessful_expectations": 1,
            },
            "results": [
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
        }
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
    results = {
        "silver_events": {
            "success": False,
            "statistics": {
                "evaluated_expectations": 1,
                "successful_expectations": 0,
                "unsuccessful_expectations": 1,
            },
            "results": [failed_by_error],
        }
    }
    [failure] = summarize(results)["suites"]["silver_events"]["failures"]
    assert failure == {
        "expectation": "expect_column_values_to_be_in_set",
        "observed": "error: Column 'event_type' does not exist",
    }


def _unknown_event_type(events, catalog):
    events[4] = (_ts(18, 4), 2, 12, "click", None)


def _null_visitor(events, catalog):
    events[5] = (_ts(18, 5), None, 13, "view", None)


def _event_after_logical_date(events, catalog):
    events[-1] = (_ts(19, 0), 4, 12, "view", None)  # midnight: the exclusive bound itself


def _transaction_on_view(events, catalog):
    events[0] = (_ts(18, 0), 1, 10, "view", 777)


def _too_few_events(events, catalog):
    del events[3:]


def _duplicated_catalog_item(events, catalog):
    catalog.append((13, 3, False, _ts(6, 0)))


@pytest.mark.spark
@pytest.mark.parametrize(
    ("corrupt", "suite", "expectation", "observed"),
    [
        pytest.param(
            _unknown_event_type,
            "silver_events",
            "expect_column_values_to_be_in_set(event_type)",
            "1 of 12 rows unexpected, e.g. ['click']",
            id="unknown-event-type",
        ),
        pytest.param(
            _null_visitor,
            "silver_events",
            "expect_column_values_to_not_be_null(visitor_id)",
            "1 of 12 rows unexpected",
            id="null-visitor-id",
        ),
        pytest.param(
            _event_after_logical_date,
            "silver_events",
            "expect_column_values_to_be_between(event_ts)",
            "1 of 12 rows unexpected",  # the value shows in the driver's local time zone
            id="event-after-logical-date",
        ),
        pytest.param(
            _transaction_on_view,
            "silver_events",
            "expect_column_values_to_be_null(transaction_id) where event_type != 'purchase'",
            "1 of 10 rows unexpected, e.g. [777]",  # 10 non-purchases
            id="transaction-id-on-view",
        ),
        pytest.param(
            _too_few_events,
            "silver_events",
            "expect_table_row_count_to_be_between",
            "observed 3",
            id="fewer-than-min-events",
        ),
        pytest.param(
            _duplicated_catalog_item,
            "catalog",
            "expect_column_values_to_be_unique(item_id)",
            "2 of 6 rows unexpected, e.g. [13]",
            id="duplicated-catalog-item",
        ),
    ],
)
def test_bad_partitions_fail_naming_the_expectation(
    spark, cfg, corrupt, suite, expectation, observed
):
    events, catalog = _clean_events(), _clean_catalog()
    corrupt(events, catalog)
    _write_partitions(spark, cfg.paths.lake, events, catalog)

    with pytest.raises(DataValidationError) as failure:
        validate_partitions(spark, cfg, RUN_DATE)

    message = str(failure.value)
    assert f"{suite}: {expectation}: " in message
    assert observed in message
    assert "validate.json" in message
    report = Lake(cfg.paths.lake).read_stage_report(RUN_DATE, "validate")
    assert report["success"] is False
    failed = {name: s["failed_expectations"] for name, s in report["suites"].items()}
    other = "catalog" if suite == "silver_events" else "silver_events"
    assert failed == {suite: [expectation], other: []}
    assert Path(report["data_docs_index"]).is_file()


@pytest.mark.spark
def test_missing_silver_partition_names_the_path(spark, cfg):
    expected = cfg.paths.lake / "silver" / "events" / "dt=2015-09-18"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{expected}: did the clean stage run?")):
        validate_partitions(spark, cfg, RUN_DATE)


@pytest.mark.spark
def test_main_passes_clean_partitions_and_reports_exact_counts(spark, tmp_path):
    lake_root, reports = tmp_path / "lake", tmp_path / "reports"
    suites = PROJECT_ROOT / "great_expectations" / "expectations"
    # Relative paths resolve against the overlay's grandparent, so every path used is absolute.
    overlay = tmp_path / "configs" / "validate.yaml"
    overlay.parent.mkdir()
    overlay.write_text(
        f"extends: {PROJECT_ROOT / 'configs' / 'test.yaml'}\n"
        f"paths: {{lake: {lake_root}, reports: {reports}, suites: {suites}}}\n"
    )
    _write_partitions(spark, lake_root, _clean_events(), _clean_catalog())

    assert main(["--run-date", "2015-09-18", "--config", str(overlay)]) == 0

    report = Lake(lake_root).read_stage_report(RUN_DATE, "validate")
    assert report["success"] is True
    assert report["rows_validated"] == {"silver_events": 12, "catalog": 5}
    counts = {
        name: (s["evaluated"], s["successful"], s["failed"], s["failed_expectations"])
        for name, s in report["suites"].items()
    }
    assert counts == {"silver_events": (13, 13, 0, []), "catalog": (8, 8, 0, [])}
    docs = reports / "validation" / "dt=2015-09-18"
    assert report["data_docs_index"] == str(docs / "index.html")
    assert (docs / "index.html").is_file()
    raw = json.loads((docs / "validation_results.json").read_text())
    assert raw["silver_events"]["statistics"]["evaluated_expectations"] == 13
    assert raw["catalog"]["success"] is True
