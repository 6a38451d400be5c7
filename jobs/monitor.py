"""Monitor: tonight against the trailing nights; a fact out of bounds fails the task (the alert).

After the export, the monitor records the night's facts (jobs.infra.schemas.MONITOR_FACTS):
accepted events by type, quarantine and bot rates, the challenger's NDCG@10, the share of the
catalog in the exported lists, the share of a visitor's list that was already in yesterday's
(on a sample of `monitor.overlap_visitors` visitors) and the share of fallback rows. It compares
each with the median of the nights of the last `monitor.trailing_days` days that have a record
(`monitor.checks`: relative drops and rises, absolute limits), writes the record and findings
to the stage report `monitor`, logs the trend plot and the report to the night's MLflow run, and
exits 1 when any check fails, so the DAG's failure callback raises the alert. The published
lists stay: the alert says something changed, not that the export is broken.

Run alone:
    python -m jobs.monitor --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, MonitorBounds
from jobs.infra.paths import Lake
from jobs.infra.schemas import EVENT_TYPE, EVENT_TYPES, ITEM_ID, MONITOR_FACTS, VISITOR_ID

log = logging.getLogger("monitor")

ALERT_EXIT_CODE = 1
USER_ID = "user_id"


def stale_ratio(today: pd.DataFrame, yesterday: pd.DataFrame) -> float | None:
    """Mean over visitors listed on both days of |today's items in yesterday's list| / |today's
    list|, in [0, 1] (1: nothing changed); None when no visitor is on both. Frames: user_id,
    item_id."""
    both = np.intersect1d(today[USER_ID].unique(), yesterday[USER_ID].unique())
    if len(both) == 0:
        return None
    mine = today[today[USER_ID].isin(both)]
    kept = mine.merge(yesterday[[USER_ID, ITEM_ID]].drop_duplicates(), on=[USER_ID, ITEM_ID])
    share = kept.groupby(USER_ID).size().reindex(both, fill_value=0) / mine.groupby(USER_ID).size()
    return float(share.mean())


def removed_share(
    day_events: pd.DataFrame, removed_visitors: np.ndarray, test_items: tuple[int, ...]
) -> float | None:
    """Share of the day's accepted events that clean removed: their visitor was removed (bots,
    QA accounts) or their item is a test SKU; in [0, 1], None for a day without events.
    day_events: visitor_id, item_id (bronze/events of the day)."""
    if day_events.empty:
        return None
    removed = day_events[VISITOR_ID].isin(removed_visitors) | day_events[ITEM_ID].isin(test_items)
    return float(removed.mean())


def night_facts(
    ingest: dict,
    evaluate: dict,
    export: dict,
    events_by_type: dict[str, int],
    bot_rate: float | None,
    listed_items: int | None,
    stale: float | None,
) -> dict[str, float | None]:
    """The night's facts from its stage reports and what was read of its lake partitions."""
    recs = export["recommendations"]
    rows = recs["rows"]
    catalog = export["catalog_items"]
    return {
        **{f"events.{t}": float(events_by_type.get(t, 0)) for t in EVENT_TYPES},
        "quarantine_rate": float(ingest["quarantine_rate"]),
        "bot_rate": bot_rate,
        "ndcg_at_10": evaluate["challenger"]["ndcg_at_10"],
        "catalog_coverage": listed_items / catalog
        if listed_items is not None and catalog
        else None,
        "stale_ratio": stale,
        "fallback_share": 1 - recs["rows_by_source"].get("als", 0) / rows if rows else None,
    }


def check_night(
    facts: dict[str, float | None],
    trailing: list[dict[str, float | None]],
    checks: dict[str, MonitorBounds],
    min_nights: int,
) -> tuple[list[dict], list[dict]]:
    """(every check made, the failed ones). A check is fact, value, bound, limit, baseline
    (the trailing median, for relative bounds) and a message. A fact without a value tonight is
    not checked; relative bounds need `min_nights` earlier values and a median other than 0."""
    made = []
    for fact, bounds in checks.items():
        value = facts.get(fact)
        if value is None:
            continue
        earlier = [n[fact] for n in trailing if n.get(fact) is not None]
        median = float(np.median(earlier)) if len(earlier) >= min_nights else None
        if median == 0:
            median = None  # no relative change from nothing (a first quarantined row)
        limits = [("min", bounds.min, None), ("max", bounds.max, None)]
        if median is not None:
            if bounds.max_drop is not None:
                limits.append(("max_drop", median * (1 - bounds.max_drop), median))
            if bounds.max_rise is not None:
                limits.append(("max_rise", median * (1 + bounds.max_rise), median))
        for bound, limit, baseline in limits:
            if limit is None:
                continue
            low = bound in ("min", "max_drop")
            ok = value >= limit if low else value <= limit
            against = "" if baseline is None else f" (trailing median {baseline:.6g})"
            verdict = "ok" if ok else ("too low" if low else "too high")
            made.append(
                {
                    "fact": fact,
                    "value": value,
                    "bound": bound,
                    "limit": limit,
                    "baseline": baseline,
                    "ok": ok,
                    "message": f"{fact} = {value:.6g}; {bound} limit {limit:.6g}{against}: "
                    + verdict,
                }
            )
    return made, [c for c in made if not c["ok"]]


def trailing_records(lake: Lake, run_date: date, days: int) -> dict[str, dict]:
    """The monitor records of the `days` days before run_date that have one, by date."""
    found = {}
    for back in range(days, 0, -1):
        day = run_date - timedelta(days=back)
        if lake.stage_report(day, "monitor").is_file():
            found[day.isoformat()] = lake.read_stage_report(day, "monitor")["facts"]
    return found


def _recommendations(lake: Lake, run_date: date):
    """The date's staged recommendations (lake exports, its Parquet files) as an Arrow
    dataset, or None if that date exported nothing."""
    import pyarrow.dataset as ds

    files = sorted(lake.partition("exports", "recommendations", run_date).glob("*.parquet"))
    return ds.dataset([str(f) for f in files], format="parquet") if files else None


def _exported(lake: Lake, run_date: date, visitors: np.ndarray | None, columns: list[str]):
    """The date's exported rows (only `visitors`' when given), or None if it exported nothing."""
    import pyarrow.dataset as ds

    data = _recommendations(lake, run_date)
    if data is None:
        return None
    where = None if visitors is None else ds.field(USER_ID).isin(visitors)
    return data.to_table(columns=columns, filter=where).to_pandas()


def _distinct(lake: Lake, run_date: date, column: str) -> np.ndarray | None:
    """Distinct values of a column across the date's exported lists, sorted; None if the date
    exported nothing. Arrow's hash-based unique per batch, then once over the batches' results:
    sorting every batch (np.unique) took 16 s of a scale-1 night's 63 million rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = _recommendations(lake, run_date)
    if data is None:
        return None
    parts = [pc.unique(batch.column(0)) for batch in data.to_batches(columns=[column])]
    if not parts:
        return np.array([], dtype=np.int64)
    return np.sort(pc.unique(pa.chunked_array(parts)).to_numpy(zero_copy_only=False))


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    report = run(args.cfg, args.run_date)
    return ALERT_EXIT_CODE if report["alerts"] else 0


def run(cfg: Config, run_date: date) -> dict:
    """The monitor stage for `run_date`; returns the stage report it wrote."""
    from jobs.infra.paths import read_partition
    from jobs.recommenders.rerank import sample_visitors

    lake = Lake(cfg.paths.lake)
    mon = cfg.monitor
    # A report left by an earlier attempt must not be taken for this one's (alerts read it).
    lake.stage_report(run_date, "monitor").unlink(missing_ok=True)
    reports = {s: lake.read_stage_report(run_date, s) for s in ("ingest", "evaluate")}
    export = lake.read_stage_report(run_date, "export")
    day_events = read_partition(
        lake, "bronze", "events", run_date, [VISITOR_ID, ITEM_ID, EVENT_TYPE]
    )
    events_by_type = day_events[EVENT_TYPE].value_counts().to_dict()
    removed = read_partition(lake, "silver", "removed_visitors", run_date, [VISITOR_ID])
    bot_rate = removed_share(day_events, removed[VISITOR_ID].to_numpy(), cfg.clean.test_item_ids)

    before = run_date - timedelta(days=1)
    stale, yesterdays = None, _distinct(lake, before, USER_ID)
    today = None
    if yesterdays is not None:
        sample = sample_visitors(yesterdays, mon.overlap_visitors, run_date)
        today = _exported(lake, run_date, sample, [USER_ID, ITEM_ID])
    if today is not None:
        stale = stale_ratio(today, _exported(lake, before, sample, [USER_ID, ITEM_ID]))
    listed = _distinct(lake, run_date, ITEM_ID)
    facts = night_facts(
        reports["ingest"],
        reports["evaluate"],
        export,
        events_by_type,
        bot_rate,
        None if listed is None else len(listed),
        stale,
    )
    trailing = trailing_records(lake, run_date, mon.trailing_days)
    checks, failed = check_night(facts, list(trailing.values()), mon.checks, mon.min_nights)
    report = {
        "facts": facts,
        "trailing": trailing,
        "checks": checks,
        "alerts": [c["message"] for c in failed],
    }
    lake.write_stage_report(run_date, "monitor", report)
    _log_to_mlflow(cfg, lake.read_stage_report(run_date, "train")["run_id"], report, run_date)
    for check in checks:
        (log.error if not check["ok"] else log.info)("monitor: %s", check["message"])
    if failed:
        log.error(
            "monitor %s: %d of %d checks out of bounds; the lists stay published",
            run_date,
            len(failed),
            len(checks),
        )
        return report
    log.info(
        "monitor %s: %d checks within bounds (%d earlier nights)",
        run_date,
        len(checks),
        len(trailing),
    )
    return report


def _log_to_mlflow(cfg, run_id: str, report: dict, run_date: date) -> None:
    import mlflow

    from jobs.infra.tracking import init_tracking

    init_tracking(cfg)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"monitor.{k}": v for k, v in report["facts"].items() if v is not None})
        mlflow.set_tag("monitor_alerts", len(report["alerts"]))
        mlflow.log_dict(report, "monitor/report.json")
        mlflow.log_figure(_trend_plot(report, run_date), "monitor/trend.png")


def _trend_plot(report: dict, run_date: date):
    from jobs.infra.tracking import pyplot

    plt = pyplot()
    nights = {**report["trailing"], run_date.isoformat(): report["facts"]}
    failed = {c["fact"] for c in report["checks"] if not c["ok"]}
    columns = 3
    rows = math.ceil(len(MONITOR_FACTS) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for ax, fact in zip(axes.flat, MONITOR_FACTS, strict=False):
        dates = [d for d, f in nights.items() if f.get(fact) is not None]
        values = [nights[d][fact] for d in dates]
        ax.plot(range(len(dates)), values, marker="o")
        if dates and dates[-1] == run_date.isoformat():
            color = "red" if fact in failed else "green"
            ax.plot([len(dates) - 1], [values[-1]], "o", color=color)
        ax.set_xticks(range(len(dates)), [d[5:] for d in dates])
        ax.set_title(fact + ("  (out of bounds)" if fact in failed else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(MONITOR_FACTS) :]:
        ax.axis("off")
    fig.suptitle(f"nightly_recs monitor, {run_date} against the trailing nights")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
