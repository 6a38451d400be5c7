"""Validate one logical date's silver events and catalog snapshot with Great Expectations.

Reads ``lake/silver/events/dt=D`` and ``lake/bronze/catalog/dt=D``, checks them against the JSON
suites in ``great_expectations/expectations/`` (``silver_events.json``, ``catalog.json``), writes
Data Docs and the raw results to ``<reports>/validation/dt=D/`` and the stage report to
``lake/_runs/dt=D/validate.json``. If any expectation fails it then raises DataValidationError.

    spark-submit jobs/validate.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.core.cli import parse_stage_args
from jobs.core.config import Config
from jobs.core.paths import Lake, end_of_day, write_json_atomic
from jobs.core.spark import get_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

CATALOG_SUITE = "catalog"
DOCS_SITE = "validation"
RESULTS_FILE = "validation_results.json"
_SHOWN_VALUES = 5  # unexpected values quoted per failed expectation in the error message


class DataValidationError(RuntimeError):
    """An expectation failed; the message names each one, its observed values and the report."""


def load_suite(suites_dir: Path, name: str) -> dict[str, Any]:
    """The GX 1.x suite JSON stored as ``suites_dir/<name>.json``; its `name` must match."""
    path = suites_dir / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite {name!r} not found at {path}")
    suite = json.loads(path.read_text())
    if suite.get("name") != name:
        raise ValueError(f"suite file {path} is named {suite.get('name')!r}, expected {name!r}")
    return suite


def expectation_parameters(run_date: date, min_events: int) -> dict[str, Any]:
    """Values for the suites' ``{"$PARAMETER": ...}`` placeholders for one logical date.

    end_of_logical_date: run_date + 1 day at 00:00 UTC, the exclusive upper bound of event_ts.
    min_events: the fewest rows the events partition may hold (>= 0).
    """
    return {"end_of_logical_date": end_of_day(run_date), "min_events": min_events}


def summarize(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Outcome and per-suite counts from GX validation results (``to_json_dict()`` form)."""
    suites = {}
    for name, result in results.items():
        stats = result["statistics"]
        failures = [_describe_failure(r) for r in result["results"] if not r["success"]]
        suites[name] = {
            "success": bool(result["success"]),
            "evaluated": stats["evaluated_expectations"],
            "successful": stats["successful_expectations"],
            "failed": stats["unsuccessful_expectations"],
            "failed_expectations": [f["expectation"] for f in failures],
            "failures": failures,
        }
    return {"success": all(s["success"] for s in suites.values()), "suites": suites}


def failure_message(run_date: date, summary: Mapping[str, Any], report_path: Path) -> str:
    """The error text an operator reads in the Airflow task log."""
    lines = [
        f"{suite}: {failure['expectation']}: {failure['observed']}"
        for suite, outcome in summary["suites"].items()
        for failure in outcome["failures"]
    ]
    return "\n  ".join(
        [f"data validation failed for {run_date}: {len(lines)} expectation(s) failed", *lines]
        + [f"Data Docs: {summary['data_docs_index']}", f"stage report: {report_path}"]
    )


def _describe_failure(result: Mapping[str, Any]) -> dict[str, str]:
    config = result["expectation_config"]
    kwargs = config["kwargs"]
    label = config["type"] + (f"({kwargs['column']})" if "column" in kwargs else "")
    condition = kwargs.get("row_condition")
    if isinstance(condition, Mapping) and condition.get("type") == "comparison":
        label += f" where {condition['column']['name']} {condition['operator']} "
        label += repr(condition["parameter"])
    return {"expectation": label, "observed": _describe_observed(result)}


def _describe_observed(result: Mapping[str, Any]) -> str:
    info = result.get("exception_info") or {}
    # A failed expectation carries one flat error; failed metrics are keyed by metric id.
    errors = [info] if "raised_exception" in info else list(info.values())
    messages = [
        e.get("exception_message")
        for e in errors
        if isinstance(e, Mapping) and e.get("raised_exception")
    ]
    if messages:
        return "error: " + "; ".join(str(m) for m in messages)
    outcome = result.get("result") or {}
    if "observed_value" in outcome:
        return f"observed {outcome['observed_value']!r}"
    if "unexpected_count" in outcome:
        distinct = {repr(v): v for v in outcome.get("partial_unexpected_list", [])}
        shown = list(distinct.values())[:_SHOWN_VALUES]
        return (
            f"{outcome['unexpected_count']} of {outcome.get('element_count')} rows unexpected,"
            f" e.g. {shown}"
        )
    return json.dumps(outcome, default=str)


def run_suites(
    frames: Mapping[str, DataFrame],
    suites: Mapping[str, Mapping[str, Any]],
    parameters: Mapping[str, Any],
    docs_dir: Path,
    run_name: str,
) -> dict[str, dict[str, Any]]:
    """Validate each DataFrame against the suite of the same name; build Data Docs in docs_dir.

    An ephemeral GX context keeps suites and results in memory; only the docs touch disk.
    Returns the raw validation result of each suite as a JSON-ready dict.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO is internals
    # Submodule paths: ruff takes the top-level name for the repo's great_expectations/ folder.
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.core.validation_definition import ValidationDefinition
    from great_expectations.data_context import get_context
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = get_context(mode="ephemeral", project_config=project)
    source = context.data_sources.add_spark("lake", persist=False)  # the caller caches
    run_id = RunIdentifier(run_name=run_name)
    results = {}
    for name, frame in frames.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(ExpectationSuite(**suites[name]))
        definition = context.validation_definitions.add(
            ValidationDefinition(name=name, data=batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=dict(parameters),
            run_id=run_id,
        )
        results[name] = result.to_json_dict()
    context.build_data_docs(site_names=[DOCS_SITE])
    return results


def _require_partition(path: Path, what: str, producer: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"no {what} partition at {path}: did the {producer} stage run?")


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    validate_partitions(get_spark("validate", args.cfg), args.cfg, args.run_date)
    return 0


def validate_partitions(spark: SparkSession, cfg: Config, run_date: date) -> dict[str, Any]:
    """Validate the day's silver events and catalog; write docs, raw results and stage report.

    Returns the stage report. Raises FileNotFoundError if a partition is missing and
    DataValidationError (after writing everything) if any expectation fails.
    """
    lake = Lake(cfg.paths.lake)
    events_suite = cfg.validate_.suite
    partitions = {
        events_suite: lake.partition("silver", "events", run_date),
        CATALOG_SUITE: lake.partition("bronze", "catalog", run_date),
    }
    _require_partition(partitions[events_suite], "silver events", "clean")
    _require_partition(partitions[CATALOG_SUITE], "catalog", "ingest")
    suites = {name: load_suite(cfg.paths.suites, name) for name in partitions}
    docs_dir = cfg.paths.reports / "validation" / f"dt={run_date.isoformat()}"
    shutil.rmtree(docs_dir, ignore_errors=True)  # a rerun replaces the day's docs, never adds

    # Read as written (no schema): the suites check the columns and types that are really there.
    frames = {name: spark.read.parquet(str(path)).cache() for name, path in partitions.items()}
    try:
        rows = {name: frame.count() for name, frame in frames.items()}
        results = run_suites(
            frames,
            suites,
            expectation_parameters(run_date, cfg.validate_.min_events),
            docs_dir,
            run_name=run_date.isoformat(),
        )
    finally:
        for frame in frames.values():
            frame.unpersist()

    write_json_atomic(docs_dir / RESULTS_FILE, results)
    report = summarize(results)
    report.update(
        run_date=run_date.isoformat(),
        rows_validated=rows,
        data_docs_index=str(docs_dir / "index.html"),
        validation_results=str(docs_dir / RESULTS_FILE),
    )
    report_path = lake.write_stage_report(run_date, "validate", report)
    if not report["success"]:
        raise DataValidationError(failure_message(run_date, report, report_path))
    log.info("validation passed for %s: %s rows; Data Docs at %s", run_date, rows, docs_dir)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
