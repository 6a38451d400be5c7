"""Clean: bronze events -> silver events without crawlers and test traffic.

Rules (thresholds in config `clean`):
- `test_account` / `test_item`: QA accounts and test SKUs from the config deny-lists;
- `events_per_day`: more events on one day than a person makes;
- `views_without_conversion`: many views and never a cart or purchase (a crawler's sweep).

Every removed visitor is kept in `silver/removed_visitors` with the first rule that removed them,
and the report counts visitors and events per rule.

Run alone:
    spark-submit jobs/clean.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.cli import parse_stage_args
from jobs.core.config import CleanConfig
from jobs.core.schemas import CART, EVENT_TS, EVENT_TYPE, ITEM_ID, PURCHASE, RULE, VIEW, VISITOR_ID
from jobs.core.spark import get_spark

log = logging.getLogger("clean")

# Rules in the order they are reported when a visitor breaks several.
RULES = ("test_account", "events_per_day", "views_without_conversion")


def flag_bots(events: DataFrame, rules: CleanConfig) -> DataFrame:
    """Visitors to remove, one row each: visitor_id, rule (the first rule of RULES they break)."""
    per_day = (
        events.groupBy(VISITOR_ID, F.to_date(EVENT_TS).alias("day"))
        .count()
        .groupBy(VISITOR_ID)
        .agg(F.max("count").alias("max_per_day"))
    )
    funnel = events.groupBy(VISITOR_ID).agg(
        F.sum((F.col(EVENT_TYPE) == VIEW).cast("long")).alias("views"),
        F.sum(F.col(EVENT_TYPE).isin(CART, PURCHASE).cast("long")).alias("conversions"),
    )
    test_ids = [int(v) for v in rules.test_visitor_ids]
    rule = (
        F.when(F.col(VISITOR_ID).isin(test_ids), F.lit("test_account"))
        .when(F.col("max_per_day") > rules.max_events_per_day, F.lit("events_per_day"))
        .when(
            (F.col("views") >= rules.max_views_without_conversion) & (F.col("conversions") == 0),
            F.lit("views_without_conversion"),
        )
    )
    return (
        per_day.join(funnel, VISITOR_ID)
        .select(VISITOR_ID, rule.alias(RULE))
        .where(F.col(RULE).isNotNull())
    )


def drop_flagged(
    events: DataFrame, flagged: DataFrame, test_item_ids: tuple[int, ...]
) -> DataFrame:
    """Events of unflagged visitors, without rows on test SKUs."""
    kept = events.join(flagged.select(VISITOR_ID), VISITOR_ID, "left_anti")
    return kept.where(~F.col(ITEM_ID).isin([int(i) for i in test_item_ids]))


def count_by_rule(events: DataFrame, flagged: DataFrame, test_item_ids: tuple[int, ...]) -> dict:
    """{rule: {"visitors": n, "events": n}} for the report, including `test_item` rows."""
    per_rule = (
        events.join(flagged, VISITOR_ID)
        .groupBy(RULE)
        .agg(F.countDistinct(VISITOR_ID).alias("visitors"), F.count("*").alias("events"))
        .collect()
    )
    counts = {r[RULE]: {"visitors": r["visitors"], "events": r["events"]} for r in per_rule}
    test_rows = (
        events.join(flagged.select(VISITOR_ID), VISITOR_ID, "left_anti")
        .where(F.col(ITEM_ID).isin([int(i) for i in test_item_ids]))
        .count()
    )
    counts["test_item"] = {"visitors": None, "events": test_rows}
    return {rule: counts.get(rule, {"visitors": 0, "events": 0}) for rule in (*RULES, "test_item")}


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    spark = get_spark("clean", cfg)

    events = spark.read.parquet(str(lake.partition("bronze", "events", run_date))).cache()
    flagged = flag_bots(events, cfg.clean).orderBy(VISITOR_ID).cache()
    silver = drop_flagged(events, flagged, cfg.clean.test_item_ids).orderBy(
        EVENT_TS, VISITOR_ID, ITEM_ID, EVENT_TYPE
    )
    silver.write.mode("overwrite").parquet(str(lake.partition("silver", "events", run_date)))
    flagged.write.mode("overwrite").parquet(
        str(lake.partition("silver", "removed_visitors", run_date))
    )
    rows_out = spark.read.parquet(str(lake.partition("silver", "events", run_date))).count()
    rows_in = events.count()
    by_rule = count_by_rule(events, flagged, cfg.clean.test_item_ids)
    removed = sum(v["events"] for v in by_rule.values())
    if rows_in != rows_out + removed:
        raise AssertionError(
            f"clean counts do not reconcile: {rows_in} in, {rows_out} out, "
            f"{removed} removed by rule {by_rule}"
        )
    report = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "removed_events": removed,
        "removed_visitors": flagged.count(),
        "by_rule": by_rule,
    }
    lake.write_stage_report(run_date, "clean", report)
    log.info("clean %s: %s", run_date, report)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
