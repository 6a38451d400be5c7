"""jobs/train.py: no model is trained on a date whose data did not pass validation."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.infra.paths import Lake
from jobs.train import UnvalidatedDataError, earlier_search, main, require_validated

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = date(2015, 9, 18)
PASSED = {"run_date": "2015-09-18", "success": True, "suites": {}}
FAILED = {
    "run_date": "2015-09-18",
    "success": False,
    "suites": {
        "catalog": {"success": True, "failed_expectations": []},
        "bronze_events": {
            "success": False,
            "failed_expectations": ["expect_column_values_to_be_in_set(event_type)"],
        },
    },
    "data_docs_index": "/reports/validation/dt=2015-09-18/index.html",
}


def test_require_validated_accepts_a_passed_validation_of_the_same_date(tmp_path):
    lake = Lake(tmp_path)
    lake.write_stage_report(RUN_DATE, "validate", PASSED)
    assert require_validated(lake, RUN_DATE) is None


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (None, "no validation report for 2015-09-18 at .*validate.json: run the validate stage"),
        (
            FAILED,
            r"validation of 2015-09-18 did not pass \({'bronze_events': "
            r"\['expect_column_values_to_be_in_set\(event_type\)'\]}\); refusing to train\. "
            r"Data Docs: /reports/validation/dt=2015-09-18/index.html",
        ),
        ({**PASSED, "run_date": "2015-09-17"}, "validation of '2015-09-17', not of 2015-09-18"),
        ({"run_date": "2015-09-18"}, "did not pass"),  # no verdict is not a pass
        ({**PASSED, "success": "true"}, "did not pass"),  # only a JSON true is a pass
    ],
    ids=["never-validated", "failed", "other-date", "no-verdict", "string-verdict"],
)
def test_require_validated_refuses_anything_but_a_pass(tmp_path, report, message):
    lake = Lake(tmp_path)
    if report is not None:
        lake.write_stage_report(RUN_DATE, "validate", report)
    with pytest.raises(UnvalidatedDataError, match=message):
        require_validated(lake, RUN_DATE)


def test_main_refuses_before_reading_the_split_or_touching_mlflow(tmp_path):
    lake_root = tmp_path / "lake"
    overlay = tmp_path / "configs" / "train.yaml"
    overlay.parent.mkdir()
    overlay.write_text(
        f"extends: {PROJECT_ROOT / 'configs' / 'test.yaml'}\n"
        f"paths: {{lake: {lake_root}}}\n"
        f"mlflow: {{tracking_uri: 'sqlite:///{tmp_path / 'mlflow.db'}', "
        f"artifact_root: {tmp_path / 'artifacts'}}}\n"
    )
    Lake(lake_root).write_stage_report(RUN_DATE, "validate", FAILED)

    # No split partition exists: the refusal must come first, not a FileNotFoundError.
    with pytest.raises(UnvalidatedDataError, match="did not pass"):
        main(["--run-date", "2015-09-18", "--config", str(overlay)])

    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "artifacts").exists()
    assert not Lake(lake_root).stage_report(RUN_DATE, "train").exists()


def _trained(lake: Lake, day: date, tuned_on: str | None, config_hash: str = "abc") -> None:
    params = {"factors": 8, "tuned": day.isoformat()}
    report = {"params": params, "config_hash": config_hash, "tuned_on": tuned_on}
    lake.write_stage_report(day, "train", report)


def test_earlier_search_reuses_a_search_within_the_window_and_the_same_config(tmp_path):
    lake = Lake(tmp_path)
    day = lambda n: RUN_DATE - timedelta(days=n)  # noqa: E731
    _trained(lake, day(6), day(6).isoformat())  # searched 6 days before
    _trained(lake, day(3), day(6).isoformat())  # reused that search
    _trained(lake, day(1), day(1).isoformat(), config_hash="other")  # another config

    assert earlier_search(lake, RUN_DATE, 7, "abc")["params"]["tuned"] == day(3).isoformat()
    # A week later the search of day(6) is out of the window: search again.
    assert earlier_search(lake, RUN_DATE + timedelta(days=1), 7, "abc") is None
    assert earlier_search(lake, RUN_DATE, 7, "changed") is None
    assert earlier_search(lake, day(1), 2, "other")["tuned_on"] == day(1).isoformat()
    # every_days 1: only the date's own search, so a rerun fits the same parameters.
    assert earlier_search(lake, RUN_DATE, 1, "abc") is None
    _trained(lake, RUN_DATE, RUN_DATE.isoformat())
    assert earlier_search(lake, RUN_DATE, 1, "abc")["tuned_on"] == RUN_DATE.isoformat()
    # Reports without a search (tuning off, an older version) never count.
    _trained(lake, day(2), None)
    assert earlier_search(lake, day(2), 1, "abc") is None
