"""Split: silver events -> chronological train and test sets.

The test window is the last `split.test_days` days up to and including the logical date; all
earlier events are training data. Every test event is later than every training event (checked
on the written data, the run fails otherwise).

Run alone:
    spark-submit jobs/split.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.cli import parse_stage_args
from jobs.core.paths import partition_digest, write_lineage
from jobs.core.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
from jobs.core.spark import get_spark

log = logging.getLogger("split")


class LeakageError(AssertionError):
    """A test event is not later than every training event."""


def cutoff_for(run_date: date, test_days: int) -> datetime:
    """First instant (UTC) of the test window: the last `test_days` days ending with run_date."""
    if test_days <= 0:
        raise ValueError(f"test_days must be positive, got {test_days}")
    first_test_day = run_date - timedelta(days=test_days - 1)
    return datetime.combine(first_test_day, time(0), tzinfo=UTC)


def split_by_time(events: DataFrame, cutoff: datetime) -> tuple[DataFrame, DataFrame]:
    """(train, test): events before `cutoff`, and events at or after it."""
    before = F.col(EVENT_TS) < F.lit(cutoff)
    return events.where(before), events.where(~before)


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    spark = get_spark("split", cfg)

    events = spark.read.parquet(str(lake.partition("silver", "events", run_date)))
    cutoff = cutoff_for(run_date, cfg.split.test_days)
    order = (EVENT_TS, VISITOR_ID, ITEM_ID, EVENT_TYPE)
    report: dict = {"cutoff": cutoff.isoformat()}
    silver = lake.partition("silver", "events", run_date)
    for name, part in zip(("train", "test"), split_by_time(events, cutoff), strict=True):
        path = lake.partition("splits", name, run_date)
        part.orderBy(*order).write.mode("overwrite").parquet(str(path))
        write_lineage(path, [{"partition": str(silver), "sha256": partition_digest(silver)}])
        stats = (
            spark.read.parquet(str(path))
            .agg(
                F.count("*").alias("rows"),
                F.countDistinct(VISITOR_ID).alias("visitors"),
                F.countDistinct(ITEM_ID).alias("items"),
                F.min(EVENT_TS).alias("min_ts"),
                F.max(EVENT_TS).alias("max_ts"),
            )
            .first()
        )
        report[name] = stats.asDict()
    if (
        report["train"]["rows"]
        and report["test"]["rows"]
        and not (report["train"]["max_ts"] < report["test"]["min_ts"])
    ):
        raise LeakageError(
            f"train ends {report['train']['max_ts']}, test starts {report['test']['min_ts']}"
        )
    lake.write_stage_report(run_date, "split", report)
    log.info("split %s: %s", run_date, report)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
