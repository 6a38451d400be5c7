"""Clean: every bronze events partition up to D -> silver events up to D, without bots and tests.

Bronze `events/dt=D` holds what arrived for D; silver `events/dt=D` is the whole cleaned history
up to D, the training input for D. The partitions are read together (a missed date stops the
run, naming it), an event repeated on a later date keeps its earliest row, and then visitors
breaking a rule lose all their events. Rules (thresholds and units in config `clean`):

- `test_account`: QA accounts on the deny-list `test_visitor_ids`;
- `events_per_day`: more view and cart rows than a person makes on one UTC day (the cap rises
  with the shop's own busiest visitor-days, see `day_cap`);
- `events_per_minute`: more distinct instants than a person makes in any 60-second window
  (a sliding window starting at each of the visitor's instants);
- `inhuman_gaps`: a median time between consecutive instants shorter than reading a page takes;
- `catalog_sweep`: consecutive views walking the item ids upwards (a crawler on the catalog);
- `views_without_conversion`: many views and never a cart or purchase;
- `carts_without_purchase`: many distinct items carted and never a purchase (a cart bot);
- `test_item`: rows on the test SKUs `test_item_ids` go, their visitors stay.

Every removed visitor is kept in `silver/removed_visitors/dt=D` with the first rule they break
(in the order above), all the rules they break and the signals behind them. The stage report
counts visitors and events per rule (a visitor breaking several counts under each), and the
counts reconcile on the written data: rows in = rows out + removed events + duplicates across
days. `python -m jobs.tools.bot_audit` measures the rules against the generator's ground truth.

Run alone:
    spark-submit jobs/clean.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import CleanConfig, Config
from jobs.infra.paths import Lake, partition_digest, write_lineage
from jobs.infra.schemas import (
    CART,
    EVENT_COLUMNS,
    EVENT_KEY,
    EVENT_TS,
    EVENT_TYPE,
    INGEST_RUN,
    ITEM_ID,
    PURCHASE,
    RULE,
    SOURCE,
    VIEW,
    VISITOR_ID,
    event_schema,
)
from jobs.infra.spark import get_spark

log = logging.getLogger("clean")

# Visitor rules in the order that names a visitor's first rule; `test_item` removes rows only.
RULES = (
    "test_account",
    "events_per_day",
    "events_per_minute",
    "inhuman_gaps",
    "catalog_sweep",
    "views_without_conversion",
    "carts_without_purchase",
)
TEST_ITEM = "test_item"
RULES_BROKEN = "rules"  # removed_visitors: every rule the visitor breaks, in RULES order
DT = "dt"  # the bronze partition date, read from the folder name
# Signals per visitor (visitor_signals), also written beside each removed visitor.
SIGNALS = (
    "events",
    "views",
    "conversions",
    "carted_items",
    "purchases",
    "max_events_per_day",
    "instants",
    "max_events_per_minute",
    "median_gap_seconds",
    "view_pairs",
    "ascending_view_share",
)
_MS_PER_DAY, _MINUTE_MS = 86_400_000, 60_000
DAY_CAP_QUANTILE = 0.99  # of rows per visitor and day, for the events_per_day cap


class BronzeGapError(FileNotFoundError):
    """Bronze events lack partitions between the first one and the run date (a missed ingest)."""


class MissingColumnsError(ValueError):
    """A DataFrame handed to a transform lacks columns the transform needs."""


class CleanCountsError(AssertionError):
    """The written silver data does not reconcile with the bronze rows read."""


def check_bronze_dates(dates: list[date], run_date: date, table: Path) -> None:
    """Raise unless `dates` (bronze partitions, oldest first) run without a gap to run_date.

    FileNotFoundError if there is none; BronzeGapError listing the missing dates otherwise.
    Silver is the whole history, so training on it with a day missing would be silently wrong.
    """
    if not dates:
        raise FileNotFoundError(
            f"no bronze events partition up to {run_date} under {table}: "
            f"run ingest for {run_date} (and every date before it that has data) first"
        )
    span = (run_date - dates[0]).days + 1
    missing = sorted(set(dates[0] + timedelta(days=n) for n in range(span)) - set(dates))
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BronzeGapError(
            f"bronze events under {table} have no partition for {len(missing)} date(s) between "
            f"{dates[0]} and {run_date}: {shown}{more}. Run ingest for them, then clean again."
        )


def _require(frame: DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnsError(f"{what} lacks columns {missing}; it has {frame.columns}")


def drop_cross_day_duplicates(bronze: DataFrame) -> DataFrame:
    """One row per EVENT_KEY: the one of the earliest `dt` (then source, ingest_run), without dt.

    A late file can repeat rows an earlier date already brought; the first arrival is the one
    lineage should point to. Returns EVENT_COLUMNS.
    """
    _require(bronze, (*EVENT_COLUMNS, DT), "bronze events")
    # A hash aggregate, not a window: most keys are unique, and sorting every row by eight
    # columns costs several times more.
    first = F.min(F.struct(DT, SOURCE, INGEST_RUN)).alias("_first")
    return (
        bronze.groupBy(*EVENT_KEY)
        .agg(first)
        .select(*EVENT_KEY, F.col(f"_first.{SOURCE}"), F.col(f"_first.{INGEST_RUN}"))
    )


def visitor_signals(events: DataFrame) -> DataFrame:
    """One row per visitor with the SIGNALS the rules read.

    events, views, conversions (carts + purchases), purchases: rows; carted_items: distinct
    items carted; max_events_per_day: most view and cart rows on one UTC day; instants: distinct
    event timestamps; max_events_per_minute: most instants in a window [t, t + 60 s) starting
    at one of them; median_gap_seconds: median of the gaps between
    consecutive instants (the mean of the middle two for an even count; null below 2 instants);
    view_pairs: consecutive views (by time, then item id); ascending_view_share in [0, 1]: share
    of those pairs whose item id is higher than the one before (null without pairs).
    """
    _require(events, (VISITOR_ID, EVENT_TS, ITEM_ID, EVENT_TYPE), "events")
    # One sort of each visitor's rows by time serves every timing and order signal; the
    # aggregations after it keep the visitor partitioning, so the rows are shuffled once.
    by_time = Window.partitionBy(VISITOR_ID).orderBy("ms", ITEM_ID)
    is_view = F.col(EVENT_TYPE) == VIEW
    gap = F.col("ms") - F.lag("ms").over(by_time)  # 0 between rows of one instant
    before = by_time.rowsBetween(Window.unboundedPreceding, -1)
    previous_view = F.last(F.when(is_view, F.col(ITEM_ID)), ignorenulls=True).over(before)
    timed = events.select(VISITOR_ID, ITEM_ID, EVENT_TYPE, F.unix_millis(EVENT_TS).alias("ms"))
    per_day = (
        _rows_per_visitor_day(timed)
        .groupBy(VISITOR_ID)
        .agg(F.max("count").alias("max_events_per_day"))
    )
    rows = timed.select(
        VISITOR_ID,
        "ms",
        is_view.cast("long").alias("view"),
        F.col(EVENT_TYPE).isin(CART, PURCHASE).cast("long").alias("conversion"),
        (F.col(EVENT_TYPE) == PURCHASE).cast("long").alias("purchase"),
        F.when(F.col(EVENT_TYPE) == CART, F.col(ITEM_ID)).alias("carted"),
        gap.alias("gap_ms"),
        F.when(is_view, (F.col(ITEM_ID) > previous_view).cast("long")).alias("ascending"),
    )
    # Instants in [t, t + 60 s): the rows in that range that open a new instant.
    new_instant = F.when(F.col("gap_ms") == 0, 0).otherwise(1)
    minute = Window.partitionBy(VISITOR_ID).orderBy("ms").rangeBetween(0, _MINUTE_MS - 1)
    rows = rows.withColumn("new_instant", new_instant).withColumn(
        "in_minute", F.sum("new_instant").over(minute)
    )
    median_gap = F.median(F.when(F.col("gap_ms") > 0, F.col("gap_ms"))) / 1000
    return (
        rows.groupBy(VISITOR_ID)
        .agg(
            F.count("*").alias("events"),
            F.sum("view").alias("views"),
            F.sum("conversion").alias("conversions"),
            F.countDistinct("carted").alias("carted_items"),
            F.sum("purchase").alias("purchases"),
            F.sum("new_instant").alias("instants"),
            F.max("in_minute").alias("max_events_per_minute"),
            median_gap.alias("median_gap_seconds"),
            F.count("ascending").alias("view_pairs"),
            F.avg("ascending").alias("ascending_view_share"),
        )
        .join(per_day, VISITOR_ID)
        .select(VISITOR_ID, *SIGNALS)
    )


def _rows_per_visitor_day(timed: DataFrame) -> DataFrame:
    """(visitor, day, count) of view and cart rows; `timed` has VISITOR_ID, EVENT_TYPE, ms."""
    # Days from epoch milliseconds, so that a day is a UTC day whatever the session time zone.
    return (
        timed.where(F.col(EVENT_TYPE) != PURCHASE)
        .groupBy(VISITOR_ID, F.floor(F.col("ms") / _MS_PER_DAY).alias("day"))
        .count()
    )


def day_cap(events: DataFrame, rules: CleanConfig) -> int:
    """The events_per_day cap for this history: max_events_per_day, raised to day_cap_multiple
    x the 99th percentile of view and cart rows per visitor and day among visitors who bought
    (exact, so a rerun agrees).

    A shop whose buyers browse hundreds of rows a day keeps them. Buyers only: bots do not buy,
    and where they are 1 % of visitor-days they would set the percentile themselves.
    """
    _require(events, (VISITOR_ID, EVENT_TS, EVENT_TYPE), "events")
    if rules.day_cap_multiple == 0:
        return rules.max_events_per_day
    timed = events.select(VISITOR_ID, EVENT_TYPE, F.unix_millis(EVENT_TS).alias("ms"))
    buyers = timed.where(F.col(EVENT_TYPE) == PURCHASE).select(VISITOR_ID).distinct()
    days = _rows_per_visitor_day(timed.join(buyers, VISITOR_ID, "left_semi"))
    quantile = days.agg(F.percentile("count", DAY_CAP_QUANTILE)).first()[0]
    relative = math.ceil(rules.day_cap_multiple * quantile) if quantile is not None else 0
    return max(rules.max_events_per_day, relative)


def _broken(rules: CleanConfig, events_per_day: int) -> dict[str, Column]:
    """Per rule, the condition on visitor_signals' columns; never null."""
    test_ids = [int(v) for v in rules.test_visitor_ids]
    conditions = {
        "test_account": F.col(VISITOR_ID).isin(test_ids),
        "events_per_day": F.col("max_events_per_day") > events_per_day,
        "events_per_minute": F.col("max_events_per_minute") > rules.max_events_per_minute,
        "inhuman_gaps": (F.col("instants") >= rules.min_events_for_gaps)
        & (F.col("median_gap_seconds") < rules.min_median_gap_seconds),
        "catalog_sweep": (F.col("views") >= rules.min_views_for_sweep)
        & (F.col("ascending_view_share") > rules.max_ascending_view_share),
        "views_without_conversion": (F.col("views") >= rules.max_views_without_conversion)
        & (F.col("conversions") == 0),
        "carts_without_purchase": (F.col("carted_items") >= rules.max_carts_without_purchase)
        & (F.col("purchases") == 0),
    }
    return {rule: F.coalesce(conditions[rule], F.lit(False)) for rule in RULES}


def flag_bots(
    events: DataFrame, rules: CleanConfig, events_per_day: int | None = None
) -> DataFrame:
    """Visitors to remove, one row each: visitor_id, rule (the first of RULES they break),
    rules (every rule they break, in RULES order) and their SIGNALS.

    events_per_day: the day cap to apply (day_cap's); None: rules.max_events_per_day as it is.
    """
    cap = rules.max_events_per_day if events_per_day is None else events_per_day
    broken = F.array(*[F.when(cond, F.lit(rule)) for rule, cond in _broken(rules, cap).items()])
    return (
        visitor_signals(events)
        .withColumn(RULES_BROKEN, F.array_compact(broken))
        .where(F.size(RULES_BROKEN) > 0)
        .select(VISITOR_ID, F.col(RULES_BROKEN)[0].alias(RULE), RULES_BROKEN, *SIGNALS)
    )


def drop_flagged(
    events: DataFrame, flagged: DataFrame, test_item_ids: tuple[int, ...]
) -> DataFrame:
    """Events of unflagged visitors, without rows on test SKUs."""
    _require(events, (VISITOR_ID, ITEM_ID), "events")
    _require(flagged, (VISITOR_ID,), "flagged visitors")
    kept = events.join(F.broadcast(flagged.select(VISITOR_ID)), VISITOR_ID, "left_anti")
    return kept.where(~F.col(ITEM_ID).isin([int(i) for i in test_item_ids]))


def count_by_rule(events: DataFrame, flagged: DataFrame, test_item_ids: tuple[int, ...]) -> dict:
    """What the rules remove from `events`, for the report.

    {"by_rule": {rule: {"visitors": n, "events": n}} for RULES (a visitor breaking several
    counts under each) and "test_item" (rows of kept visitors on test SKUs; visitors None),
    "any_rule": {"visitors": n, "events": n} (the union of the visitor rules),
    "removed_events": any_rule events + test_item events}.
    """
    _require(events, (VISITOR_ID, ITEM_ID), "events")
    _require(flagged, (VISITOR_ID, RULES_BROKEN), "flagged visitors")
    tagged = events.select(VISITOR_ID, ITEM_ID).join(
        F.broadcast(flagged.select(VISITOR_ID, RULES_BROKEN)), VISITOR_ID, "left"
    )
    is_flagged = F.col(RULES_BROKEN).isNotNull()
    per_rule = (
        tagged.where(is_flagged)
        .select(VISITOR_ID, F.explode(RULES_BROKEN).alias(RULE))
        .groupBy(RULE)
        .agg(F.countDistinct(VISITOR_ID).alias("visitors"), F.count("*").alias("events"))
        .collect()
    )
    found = {r[RULE]: {"visitors": r["visitors"], "events": r["events"]} for r in per_rule}
    test_items = [int(i) for i in test_item_ids]
    totals = tagged.agg(
        F.countDistinct(F.when(is_flagged, F.col(VISITOR_ID))).alias("visitors"),
        F.count(F.when(is_flagged, 1)).alias("events"),
        F.count(F.when(~is_flagged & F.col(ITEM_ID).isin(test_items), 1)).alias("test_rows"),
    ).first()
    by_rule = {rule: found.get(rule, {"visitors": 0, "events": 0}) for rule in RULES}
    by_rule[TEST_ITEM] = {"visitors": None, "events": totals["test_rows"]}
    return {
        "by_rule": by_rule,
        "any_rule": {"visitors": totals["visitors"], "events": totals["events"]},
        "removed_events": totals["events"] + totals["test_rows"],
    }


def reconcile(rows_in: int, rows_out: int, removed_events: int, duplicates: int) -> None:
    """Raise CleanCountsError unless rows in = rows out + removed events + duplicates."""
    if rows_in != rows_out + removed_events + duplicates:
        raise CleanCountsError(
            f"clean counts do not reconcile: {rows_in} bronze rows in, {rows_out} silver rows "
            f"written, {removed_events} removed by rule, {duplicates} duplicates across days "
            f"(off by {rows_in - rows_out - removed_events - duplicates})"
        )


def read_bronze(spark: SparkSession, lake: Lake, dates: list[date]) -> DataFrame:
    """The bronze events partitions of `dates` as one DataFrame with their `dt` (a date)."""
    schema = event_schema().add(T.StructField(DT, T.DateType(), False))
    paths = [str(lake.partition("bronze", "events", d)) for d in dates]
    table = str(lake.table("bronze", "events"))
    return spark.read.schema(schema).option("basePath", table).parquet(*paths)


def run(cfg: Config, run_date: date, spark: SparkSession) -> dict:
    """Build silver events and removed visitors for run_date; return the stage report."""
    lake = Lake(cfg.paths.lake)
    dates = lake.dates_until("bronze", "events", run_date)
    check_bronze_dates(dates, run_date, lake.table("bronze", "events"))
    bronze = read_bronze(spark, lake, dates)
    rows_by_date = {r[DT]: r["count"] for r in bronze.groupBy(DT).count().collect()}
    rows_in = sum(rows_by_date.values())
    events = drop_cross_day_duplicates(bronze).cache()
    removed = None
    try:
        duplicates = rows_in - events.count()

        started = time.perf_counter()
        removed_path = lake.partition("silver", "removed_visitors", run_date)
        # A few hundred rows: one sorted file, without the sampling pass a global sort would add.
        cap = day_cap(events, cfg.clean)
        flagged = flag_bots(events, cfg.clean, cap).repartition(1).sortWithinPartitions(VISITOR_ID)
        flagged.write.mode("overwrite").parquet(str(removed_path))
        # Timing goes to the log, not the report: a rerun must rewrite the report identically.
        log.info("flagged bots in %.1fs", time.perf_counter() - started)
        # Read back: what is counted and dropped is exactly what was written.
        removed = spark.read.parquet(str(removed_path)).cache()
        silver_path = lake.partition("silver", "events", run_date)
        drop_flagged(events, removed, cfg.clean.test_item_ids).select(*EVENT_COLUMNS).orderBy(
            *EVENT_KEY
        ).write.mode("overwrite").parquet(str(silver_path))
        rows_out = spark.read.parquet(str(silver_path)).count()
        counts = count_by_rule(events, removed, cfg.clean.test_item_ids)
        reconcile(rows_in, rows_out, counts["removed_events"], duplicates)

        inputs = [
            {
                "partition": str(lake.partition("bronze", "events", d)),
                "rows": rows_by_date.get(d, 0),
                "sha256": partition_digest(lake.partition("bronze", "events", d)),
            }
            for d in dates
        ]
        n_removed = removed.count()
        write_lineage(silver_path, inputs, rows=rows_out, config=cfg.fingerprint())
        write_lineage(removed_path, inputs, rows=n_removed, config=cfg.fingerprint())
        report = {
            "run_date": run_date.isoformat(),
            "bronze_partitions": len(dates),
            "first_bronze_date": dates[0].isoformat(),
            "rows_in": rows_in,
            "duplicates_across_days": duplicates,
            "rows_out": rows_out,
            "removed_events": counts["removed_events"],
            "removed_visitors": n_removed,
            "events_per_day_cap": cap,
            "by_rule": counts["by_rule"],
            "any_rule": counts["any_rule"],
        }
        lake.write_stage_report(run_date, "clean", report)
        log.info("clean %s: %s", run_date, report)
        return report
    finally:
        # On a shared Spark Connect server a cache outlives the session that made it.
        events.unpersist()
        if removed is not None:
            removed.unpersist()


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    spark = get_spark("clean", args.cfg)
    try:
        run(args.cfg, args.run_date, spark)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
