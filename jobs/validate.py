"""Validate one logical date's bronze events, catalog and silver events with Great Expectations.

Reads ``lake/bronze/events/dt=D`` (the events that arrived for D), ``lake/bronze/catalog/dt=D``
and ``lake/silver/events/dt=D`` (the cleaned history up to D, what the model trains on), and
checks them against the JSON suites in ``great_expectations/expectations/``:

- ``bronze_events``, ``catalog``, ``silver_events``: one suite per partition, as written;
- ``silver_catalog_coverage``: silver events against the catalog snapshot (derived frame);
- ``silver_daily_volume``: silver events dated D against the trailing days' mean (derived
  frame; skipped, with a note in the report, when silver has no events before D).

Writes Data Docs and the raw results to ``<reports>/validation/dt=D/`` (the index path is logged)
and the stage report to ``lake/_runs/dt=D/validate.json``, which ``jobs/train.py`` requires to
say success. If any expectation fails it then raises DataValidationError naming each one.

    spark-submit jobs/validate.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, ValidateConfig, VolumeCheckConfig
from jobs.infra.paths import Lake, end_of_day, write_json_atomic
from jobs.infra.schemas import EVENT_TS, ITEM_ID
from jobs.infra.spark import get_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

BRONZE_EVENTS_SUITE = "bronze_events"
CATALOG_SUITE = "catalog"
SILVER_EVENTS_SUITE = "silver_events"
COVERAGE_SUITE = "silver_catalog_coverage"
VOLUME_SUITE = "silver_daily_volume"
NOT_IN_CATALOG = "item_id_not_in_catalog"  # the derived column silver_catalog_coverage checks
DOCS_SITE = "validation"
RESULTS_FILE = "validation_results.json"
_SHOWN_VALUES = 5  # unexpected values quoted per failed expectation in the error message


class DataValidationError(RuntimeError):
    """An expectation failed; the message names each one, its observed values and the report."""


@dataclass(frozen=True)
class VolumeBaseline:
    """Silver events in the days before D, and the bounds they set on the events dated D.

    days: days before D the mean is over, in [0, trailing_days]; fewer when silver's history
    starts later, 0 when it has no event before D (then there is nothing to compare with).
    min_events / max_events: the ratios times the mean, rounded inwards to whole events.
    """

    days: int
    events: int
    mean_per_day: float | None
    min_events: int | None
    max_events: int | None


def load_suite(suites_dir: Path, name: str) -> dict[str, Any]:
    """The GX 1.x suite JSON stored as ``suites_dir/<name>.json``; its `name` must match."""
    path = suites_dir / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite {name!r} not found at {path}")
    suite = json.loads(path.read_text())
    if suite.get("name") != name:
        raise ValueError(f"suite file {path} is named {suite.get('name')!r}, expected {name!r}")
    return suite


def expectation_parameters(
    run_date: date, settings: ValidateConfig, min_event_date: date
) -> dict[str, Any]:
    """Values for the suites' ``{"$PARAMETER": ...}`` placeholders for one logical date.

    start_of_data: min_event_date at 00:00 UTC, the inclusive lower bound of event times.
    end_of_logical_date: run_date + 1 day at 00:00 UTC, the exclusive upper bound.
    min_events (rows, >= 0), max_price (shop currency), catalog_coverage (share in [0, 1]):
    from the config. The volume bounds come from volume_parameters, when there is history.
    """
    if min_event_date > run_date:
        raise ValueError(f"ingest.min_event_date {min_event_date} is after the run date {run_date}")
    return {
        "start_of_data": datetime.combine(min_event_date, time(0), tzinfo=UTC),
        "end_of_logical_date": end_of_day(run_date),
        "min_events": settings.min_events,
        "max_price": settings.max_price,
        "catalog_coverage": settings.catalog_coverage,
    }


def flag_items_missing_from_catalog(events: DataFrame, catalog: DataFrame) -> DataFrame:
    """One row per event: item_id_not_in_catalog, the event's item_id if the catalog lacks it.

    Null for events whose item is in the catalog, so the failing values GX quotes are the
    missing item ids. A duplicated catalog item does not duplicate events (the catalog suite
    reports it).
    """
    from pyspark.sql import functions as F

    known = catalog.select(ITEM_ID).distinct().withColumn("_known", F.lit(True))
    return (
        events.select(ITEM_ID)
        .join(known, ITEM_ID, "left")
        .select(F.when(F.col("_known").isNull(), F.col(ITEM_ID)).alias(NOT_IN_CATALOG))
    )


def events_on_day(events: DataFrame, run_date: date) -> DataFrame:
    """The events dated on run_date: event_ts in [00:00 UTC of run_date, 00:00 UTC of the next)."""
    from pyspark.sql import functions as F

    start = end_of_day(run_date - timedelta(days=1))
    return events.where(
        (F.col(EVENT_TS) >= F.lit(start)) & (F.col(EVENT_TS) < F.lit(end_of_day(run_date)))
    )


def history_load_start(bronze: DataFrame, run_date: date) -> date | None:
    """The first event date when the day's bronze holds events from before the previous day
    (a history load landed at once), else None (a nightly arrival; late events of the day
    before are normal)."""
    from pyspark.sql import functions as F

    if _lacking(bronze, (EVENT_TS,)):
        return None
    first = bronze.agg(F.min(EVENT_TS)).first()[0]
    if first is None or first.date() >= run_date - timedelta(days=1):
        return None
    return first.date()


def trailing_volume(
    events: DataFrame, run_date: date, settings: VolumeCheckConfig
) -> VolumeBaseline:
    """The mean per day of events in the trailing_days days before run_date, and its bounds.

    The window starts at the day of silver's first event when that is later than
    run_date - trailing_days, so a young history is not diluted by days before the shop's
    first event; days inside the window without events count as zero.
    """
    from pyspark.sql import functions as F

    day = end_of_day(run_date - timedelta(days=1))  # 00:00 UTC of run_date
    window_start = day - timedelta(days=settings.trailing_days)
    ts = F.col(EVENT_TS)
    row = events.agg(
        # Epoch seconds, not a collected timestamp: PySpark turns those into naive local times.
        F.unix_seconds(F.min(ts)).alias("first"),
        F.count(F.when((ts >= F.lit(window_start)) & (ts < F.lit(day)), True)).alias("events"),
    ).first()
    if row["first"] is None:
        return VolumeBaseline(0, 0, None, None, None)
    first_day = datetime.fromtimestamp(row["first"], UTC).date()
    days = max(0, min(settings.trailing_days, (run_date - first_day).days))
    if days == 0:
        return VolumeBaseline(0, 0, None, None, None)
    mean = row["events"] / days
    # Whole events: n >= mean * min_ratio  <=>  n >= ceil(...), and likewise floor for the top;
    # the epsilon keeps float noise (4.0 * 0.7 = 2.8000000000000003) from moving a bound.
    return VolumeBaseline(
        days=days,
        events=row["events"],
        mean_per_day=mean,
        min_events=math.ceil(mean * settings.min_ratio - 1e-9),
        max_events=math.floor(mean * settings.max_ratio + 1e-9),
    )


def volume_parameters(baseline: VolumeBaseline) -> dict[str, int]:
    """The $PARAMETER values of silver_daily_volume; ValueError without trailing history."""
    if baseline.days == 0:
        raise ValueError("no trailing history: the volume check has nothing to compare with")
    return {"volume_min_events": baseline.min_events, "volume_max_events": baseline.max_events}


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
    return {"expectation": label, "observed": _describe_observed(result) + _describe_bounds(kwargs)}


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


def _describe_bounds(kwargs: Mapping[str, Any]) -> str:
    # The kwargs of a result hold the run's $PARAMETER values, so the operator sees the limit
    # that was applied without opening the suite and the config.
    parts = []
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None or high is not None:
        left = "(" if kwargs.get("strict_min") else "["
        right = ")" if kwargs.get("strict_max") else "]"
        low_text = "-inf" if low is None else low
        high_text = "inf" if high is None else high
        parts.append(f"allowed {left}{low_text}, {high_text}{right}")
    mostly = kwargs.get("mostly")
    if isinstance(mostly, int | float) and mostly < 1:
        parts.append(f"mostly {mostly}")
    return "; " + "; ".join(parts) if parts else ""


def run_suites(
    frames: Mapping[str, DataFrame],
    suites: Mapping[str, Mapping[str, Any]],
    parameters: Mapping[str, Any],
    docs_dir: Path,
    run_name: str,
) -> dict[str, dict[str, Any]]:
    """Validate each DataFrame against the suite of the same name; build Data Docs in docs_dir.

    One ValidationDefinition per suite rather than one Checkpoint: a Checkpoint hands the same
    batch parameters (here: the DataFrame) to all its definitions, and each suite has its own
    frame. An ephemeral GX context keeps suites and results in memory; only the docs touch
    disk, built once for all suites. Returns each suite's raw result as a JSON-ready dict.
    """
    missing = sorted(set(frames) - set(suites))
    if missing:
        raise ValueError(f"no suite for frame(s) {missing}; suites given: {sorted(suites)}")
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


def _lacking(frame: DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if c not in frame.columns]


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    spark = get_spark("validate", args.cfg)
    try:
        run(args.cfg, args.run_date, spark)
    finally:
        spark.stop()
    return 0


def run(cfg: Config, run_date: date, spark: SparkSession) -> dict[str, Any]:
    """Validate the day's bronze events, catalog and silver events; write docs and reports.

    Returns the stage report. Raises FileNotFoundError if a partition is missing and
    DataValidationError (after writing everything) if any expectation fails.
    """
    lake = Lake(cfg.paths.lake)
    # A crash below must not leave an earlier run's verdict for train to find.
    lake.stage_report(run_date, "validate").unlink(missing_ok=True)
    partitions = {
        BRONZE_EVENTS_SUITE: lake.complete("bronze", "events", run_date, producer="ingest"),
        CATALOG_SUITE: lake.complete("bronze", "catalog", run_date, producer="ingest"),
        SILVER_EVENTS_SUITE: lake.complete("silver", "events", run_date, producer="clean"),
    }
    names = (*partitions, COVERAGE_SUITE, VOLUME_SUITE)
    suites = {name: load_suite(cfg.paths.suites, name) for name in names}
    parameters = expectation_parameters(run_date, cfg.validate_, cfg.ingest.min_event_date)
    docs_dir = cfg.paths.reports / "validation" / f"dt={run_date.isoformat()}"
    shutil.rmtree(docs_dir, ignore_errors=True)  # a rerun replaces the day's docs, never adds

    # Read as written (no schema): the suites check the columns and types that are really there.
    read = {name: spark.read.parquet(str(path)).cache() for name, path in partitions.items()}
    silver, catalog = read[SILVER_EVENTS_SUITE], read[CATALOG_SUITE]
    frames: dict[str, DataFrame] = dict(read)
    skipped: dict[str, str] = {}
    volume: dict[str, Any] | None = None
    try:
        rows = {name: frame.count() for name, frame in read.items()}
        if lacking := _lacking(silver, (ITEM_ID,)) + _lacking(catalog, (ITEM_ID,)):
            skipped[COVERAGE_SUITE] = f"column {lacking} missing (see the other suites)"
        else:
            frames[COVERAGE_SUITE] = flag_items_missing_from_catalog(silver, catalog)
        loaded_from = history_load_start(read[BRONZE_EVENTS_SUITE], run_date)
        if _lacking(silver, (EVENT_TS,)):
            skipped[VOLUME_SUITE] = f"column {EVENT_TS!r} missing from silver events"
        elif loaded_from is not None:
            # A history loaded at once ends where the export was cut, often mid-day: the day's
            # volume says nothing about the feed then.
            skipped[VOLUME_SUITE] = (
                f"a history load: the day's files hold events from {loaded_from} on, not one "
                "day's arrivals"
            )
        else:
            baseline = trailing_volume(silver, run_date, cfg.validate_.volume)
            volume = asdict(baseline)
            if baseline.days == 0:
                skipped[VOLUME_SUITE] = (
                    f"no silver events before {run_date}: no trailing days to compare the "
                    "day's volume with"
                )
            else:
                parameters.update(volume_parameters(baseline))
                frames[VOLUME_SUITE] = events_on_day(silver, run_date)
        for name, note in skipped.items():
            log.warning("validate %s: %s skipped: %s", run_date, name, note)
        results = run_suites(
            frames,
            {name: suites[name] for name in frames},
            parameters,
            docs_dir,
            run_name=run_date.isoformat(),
        )
    finally:
        for frame in read.values():
            frame.unpersist()

    write_json_atomic(docs_dir / RESULTS_FILE, results)
    index = docs_dir / "index.html"
    report = summarize(results)
    report.update(
        run_date=run_date.isoformat(),
        partitions={name: str(path) for name, path in partitions.items()},
        rows_validated=rows,
        parameters={
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in parameters.items()
        },
        volume=volume,
        skipped=skipped,
        data_docs_index=str(index),
        validation_results=str(docs_dir / RESULTS_FILE),
    )
    report_path = lake.write_stage_report(run_date, "validate", report)
    # Logged on success and failure alike: the task log is where an operator looks first.
    log.info("validate %s: Data Docs at %s", run_date, index)
    if not report["success"]:
        raise DataValidationError(failure_message(run_date, report, report_path))
    log.info("validation passed for %s: %s rows", run_date, rows)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
