"""Ingest: raw shop files (RetailRocket layout) -> typed bronze events, quarantine and catalog.

For logical date D it reads the raw events up to the end of D (UTC), parses them into the bronze
schema, sends malformed rows to quarantine with a reason and the raw line, drops exact duplicate
lines, and writes a catalog snapshot (category, availability, first seen) as of D. Rows after D
are left for later runs. Every run reconciles:

    raw rows = accepted + quarantined + duplicates + after the logical date

Run alone:
    spark-submit jobs/ingest.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.cli import parse_stage_args
from jobs.core.paths import end_of_day
from jobs.core.schemas import (
    AVAILABLE,
    CATEGORY_ID,
    EVENT_COLUMNS,
    EVENT_TS,
    EVENT_TYPE,
    FIRST_SEEN_TS,
    ITEM_ID,
    RAW_LINE,
    REASON,
    TRANSACTION_ID,
    VISITOR_ID,
)
from jobs.core.spark import get_spark

log = logging.getLogger("ingest")

EVENTS_FILE = "events.csv"
PROPERTIES_FILE = "item_properties.csv"
EVENTS_HEADER = ("timestamp", "visitorid", "event", "itemid", "transactionid")
PROPERTIES_HEADER = ("timestamp", "itemid", "property", "value")
# RetailRocket's event names -> ours.
EVENT_NAMES = {"view": "view", "addtocart": "cart", "transaction": "purchase"}
# Timestamps outside this range are impossible for a shop's event log (ms since epoch).
MIN_EVENT_TS = datetime(2000, 1, 1, tzinfo=UTC)


class SchemaMismatchError(ValueError):
    """A raw file's header is missing or renamed a column."""


class QuarantineRateError(RuntimeError):
    """Too large a share of a file's rows was malformed."""


@dataclass(frozen=True)
class ParsedEvents:
    accepted: DataFrame  # bronze schema, duplicates still in
    quarantined: DataFrame  # raw_line, reason
    later: DataFrame  # rows after the logical date, left for later runs


def check_header(header_line: str, expected: tuple[str, ...], file_name: str) -> None:
    columns = tuple(c.strip() for c in header_line.split(","))
    missing = [c for c in expected if c not in columns]
    if missing or len(columns) != len(expected):
        raise SchemaMismatchError(
            f"{file_name}: expected columns {list(expected)}, found {list(columns)}; "
            f"missing {missing}"
        )


def _field(fields, i: int):
    # get() yields null past the end of a short line, where [] fails under ANSI mode.
    return F.get(fields, F.lit(i))


def parse_events(lines: DataFrame, until: datetime) -> ParsedEvents:
    """Parse raw CSV lines (column `value`, header removed) into bronze events and quarantine.

    Rows at or after `until` are dropped from both outputs (they belong to later runs).
    """
    fields = F.split(F.col("value"), ",", -1)
    ts_ms = _field(fields, 0).try_cast("long")
    raw_event = _field(fields, 2)
    event_type = F.coalesce(
        *[F.when(raw_event == raw, F.lit(ours)) for raw, ours in EVENT_NAMES.items()]
    )
    txn = _field(fields, 4)
    parsed = lines.select(
        F.col("value").alias(RAW_LINE),
        F.size(fields).alias("_n_fields"),
        F.when(ts_ms.isNotNull(), F.timestamp_millis(ts_ms)).alias(EVENT_TS),
        _field(fields, 1).try_cast("long").alias(VISITOR_ID),
        _field(fields, 3).try_cast("long").alias(ITEM_ID),
        event_type.alias(EVENT_TYPE),
        F.when(txn != "", txn.try_cast("long")).alias(TRANSACTION_ID),
        (txn != "").alias("_has_txn"),
    )
    reason = (
        F.when(F.col("_n_fields") != len(EVENTS_HEADER), F.lit("wrong_field_count"))
        .when(F.col(EVENT_TS).isNull(), F.lit("bad_timestamp"))
        .when(F.col(EVENT_TS) < F.lit(MIN_EVENT_TS), F.lit("timestamp_out_of_range"))
        .when(F.col(VISITOR_ID).isNull() | (F.col(VISITOR_ID) < 0), F.lit("bad_visitor_id"))
        .when(F.col(ITEM_ID).isNull() | (F.col(ITEM_ID) < 0), F.lit("bad_item_id"))
        .when(F.col(EVENT_TYPE).isNull(), F.lit("unknown_event_type"))
        .when(F.col("_has_txn") & F.col(TRANSACTION_ID).isNull(), F.lit("bad_transaction_id"))
        .when(
            (F.col(EVENT_TYPE) == "purchase") != F.col(TRANSACTION_ID).isNotNull(),
            F.lit("transaction_id_mismatch"),
        )
    )
    flagged = parsed.withColumn(REASON, reason)
    # A row whose date cannot be read is quarantined now: no later run could place it either.
    later = F.col(EVENT_TS).isNotNull() & (F.col(EVENT_TS) >= F.lit(until))
    current = flagged.where(~later)
    return ParsedEvents(
        accepted=current.where(F.col(REASON).isNull()).select(*EVENT_COLUMNS),
        quarantined=current.where(F.col(REASON).isNotNull()).select(RAW_LINE, REASON),
        later=flagged.where(later).select(RAW_LINE),
    )


def snapshot_catalog(properties: DataFrame, until: datetime) -> DataFrame:
    """Catalog as of `until`: each item's latest category and availability, and first sighting.

    `properties` has columns timestamp (ms), itemid, property, value (strings). Later facts are
    never used, so a backfill sees the catalog as it was.
    """
    props = properties.select(
        F.timestamp_millis(F.col("timestamp").try_cast("long")).alias("ts"),
        F.col("itemid").try_cast("long").alias(ITEM_ID),
        F.col("property"),
        F.col("value"),
    ).where(F.col("ts").isNotNull() & F.col(ITEM_ID).isNotNull() & (F.col("ts") < F.lit(until)))

    def latest(prop: str, alias: str, cast: str) -> DataFrame:
        return (
            props.where(F.col("property") == prop)
            .groupBy(ITEM_ID)
            .agg(F.max_by(F.col("value"), F.col("ts")).try_cast(cast).alias(alias))
        )

    first_seen = props.groupBy(ITEM_ID).agg(F.min("ts").alias(FIRST_SEEN_TS))
    available = latest("available", AVAILABLE, "int").select(
        ITEM_ID, (F.col(AVAILABLE) == 1).alias(AVAILABLE)
    )
    return (
        first_seen.join(latest("categoryid", CATEGORY_ID, "long"), ITEM_ID, "left")
        .join(available, ITEM_ID, "left")
        .select(
            ITEM_ID,
            CATEGORY_ID,
            F.coalesce(F.col(AVAILABLE), F.lit(True)).alias(AVAILABLE),
            FIRST_SEEN_TS,
        )
    )


def reconcile(counts: dict[str, int]) -> None:
    """Raise if the counts do not add up: no row may be lost without a trace."""
    parts = ("accepted", "quarantined", "duplicates", "after_run_date")
    if sum(counts[p] for p in parts) != counts["raw_rows"]:
        raise AssertionError(f"ingest counts do not reconcile: {counts}")


def _read_lines(spark, path, header: tuple[str, ...]) -> DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"raw file not found: {path}")
    lines = spark.read.text(str(path))
    first = lines.first()
    if first is None:
        raise SchemaMismatchError(f"{path}: file is empty, expected header {list(header)}")
    check_header(first.value, header, str(path))
    return lines.where(F.col("value") != first.value)


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    until = end_of_day(run_date)
    spark = get_spark("ingest", cfg)

    lines = _read_lines(spark, cfg.paths.raw / EVENTS_FILE, EVENTS_HEADER).cache()
    parsed = parse_events(lines, until)
    accepted = parsed.accepted.cache()
    bronze_path = lake.partition("bronze", "events", run_date)
    quarantine_path = lake.partition("quarantine", "events", run_date)
    accepted.dropDuplicates().orderBy(EVENT_TS, VISITOR_ID, ITEM_ID, EVENT_TYPE).write.mode(
        "overwrite"
    ).parquet(str(bronze_path))
    parsed.quarantined.orderBy(REASON, RAW_LINE).write.mode("overwrite").parquet(
        str(quarantine_path)
    )
    # Count what was written (cheap Parquet reads), not what was meant to be written.
    reasons = {
        r[REASON]: r["count"]
        for r in spark.read.parquet(str(quarantine_path))
        .groupBy(REASON)
        .count()
        .orderBy(F.desc("count"), REASON)
        .collect()
    }
    counts = {
        "raw_rows": lines.count(),
        "accepted": spark.read.parquet(str(bronze_path)).count(),
        "quarantined": sum(reasons.values()),
        "after_run_date": parsed.later.count(),
    }
    counts["duplicates"] = accepted.count() - counts["accepted"]

    properties = spark.read.csv(str(cfg.paths.raw / PROPERTIES_FILE), header=True)
    check_header(",".join(properties.columns), PROPERTIES_HEADER, PROPERTIES_FILE)
    catalog = snapshot_catalog(properties, until).orderBy(ITEM_ID)
    catalog.write.mode("overwrite").parquet(str(lake.partition("bronze", "catalog", run_date)))
    catalog_items = spark.read.parquet(str(lake.partition("bronze", "catalog", run_date))).count()

    reconcile(counts)
    seen = counts["accepted"] + counts["quarantined"] + counts["duplicates"]
    rate = counts["quarantined"] / seen if seen else 0.0
    report = {
        **counts,
        "quarantine_rate": rate,
        "quarantine_reasons": reasons,
        "catalog_items": catalog_items,
        "until": until.isoformat(),
    }
    lake.write_stage_report(run_date, "ingest", report)
    log.info("ingest %s: %s", run_date, report)
    if counts["accepted"] == 0:
        log.warning("no events up to %s: the day is empty", run_date)
    if rate > cfg.ingest.max_quarantine_rate:
        top = ", ".join(f"{k}={v}" for k, v in list(reasons.items())[:3])
        raise QuarantineRateError(
            f"{cfg.paths.raw / EVENTS_FILE}: {rate:.2%} of rows quarantined "
            f"(limit {cfg.ingest.max_quarantine_rate:.2%}); top reasons: {top}; "
            f"rows in {quarantine_path}"
        )
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
