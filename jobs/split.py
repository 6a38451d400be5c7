"""Split: silver events -> chronological train and test sets, and the catalog as of the cutoff.

The test window is the last `split.test_days` days up to and including the logical date (or,
with `split.test_quantile`, every event from that quantile of event time on); all earlier events
are training data. The last `split.validation_days` days of the training data are the validation
window that tuning scores on; the test window is never used for tuning.

Leakage guards, checked on the written data (the run fails otherwise): every test event is later
than every training event, and the catalog evaluation uses (`splits/catalog`) is folded from
item facts seen before the cutoff only, so no category or first sighting comes from the future.

Run alone:
    spark-submit jobs/split.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.feeds.catalog import snapshot_catalog
from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config
from jobs.infra.paths import Lake, partition_digest, write_lineage
from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, FIRST_SEEN_TS, ITEM_ID, VISITOR_ID
from jobs.infra.spark import get_spark

log = logging.getLogger("split")


class LeakageError(AssertionError):
    """A test event is not later than every training event."""


def cutoff_for(run_date: date, test_days: int) -> datetime:
    """First instant (UTC) of the test window: the last `test_days` days ending with run_date."""
    if test_days <= 0:
        raise ValueError(f"test_days must be positive, got {test_days}")
    first_test_day = run_date - timedelta(days=test_days - 1)
    return datetime.combine(first_test_day, time(0), tzinfo=UTC)


def quantile_cutoff(events: DataFrame, quantile: float) -> datetime | None:
    """The instant (UTC, whole seconds) before which `quantile` of the events fall; None if empty.

    Exact (Spark's `percentile`, not an approximation), so a rerun finds the same cutoff.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    micros = events.select(
        F.percentile(F.unix_micros(F.col(EVENT_TS)), F.lit(quantile)).alias("p")
    ).first()["p"]
    if micros is None:
        return None
    return datetime.fromtimestamp(int(micros // 1_000_000), tz=UTC)


def validation_cutoff_for(cutoff: datetime, validation_days: int) -> datetime:
    """First instant of the validation window: the last `validation_days` days before `cutoff`."""
    if validation_days <= 0:
        raise ValueError(f"validation_days must be positive, got {validation_days}")
    return cutoff - timedelta(days=validation_days)


def split_by_time(events: DataFrame, cutoff: datetime) -> tuple[DataFrame, DataFrame]:
    """(train, test): events before `cutoff`, and events at or after it."""
    before = F.col(EVENT_TS) < F.lit(cutoff)
    return events.where(before), events.where(~before)


def check_no_leakage(report: dict) -> None:
    """Raise LeakageError unless train ends before test starts and the catalog predates cutoff."""
    train, test = report["train"], report["test"]
    if train["rows"] and test["rows"] and not train["max_ts"] < test["min_ts"]:
        raise LeakageError(f"train ends {train['max_ts']}, test starts {test['min_ts']}")
    if report["catalog"]["items_first_seen_after_cutoff"]:
        raise LeakageError(
            f"the training catalog knows {report['catalog']['items_first_seen_after_cutoff']} "
            f"items first seen at or after the cutoff {report['cutoff']}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    spark = get_spark("split", args.cfg)
    try:
        run(args.cfg, args.run_date, spark)
    finally:
        spark.stop()
    return 0


def run(cfg: Config, run_date: date, spark: SparkSession) -> dict:
    """The train and test splits and the cutoff's catalog for `run_date`; return the report."""
    lake = Lake(cfg.paths.lake)
    silver = lake.complete("silver", "events", run_date, producer="clean")
    events = spark.read.parquet(str(silver))
    cutoff = cutoff_for(run_date, cfg.split.test_days)
    rule = f"last {cfg.split.test_days} days"
    if cfg.split.test_quantile is not None:
        cutoff = quantile_cutoff(events, cfg.split.test_quantile) or cutoff
        rule = f"quantile {cfg.split.test_quantile} of event time"
    validation_cutoff = validation_cutoff_for(cutoff, cfg.split.validation_days)
    validation_rule = f"last {cfg.split.validation_days} days before the cutoff"
    order = (EVENT_TS, VISITOR_ID, ITEM_ID, EVENT_TYPE)
    report: dict = {
        "cutoff": cutoff.isoformat(),
        "cutoff_rule": rule,
        "validation_cutoff": validation_cutoff.isoformat(),
    }
    for name, part in zip(("train", "test"), split_by_time(events, cutoff), strict=True):
        path = lake.partition("splits", name, run_date)
        part.orderBy(*order).write.mode("overwrite").parquet(str(path))
        write_lineage(path, [{"partition": str(silver), "sha256": partition_digest(silver)}])
        report[name] = _stats(spark.read.parquet(str(path)))
    written = spark.read.parquet(str(lake.partition("splits", "train", run_date)))
    first = report["train"]["min_ts"]  # naive: Spark's session time zone is UTC
    if first is not None and validation_cutoff <= first.replace(tzinfo=UTC):
        # A history shorter than the window would leave tuning nothing to fit on.
        quantile = cfg.split.validation_quantile
        validation_cutoff = quantile_cutoff(written, quantile) or validation_cutoff
        validation_rule = f"quantile {quantile} of training event time (history too short)"
        log.warning("split %s: validation window is %s", run_date, validation_rule)
    report["validation_cutoff"] = validation_cutoff.isoformat()
    report["validation_cutoff_rule"] = validation_rule
    report["validation"] = _stats(split_by_time(written, validation_cutoff)[1])

    fact_dates = lake.dates_until("bronze", "item_facts", run_date)
    facts = [lake.partition("bronze", "item_facts", d) for d in fact_dates]
    catalog_path = lake.partition("splits", "catalog", run_date)
    snapshot_catalog(spark.read.parquet(*map(str, facts)), cutoff).orderBy(ITEM_ID).write.mode(
        "overwrite"
    ).parquet(str(catalog_path))
    write_lineage(
        catalog_path, [{"partition": str(f), "sha256": partition_digest(f)} for f in facts]
    )
    report["catalog"] = (
        spark.read.parquet(str(catalog_path))
        .agg(
            F.count("*").alias("items"),
            F.count(F.when(F.col(FIRST_SEEN_TS) >= F.lit(cutoff), 1)).alias(
                "items_first_seen_after_cutoff"
            ),
        )
        .first()
        .asDict()
    )
    check_no_leakage(report)
    lake.write_stage_report(run_date, "split", report)
    log.info("split %s: %s", run_date, report)
    return report


def _stats(events: DataFrame) -> dict:
    return (
        events.agg(
            F.count("*").alias("rows"),
            F.countDistinct(VISITOR_ID).alias("visitors"),
            F.countDistinct(ITEM_ID).alias("items"),
            F.min(EVENT_TS).alias("min_ts"),
            F.max(EVENT_TS).alias("max_ts"),
        )
        .first()
        .asDict()
    )


if __name__ == "__main__":
    raise SystemExit(main())
