"""jobs/clean.py: each rule on a visitor who breaks it and one who just does not, the union of
bronze partitions (gaps, cross-day duplicates) and counts that reconcile on the written data."""

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from jobs.clean import (
    BronzeGapError,
    CleanCountsError,
    MissingColumnsError,
    check_bronze_dates,
    count_by_rule,
    day_cap,
    drop_cross_day_duplicates,
    drop_flagged,
    flag_bots,
    reconcile,
    visitor_signals,
)
from jobs.clean import run as clean
from jobs.infra.config import CleanConfig
from jobs.infra.paths import Lake, read_lineage
from jobs.infra.schemas import event_schema

D = date(2015, 9, 18)
T0 = datetime(2015, 9, 1, tzinfo=UTC)  # a Tuesday, 00:00 UTC
# Every rule as good as off; each test turns on the one it checks.
OFF = CleanConfig(
    max_events_per_day=10**6,
    max_events_per_minute=10**6,
    min_median_gap_seconds=1e-9,
    min_events_for_gaps=10**6,
    max_ascending_view_share=1.0,
    min_views_for_sweep=10**6,
    max_views_without_conversion=10**6,
    max_carts_without_purchase=10**6,
    day_cap_multiple=0,
)


def _events(spark, rows):
    """(seconds after T0, visitor, item, event_type) -> bronze-shaped events."""
    return spark.createDataFrame(
        [
            (T0 + timedelta(seconds=s), v, i, t, None, None, None, None, "shop", "ingest/x")
            for s, v, i, t in rows
        ],
        event_schema(),
    )


def _flagged(events, rules):
    return {r.visitor_id: (r.rule, list(r.rules)) for r in flag_bots(events, rules).collect()}


# --- partitions -------------------------------------------------------------------------------


def test_check_bronze_dates_accepts_a_run_without_gaps(tmp_path):
    check_bronze_dates([date(2015, 9, 16), date(2015, 9, 17), D], D, tmp_path)
    check_bronze_dates([D], D, tmp_path)


def test_check_bronze_dates_without_partitions_names_the_path_and_ingest(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"under {tmp_path}: run ingest")):
        check_bronze_dates([], D, tmp_path)


def test_check_bronze_dates_lists_every_missing_date_including_the_run_date(tmp_path):
    with pytest.raises(BronzeGapError, match="2 date.*2015-09-15, 2015-09-18. Run ingest"):
        check_bronze_dates([date(2015, 9, 14), date(2015, 9, 16), date(2015, 9, 17)], D, tmp_path)


def test_reconcile_accepts_exact_counts_and_names_the_difference_otherwise():
    reconcile(rows_in=10, rows_out=6, removed_events=3, duplicates=1)
    with pytest.raises(CleanCountsError, match=r"off by 1\)"):
        reconcile(rows_in=10, rows_out=6, removed_events=2, duplicates=1)


@pytest.mark.spark
def test_cross_day_duplicates_keep_the_earliest_partitions_row(spark):
    schema = event_schema().add("dt", "date")
    ts = datetime(2015, 9, 16, 12, tzinfo=UTC)
    row = (ts, 1, 10, "view", None, 9.5, None, None, "shop")
    bronze = spark.createDataFrame(
        [
            (*row, "ingest/2015-09-17", date(2015, 9, 17)),
            (*row, "ingest/2015-09-16", date(2015, 9, 16)),  # same event (nulls equal), earlier
            (
                ts,
                1,
                10,
                "view",
                None,
                9.9,
                None,
                None,
                "shop",
                "ingest/2015-09-17",
                date(2015, 9, 17),
            ),
        ],
        schema,
    )
    kept = sorted((r.price, r.ingest_run) for r in drop_cross_day_duplicates(bronze).collect())
    assert kept == [(9.5, "ingest/2015-09-16"), (9.9, "ingest/2015-09-17")]
    with pytest.raises(MissingColumnsError, match="'dt'"):
        drop_cross_day_duplicates(bronze.drop("dt"))


# --- signals and rules ------------------------------------------------------------------------


@pytest.mark.spark
def test_visitor_signals_on_one_visitor(spark):
    rows = [
        (0, 1, 30, "view"),
        (10, 1, 10, "view"),
        (10, 1, 10, "cart"),  # same instant as the view before it
        (40, 1, 20, "view"),
        (86_400 + 100, 1, 25, "view"),  # the next UTC day
    ]
    (s,) = visitor_signals(_events(spark, rows)).collect()
    assert s.asDict() == {
        "visitor_id": 1,
        "events": 5,
        "views": 4,
        "conversions": 1,
        "carted_items": 1,
        "purchases": 0,
        "max_events_per_day": 4,
        "instants": 4,
        "max_events_per_minute": 3,
        "median_gap_seconds": 30.0,  # gaps 10, 30, 86,460 s
        "view_pairs": 3,
        "ascending_view_share": pytest.approx(2 / 3),  # 30->10 down, 10->20 up, 20->25 up
    }
    with pytest.raises(MissingColumnsError, match="'event_type'"):
        visitor_signals(_events(spark, rows).drop("event_type"))


@pytest.mark.spark
def test_events_per_day_counts_rows_per_utc_day(spark):
    rows = [(h * 3600, 1, 10 + h, "view") for h in range(5)]  # 5 on one day
    # 4 before midnight and 4 after: 8 in 24 hours, but at most 4 on a UTC day.
    rows += [(86_400 - 60 * (m + 1), 2, 10, "view") for m in range(4)]
    rows += [(86_400 + 60 * m, 2, 10, "view") for m in range(4)]
    rules = OFF.model_copy(update={"max_events_per_day": 4})
    assert _flagged(_events(spark, rows), rules) == {1: ("events_per_day", ["events_per_day"])}


@pytest.mark.spark
def test_events_per_minute_counts_instants_in_a_sixty_second_window(spark):
    rows = [(s, 1, 10, "view") for s in (0, 20, 40, 59.999)]  # 4 in [0, 60 s)
    rows += [(s, 2, 10, "view") for s in (0, 20, 40, 60)]  # 60 s falls in the next window
    # A checkout of three items: three rows, one instant; 3 instants in the minute.
    rows += [(0, 3, 10, "view"), (30, 3, 10, "cart")]
    rows += [(50, 3, i, "purchase") for i in (10, 11, 12)]
    rules = OFF.model_copy(update={"max_events_per_minute": 3})
    flagged = _flagged(_events(spark, rows), rules)
    assert flagged == {1: ("events_per_minute", ["events_per_minute"])}


@pytest.mark.spark
def test_inhuman_gaps_need_a_short_median_over_enough_instants(spark):
    rows = [(s, 1, 10 + s, "view") for s in (0, 4, 8, 12, 100)]  # gaps 4, 4, 4, 88
    rows += [(s, 2, 10 + s, "view") for s in (0, 4, 9, 15, 100)]  # gaps 4, 5, 6, 85: median 5.5
    rows += [(s, 3, 10 + s, "view") for s in (0, 1, 2)]  # 1 s apart, but only 3 instants
    rules = OFF.model_copy(update={"min_median_gap_seconds": 5.0, "min_events_for_gaps": 4})
    assert _flagged(_events(spark, rows), rules) == {1: ("inhuman_gaps", ["inhuman_gaps"])}


@pytest.mark.spark
def test_catalog_sweep_reads_consecutive_views_only(spark):
    # Views walk 10..14 upwards; the cart of item 5 between them does not break the walk.
    rows = [(60 * n, 1, 10 + n, "view") for n in range(5)] + [(90, 1, 5, "cart")]
    rows += [(60 * n, 2, i, "view") for n, i in enumerate((10, 11, 12, 13, 9))]  # 3 of 4 up
    rows += [(60 * n, 3, 10 + n, "view") for n in range(3)]  # up, but only 3 views
    rules = OFF.model_copy(update={"max_ascending_view_share": 0.75, "min_views_for_sweep": 4})
    assert _flagged(_events(spark, rows), rules) == {1: ("catalog_sweep", ["catalog_sweep"])}


@pytest.mark.spark
def test_events_per_day_leaves_purchase_rows_out(spark):
    # A wholesale order: 6 lines bought at one instant, after 2 views; a cart bot: 5 carts.
    rows = [(0, 1, 10, "view"), (10, 1, 11, "view")]
    rows += [(600, 1, 20 + n, "purchase") for n in range(6)]
    rows += [(60 * n, 2, 30 + n, "cart") for n in range(5)]
    rules = OFF.model_copy(update={"max_events_per_day": 4})
    assert _flagged(_events(spark, rows), rules) == {2: ("events_per_day", ["events_per_day"])}


def _visitor_days(counts, buys=True):
    """Visitor v (from 0) views counts[v] items on one day, 61 s apart, then buys if `buys`."""
    rows = [(61 * n, v, 10 + n, "view") for v, count in enumerate(counts) for n in range(count)]
    return rows + [(9_000, v, 10, "purchase") for v in range(len(counts)) if buys]


@pytest.mark.spark
def test_day_cap_rises_with_the_buyers_busy_days_and_never_falls(spark):
    # 100 buyer-days: 98 of 1 view and cart row, then 5 and 50. The 99th percentile (exact,
    # linear) is 5 + 0.01 x (50 - 5) = 5.45 rows.
    events = _events(spark, _visitor_days([1] * 98 + [5, 50]))
    assert day_cap(events, OFF.model_copy(update={"max_events_per_day": 4})) == 4
    raised = OFF.model_copy(update={"max_events_per_day": 4, "day_cap_multiple": 2.0})
    assert day_cap(events, raised) == 11  # ceil(2 x 5.45)
    low = OFF.model_copy(update={"max_events_per_day": 40, "day_cap_multiple": 2.0})
    assert day_cap(events, low) == 40
    # The cap is what flag_bots applies: 50 > 11 goes, 5 stays.
    assert set(r.visitor_id for r in flag_bots(events, raised, 11).collect()) == {99}
    with pytest.raises(MissingColumnsError, match="'event_type'"):
        day_cap(events.drop("event_type"), raised)


@pytest.mark.spark
def test_day_cap_is_not_raised_by_visitors_who_never_buy(spark):
    # 2 buyers of 1 row a day; 3 non-buyers (bots, a tenth of the visitors and more) of 500.
    rows = _visitor_days([1, 1]) + [
        (61 * n, v, 10 + n, "view") for v in (7, 8, 9) for n in range(500)
    ]
    raised = OFF.model_copy(update={"max_events_per_day": 4, "day_cap_multiple": 10.0})
    assert day_cap(_events(spark, rows), raised) == 10  # 10 x 1, not 10 x 500
    views_only = _events(spark, _visitor_days([1, 700], buys=False))
    assert day_cap(views_only, raised) == 4  # no buyer: the fixed cap


@pytest.mark.spark
def test_carts_without_purchase_catches_a_cart_bot_and_spares_a_buyer(spark):
    rows = [(60 * n, 1, 10 + n, "cart") for n in range(4)]  # 4 items carted, never bought
    rows += [(60 * n, 2, 10 + n, "cart") for n in range(4)] + [(300, 2, 10, "purchase")]
    rows += [(60 * n, 3, 10, "cart") for n in range(6)]  # one item carted 6 times
    rules = OFF.model_copy(update={"max_carts_without_purchase": 4})
    flagged = _flagged(_events(spark, rows), rules)
    assert flagged == {1: ("carts_without_purchase", ["carts_without_purchase"])}


@pytest.mark.spark
def test_views_without_conversion_spares_a_visitor_with_one_cart(spark):
    rows = [(60 * n, 1, 10 + n, "view") for n in range(4)]
    rows += [(60 * n, 2, 10 + n, "view") for n in range(4)] + [(300, 2, 13, "cart")]
    rows += [(60 * n, 3, 10 + n, "view") for n in range(3)]
    rules = OFF.model_copy(update={"max_views_without_conversion": 4})
    flagged = _flagged(_events(spark, rows), rules)
    assert flagged == {1: ("views_without_conversion", ["views_without_conversion"])}


@pytest.mark.spark
def test_a_visitor_breaking_several_rules_is_named_by_the_first_and_lists_all(spark):
    rows = [(n, 1, 10 + n, "view") for n in range(5)]  # 5 views 1 s apart, ids upwards
    rows += [(0, 900, 10, "view")]  # the QA account
    rules = OFF.model_copy(
        update={
            "test_visitor_ids": (900,),
            "max_events_per_day": 4,
            "max_ascending_view_share": 0.8,
            "min_views_for_sweep": 4,
        }
    )
    assert _flagged(_events(spark, rows), rules) == {
        1: ("events_per_day", ["events_per_day", "catalog_sweep"]),
        900: ("test_account", ["test_account"]),
    }
    with pytest.raises(MissingColumnsError, match="'visitor_id'"):
        flag_bots(_events(spark, rows).drop("visitor_id"), rules)


@pytest.fixture()
def mixed(spark):
    """A shopper, a crawler (5 views a day, none carted), a QA account, a shopper on a test SKU."""
    rows = [(0, 1, 10, "view"), (60, 1, 10, "cart")]
    rows += [(3600 * n, 2, 20 + n, "view") for n in range(5)]
    rows += [(0, 900, 10, "view")]
    rows += [(300, 4, 77, "view"), (360, 4, 11, "view")]
    rules = OFF.model_copy(
        update={
            "max_events_per_day": 4,
            "max_views_without_conversion": 4,
            "test_visitor_ids": (900,),
            "test_item_ids": (77,),
        }
    )
    events = _events(spark, rows)
    return events, flag_bots(events, rules), rules


@pytest.mark.spark
def test_drop_flagged_keeps_shoppers_without_test_skus(mixed):
    events, flagged, rules = mixed
    kept = drop_flagged(events, flagged, rules.test_item_ids)
    assert sorted((r.visitor_id, r.item_id) for r in kept.collect()) == [(1, 10), (1, 10), (4, 11)]
    with pytest.raises(MissingColumnsError, match="flagged visitors lacks"):
        drop_flagged(events, flagged.drop("visitor_id"), rules.test_item_ids)


@pytest.mark.spark
def test_count_by_rule_counts_overlaps_per_rule_and_once_in_the_union(mixed):
    events, flagged, rules = mixed
    counts = count_by_rule(events, flagged, rules.test_item_ids)
    assert counts == {
        "by_rule": {
            "test_account": {"visitors": 1, "events": 1},
            "events_per_day": {"visitors": 1, "events": 5},
            "events_per_minute": {"visitors": 0, "events": 0},
            "inhuman_gaps": {"visitors": 0, "events": 0},
            "catalog_sweep": {"visitors": 0, "events": 0},
            "views_without_conversion": {"visitors": 1, "events": 5},
            "carts_without_purchase": {"visitors": 0, "events": 0},
            "test_item": {"visitors": None, "events": 1},
        },
        "any_rule": {"visitors": 2, "events": 6},
        "removed_events": 7,
    }
    assert events.count() == 3 + counts["removed_events"]  # the 3 rows drop_flagged keeps
    with pytest.raises(MissingColumnsError, match="'rules'"):
        count_by_rule(events, flagged.drop("rules"), rules.test_item_ids)


# --- the stage on a lake ----------------------------------------------------------------------


def _write_bronze(spark, lake: Lake, day: date, rows):
    """Rows of (hours after T0, visitor, item, event_type) as bronze events/dt=day."""
    stamped = [
        (T0 + timedelta(hours=h), v, i, t, None, None, None, None, "shop", f"ingest/{day}")
        for h, v, i, t in rows
    ]
    frame = spark.createDataFrame(stamped, event_schema())
    frame.write.mode("overwrite").parquet(str(lake.partition("bronze", "events", day)))


@pytest.mark.spark
def test_clean_unions_the_partitions_and_reconciles_on_the_written_data(spark, cfg):
    rules = cfg.clean.model_copy(update={"max_events_per_day": 4, "day_cap_multiple": 0})
    cfg = cfg.model_copy(update={"clean": rules})  # test ids: accounts 44, 66, 104; item 233
    lake = Lake(cfg.paths.lake)
    history = [(0, 1, 10, "view"), (1, 1, 10, "cart"), (2, 44, 233, "view")]
    history += [(n / 60, 2, 20 + n, "view") for n in range(5)]  # 5 views in a day: a bot
    _write_bronze(spark, lake, date(2015, 9, 16), history)
    _write_bronze(spark, lake, date(2015, 9, 17), [(30, 3, 10, "view"), (31, 3, 233, "view")])
    # A late file repeats the shopper's first view; visitor 3 comes back.
    _write_bronze(spark, lake, D, [(0, 1, 10, "view"), (50, 3, 11, "view")])

    report = clean(cfg, D, spark)

    silver = spark.read.parquet(str(lake.partition("silver", "events", D)))
    assert [(r.visitor_id, r.item_id, r.event_type, r.ingest_run) for r in silver.collect()] == [
        (1, 10, "view", "ingest/2015-09-16"),
        (1, 10, "cart", "ingest/2015-09-16"),
        (3, 10, "view", "ingest/2015-09-17"),
        (3, 11, "view", "ingest/2015-09-18"),
    ]
    removed = spark.read.parquet(str(lake.partition("silver", "removed_visitors", D)))
    assert [(r.visitor_id, r.rule, list(r.rules)) for r in removed.collect()] == [
        (2, "events_per_day", ["events_per_day"]),
        (44, "test_account", ["test_account"]),
    ]
    assert {k: report[k] for k in ("rows_in", "duplicates_across_days", "rows_out")} == {
        "rows_in": 12,
        "duplicates_across_days": 1,
        "rows_out": 4,
    }
    assert (report["removed_events"], report["removed_visitors"]) == (7, 2)
    assert report["events_per_day_cap"] == 4
    assert report["by_rule"]["test_item"] == {"visitors": None, "events": 1}
    assert report["any_rule"] == {"visitors": 2, "events": 6}
    assert report == json.loads(lake.stage_report(D, "clean").read_text())
    lineage = read_lineage(lake.partition("silver", "events", D))
    assert [(i["partition"][-13:], i["rows"]) for i in lineage["inputs"]] == [
        ("dt=2015-09-16", 8),
        ("dt=2015-09-17", 2),
        ("dt=2015-09-18", 2),
    ]
    assert lineage["rows"] == 4 and all(len(i["sha256"]) == 64 for i in lineage["inputs"])


@pytest.mark.spark
def test_clean_stops_at_a_missed_ingest_and_without_bronze(spark, cfg):
    lake = Lake(cfg.paths.lake)
    with pytest.raises(FileNotFoundError, match="run ingest for 2015-09-18"):
        clean(cfg, D, spark)
    _write_bronze(spark, lake, date(2015, 9, 16), [(0, 1, 10, "view")])
    _write_bronze(spark, lake, D, [(50, 1, 11, "view")])
    with pytest.raises(BronzeGapError, match="2015-09-17. Run ingest"):
        clean(cfg, D, spark)
    assert not lake.partition("silver", "events", D).exists()


@pytest.mark.spark
def test_clean_without_bots_keeps_every_row_and_writes_an_empty_removed_table(spark, cfg):
    lake = Lake(cfg.paths.lake)
    _write_bronze(spark, lake, D, [(0, 1, 10, "view"), (1, 1, 10, "cart")])
    report = clean(cfg, D, spark)
    assert (report["rows_in"], report["rows_out"], report["removed_events"]) == (2, 2, 0)
    removed = spark.read.parquet(str(lake.partition("silver", "removed_visitors", D)))
    assert removed.count() == 0 and removed.columns[:3] == ["visitor_id", "rule", "rules"]
