import gzip
import hashlib
import hmac
import re
from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.feeds.catalog import snapshot_catalog
from jobs.feeds.privacy import pseudonymize
from jobs.feeds.sources import (
    RETAILROCKET,
    SchemaMismatchError,
    Window,
    check_columns,
    parse_events,
    text_id,
)
from jobs.infra.config import SourceConfig
from jobs.infra.paths import Lake, partition_digest, read_lineage
from jobs.ingest import QuarantineRateError, ReconciliationError, UnreadableFileError, reconcile
from jobs.ingest import run as ingest

pytestmark = pytest.mark.spark
D = date(2015, 9, 18)
WINDOW = Window.for_date(D, date(2000, 1, 1))  # [2000-01-01, 2015-09-19) UTC
T0 = 1442534400000  # 2015-09-18 00:00:00 UTC in ms
RR_HEADER = "timestamp,visitorid,event,itemid,transactionid"
REES46_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def _with_sources(cfg, *sources, **ingest_settings):
    ingest_cfg = cfg.ingest.model_copy(update={"sources": sources, **ingest_settings})
    return cfg.model_copy(update={"ingest": ingest_cfg})


def _land(cfg, source: str, day: date, name: str, lines: list[str]):
    folder = cfg.paths.landing / source / f"dt={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def _bronze(spark, cfg, day=D, table="events"):
    return spark.read.parquet(str(Lake(cfg.paths.lake).partition("bronze", table, day)))


def _rr_rows(spark, lines):
    """Rows as the CSV reader hands them to parse_events, for RetailRocket's five columns."""
    rows = []
    for line in lines:
        fields = line.split(",")
        padded = (fields + [None] * 5)[:5]
        rows.append((line, "events.csv", "rr", len(fields) == 5, *padded))
    cols = ", ".join(f"{c} string" for c in RETAILROCKET.columns)
    return spark.createDataFrame(
        rows, f"raw_line string, file string, source string, _fields_ok boolean, {cols}"
    )


def test_parse_events_accepts_good_rows_and_quarantines_each_bad_kind(spark):
    lines = [
        f"{T0},1,view,10,",
        f"{T0 + 1000},1,addtocart,10,",
        f"{T0 + 2000},1,transaction,10,555",
        ",1,view,10,",
        "not-a-time,1,view,10,",
        "1000,2,view,10,",
        f"{T0 + 86_400_000},3,view,10,",  # 2015-09-19: after the logical date
        f"{T0},,view,10,",
        f"{T0},x7,view,10,",
        f"{T0},2,view,,",
        f"{T0},2,view,-5,",
        f"{T0},2,click,10,",
        f"{T0},2,transaction,10,",
        f"{T0},2,view,10,77",
        f"{T0},2,view",
    ]
    parsed = parse_events(_rr_rows(spark, lines), RETAILROCKET, WINDOW)
    accepted = [
        (r.event_ts, r.visitor_id, r.item_id, r.event_type, r.transaction_id)
        for r in parsed.where("_status = 'accepted'").orderBy("event_ts").collect()
    ]
    assert accepted == [
        (datetime(2015, 9, 18, 0, 0, 0), 1, 10, "view", None),
        (datetime(2015, 9, 18, 0, 0, 1), 1, 10, "cart", None),
        (datetime(2015, 9, 18, 0, 0, 2), 1, 10, "purchase", "555"),
    ]
    reasons = {r.raw_line: r.reason for r in parsed.where("_status = 'quarantined'").collect()}
    assert reasons == {
        ",1,view,10,": "missing_timestamp",
        "not-a-time,1,view,10,": "bad_timestamp",
        "1000,2,view,10,": "timestamp_out_of_range",
        f"{T0 + 86_400_000},3,view,10,": "timestamp_after_logical_date",
        f"{T0},,view,10,": "missing_visitor_id",
        f"{T0},x7,view,10,": "bad_visitor_id",
        f"{T0},2,view,,": "missing_item_id",
        f"{T0},2,view,-5,": "bad_item_id",
        f"{T0},2,click,10,": "unknown_event_type",
        f"{T0},2,transaction,10,": "transaction_id_mismatch",
        f"{T0},2,view,10,77": "transaction_id_mismatch",
        f"{T0},2,view": "wrong_field_count",
    }


def test_rees46_file_ingests_by_configuration_alone(spark, cfg):
    cfg = _with_sources(cfg, SourceConfig(name="shop", layout="rees46"))
    _land(
        cfg,
        "shop",
        D,
        "2015-Sep.csv",
        [
            REES46_HEADER,
            "2015-09-18 10:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,"
            "72d76fde-8bb3-4e00-8c23-a032dfed738c",
            "2015-09-18 10:00:05 UTC,cart,44600062,2103807459595387724,,shiseido,35.79,541312140,"
            "72d76fde-8bb3-4e00-8c23-a032dfed738c",
            "2015-09-18 10:00:09 UTC,remove_from_cart,44600062,2103807459595387724,,shiseido,"
            "35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c",
            '2015-09-18 11:00:00 UTC,purchase,3900821,2053013552326770905,"appliances.water,'
            'heater",aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc',
            "2015-09-18 11:00:00 UTC,view,3900821,2053013552326770905,,aqua,-1.00,554748717,x",
            "18/09/2015 11:00,view,3900821,2053013552326770905,,aqua,33.20,554748717,x",
            "2015-09-18 12:00:00 UTC,view,3900821,2053013552326770905,,aqua,33.20,554748717",
        ],
    )
    report = ingest(_with_sources(cfg, *cfg.ingest.sources, max_quarantine_rate=1.0), D, spark)

    rows = [
        (r.event_ts, r.visitor_id, r.item_id, r.event_type, r.price, r.session_id, r.source)
        for r in _bronze(spark, cfg).orderBy("event_ts", "event_type").collect()
    ]
    assert rows == [
        (datetime(2015, 9, 18, 10), 541312140, 44600062, "view", 35.79,
         "72d76fde-8bb3-4e00-8c23-a032dfed738c", "shop"),
        (datetime(2015, 9, 18, 10, 0, 5), 541312140, 44600062, "cart", 35.79,
         "72d76fde-8bb3-4e00-8c23-a032dfed738c", "shop"),
        (datetime(2015, 9, 18, 11), 554748717, 3900821, "purchase", 33.2,
         "9333dfbd-b87a-4708-9857-6336556b0fcc", "shop"),
    ]  # fmt: skip
    (counts,) = report["files"].values()
    assert counts == {
        "raw_rows": 7,
        "accepted": 3,
        "quarantined": 3,
        "ignored": 1,
        "erased": 0,
        "reasons": {"bad_timestamp": 1, "negative_price": 1, "wrong_field_count": 1},
    }
    catalog = {
        r.item_id: (r.category_id, r.price) for r in _bronze(spark, cfg, D, "catalog").collect()
    }
    assert catalog == {44600062: (2103807459595387724, 35.79), 3900821: (2053013552326770905, 33.2)}


def _generic_source(fmt="csv"):
    return SourceConfig(
        name="myshop",
        layout="generic",
        format=fmt,
        events_glob=f"*.{fmt}",
        columns={
            "event_ts": "ts",
            "visitor_id": "customer",
            "item_id": "sku",
            "event_type": "action",
            "quantity": "qty",
            "transaction_id": "order_no",
        },
        timestamp_format="yyyy-MM-dd'T'HH:mm:ssX",
        event_types={"view": ["pageview"], "cart": ["basket_add"], "purchase": ["order"]},
        ignore_event_types=["wishlist"],
    )


GENERIC_LINES = [
    "order_no,sku,ts,action,customer,qty,channel",
    ",100,2015-09-18T08:00:00Z,pageview,7,,web",
    ",100,2015-09-18T08:01:00Z,basket_add,7,2,web",
    "A-1,100,2015-09-18T08:02:00Z,order,7,2,web",
    "A-2,100,2015-09-18T08:03:00Z,order,7,-1,web",
    ",100,2015-09-18T08:04:00Z,wishlist,7,,web",
    ",100,2015-09-18T08:01:00Z,basket_add,7,2,web",  # an exact duplicate
]


def test_generic_csv_maps_columns_and_event_names_from_config(spark, cfg):
    cfg = _with_sources(cfg, _generic_source(), max_quarantine_rate=1.0)
    _land(cfg, "myshop", D, "export.csv", GENERIC_LINES)
    report = ingest(cfg, D, spark)
    rows = [
        (r.event_ts, r.visitor_id, r.item_id, r.event_type, r.quantity, r.transaction_id)
        for r in _bronze(spark, cfg).orderBy("event_ts").collect()
    ]
    assert rows == [
        (datetime(2015, 9, 18, 8, 0), 7, 100, "view", None, None),
        (datetime(2015, 9, 18, 8, 1), 7, 100, "cart", 2, None),
        (datetime(2015, 9, 18, 8, 2), 7, 100, "purchase", 2, "A-1"),
    ]
    assert (report["raw_rows"], report["accepted"], report["duplicates"]) == (6, 3, 1)
    assert (report["quarantined"], report["ignored"]) == (1, 1)
    assert report["quarantine_reasons"] == {"negative_quantity": 1}


def test_generic_parquet_with_native_timestamps(spark, cfg, tmp_path):
    import pandas as pd

    cfg = _with_sources(cfg, _generic_source("parquet"))
    folder = cfg.paths.landing / "myshop" / f"dt={D}"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "ts": pd.to_datetime(["2015-09-18 08:00:00", "2015-09-18 09:30:00"]),
            "customer": ["7", "8"],
            "sku": [100, 101],
            "action": ["pageview", "order"],
            "qty": [None, 1],
            "order_no": [None, "B-9"],
        }
    ).to_parquet(folder / "part-0.parquet", coerce_timestamps="us")  # Spark cannot read ns
    report = ingest(cfg, D, spark)
    rows = [(r.event_ts, r.visitor_id, r.event_type) for r in _bronze(spark, cfg).collect()]
    assert sorted(rows) == [
        (datetime(2015, 9, 18, 8, 0), 7, "view"),
        (datetime(2015, 9, 18, 9, 30), 8, "purchase"),
    ]
    assert report["quarantined"] == 0


def test_a_renamed_column_fails_naming_the_file_and_column(spark, cfg):
    cfg = _with_sources(cfg, _generic_source())
    path = _land(cfg, "myshop", D, "export.csv", [GENERIC_LINES[0].replace("sku", "product")])
    with pytest.raises(SchemaMismatchError, match=rf"{path}: missing column\(s\) \['sku'\]"):
        ingest(cfg, D, spark)
    with pytest.raises(SchemaMismatchError, match="events.csv: missing"):
        check_columns(["timestamp", "visitor"], ("timestamp", "visitorid"), "events.csv")


def test_too_much_quarantine_fails_naming_file_and_reasons_and_keeps_no_bronze(spark, cfg):
    path = _land(cfg, "retailrocket", D, "events.csv", [RR_HEADER, f"{T0},1,view,10,", "junk"])
    expected = rf"{path}: 50.00% of 2 rows quarantined \(wrong_field_count=1\)"
    with pytest.raises(QuarantineRateError, match=expected):
        ingest(cfg, D, spark)
    lake = Lake(cfg.paths.lake)
    assert not lake.partition("bronze", "events", D).exists()
    assert spark.read.parquet(str(lake.partition("quarantine", "rows", D))).count() == 1


def test_an_empty_day_succeeds_and_says_so(spark, cfg):
    report = ingest(cfg, D, spark)
    assert report["empty_day"] is True
    assert (report["raw_rows"], report["accepted"]) == (0, 0)
    assert _bronze(spark, cfg).count() == 0
    assert set(_bronze(spark, cfg).columns) >= {"event_ts", "visitor_id", "source", "ingest_run"}


def test_rerun_is_identical_and_a_late_file_completes_the_day(spark, cfg):
    _land(cfg, "retailrocket", D, "events.csv", [RR_HEADER, f"{T0},1,view,10,"])
    lake = Lake(cfg.paths.lake)
    ingest(cfg, D, spark)
    first = partition_digest(lake.partition("bronze", "events", D))
    ingest(cfg, D, spark)
    assert partition_digest(lake.partition("bronze", "events", D)) == first

    # A late file repeating one row and adding another: the day is complete, the repeat counted.
    late = [RR_HEADER, f"{T0},1,view,10,", f"{T0},2,view,11,"]
    _land(cfg, "retailrocket", D, "events-late.csv", late)
    report = ingest(cfg, D, spark)
    assert (report["accepted"], report["duplicates"]) == (2, 1)
    lineage = read_lineage(lake.partition("bronze", "events", D))
    names = [Path(f["file"]).name for f in lineage["inputs"]]
    assert names == ["events-late.csv", "events.csv"]
    assert all(len(f["sha256"]) == 64 and f["rows"] for f in lineage["inputs"])


def test_pseudonymize_is_hmac_sha256_cut_to_60_bits(spark):
    from pyspark.sql import functions as F

    key = b"not-a-real-secret"
    got = spark.range(1).select(pseudonymize(F.lit("541312140"), key)).first()[0]
    digest = hmac.new(key, b"541312140", hashlib.sha256).hexdigest()
    assert got == int(digest[:15], 16)


def test_pseudonymized_ingest_needs_the_key_and_hides_ids(spark, cfg, monkeypatch):
    _land(cfg, "retailrocket", D, "events.csv", [RR_HEADER, f"{T0},1,view,10,"])
    setting = cfg.ingest.pseudonymize_visitor_ids.model_copy(update={"enabled": True})
    cfg = _with_sources(cfg, *cfg.ingest.sources, pseudonymize_visitor_ids=setting)
    monkeypatch.delenv("RECS_VISITOR_ID_KEY", raising=False)
    with pytest.raises(RuntimeError, match="RECS_VISITOR_ID_KEY is unset"):
        ingest(cfg, D, spark)
    monkeypatch.setenv("RECS_VISITOR_ID_KEY", "k")
    ingest(cfg, D, spark)
    (row,) = _bronze(spark, cfg).collect()
    assert row.visitor_id == int(hmac.new(b"k", b"1", hashlib.sha256).hexdigest()[:15], 16)


def test_pseudonymized_ingest_quarantines_no_raw_visitor_id(spark, cfg, monkeypatch):
    lines = [
        f"{T0},541312140,view,10,7",  # transaction on a view: quarantined, fields intact
        f'{T0},541312140,view,"10,5",',  # quoted, and a bad item id
        f"{T0},541312140,view",  # short: no field is surely the visitor's
    ]
    _land(cfg, "retailrocket", D, "events.csv", [RR_HEADER, *lines])
    setting = cfg.ingest.pseudonymize_visitor_ids.model_copy(update={"enabled": True})
    cfg = _with_sources(
        cfg, *cfg.ingest.sources, pseudonymize_visitor_ids=setting, max_quarantine_rate=1.0
    )
    monkeypatch.setenv("RECS_VISITOR_ID_KEY", "k")
    ingest(cfg, D, spark)
    hashed = int(hmac.new(b"k", b"541312140", hashlib.sha256).hexdigest()[:15], 16)
    rows = spark.read.parquet(str(Lake(cfg.paths.lake).partition("quarantine", "rows", D)))
    got = sorted((r.raw_line, r.visitor_id) for r in rows.collect())
    assert got == sorted(
        [
            (f"{T0},{hashed},view,10,7", hashed),
            (f'{T0},{hashed},view,"10,5",', hashed),
            ("<redacted: 3 fields, the visitor field not located>", hashed),
        ]
    )


def test_catalog_snapshot_uses_only_facts_before_the_end_of_the_date(spark):
    facts = spark.createDataFrame(
        [
            (10, datetime(2015, 9, 17, 23, 59, 55), 3, None, None),
            (10, datetime(2015, 9, 17, 23, 59, 56), None, 9.5, True),
            (10, datetime(2015, 9, 17, 23, 59, 59), None, None, False),
            (10, datetime(2015, 9, 19, 0, 0, 0), 4, 1.0, True),  # tomorrow: must not be seen
            (11, datetime(2015, 9, 19, 0, 0, 0), 4, None, None),  # launched tomorrow
            (12, datetime(2015, 9, 17, 23, 59, 51), 5, None, None),
        ],
        "item_id long, fact_ts timestamp, category_id long, price double, available boolean",
    ).selectExpr("*", "fact_ts as first_seen_ts", "'rr' as source")
    rows = [tuple(r) for r in snapshot_catalog(facts, WINDOW.until).orderBy("item_id").collect()]
    assert rows == [
        (10, 3, 9.5, False, datetime(2015, 9, 17, 23, 59, 55)),
        (12, 5, None, True, datetime(2015, 9, 17, 23, 59, 51)),
    ]


def test_reconcile_raises_when_a_row_is_unaccounted_for():
    ok = {"raw_rows": 10, "accepted": 6, "quarantined": 2, "ignored": 1, "erased": 1}
    assert reconcile({"f.csv": ok}, accepted_events=6, written_events=5) == 1
    with pytest.raises(ReconciliationError, match="f.csv: counts do not reconcile"):
        reconcile({"f.csv": {**ok, "ignored": 0}}, accepted_events=6, written_events=5)
    with pytest.raises(ReconciliationError, match="only 6 were accepted"):
        reconcile({"f.csv": ok}, accepted_events=6, written_events=7)


def _taobao_like(**overrides):
    """A headerless feed with its column order declared (Taobao's UserBehavior export)."""
    settings = {
        "name": "tb",
        "layout": "generic",
        "header": False,
        "column_names": ["user_id", "item_id", "category_id", "behavior_type", "timestamp"],
        "columns": {
            "visitor_id": "user_id",
            "item_id": "item_id",
            "category_id": "category_id",
            "event_type": "behavior_type",
            "event_ts": "timestamp",
        },
        "timestamp_format": "epoch_s",
        "event_types": {"view": ["pv"], "cart": ["cart", "fav"], "purchase": ["buy"]},
    }
    return SourceConfig(**{**settings, **overrides})


TB_LINES = ["1,10,5,pv,1442534400", "1,10,5,buy,1442534460", "2,11,5,fav,1442534520"]
TB_ROWS = [(1, 10, "view"), (1, 10, "purchase"), (2, 11, "cart")]


def _event_rows(spark, cfg):
    return [
        (r.visitor_id, r.item_id, r.event_type)
        for r in _bronze(spark, cfg).orderBy("event_ts", "event_type").collect()
    ]


def test_a_gzipped_headerless_export_reads_by_its_declared_column_order(spark, cfg):
    cfg = _with_sources(cfg, _taobao_like())
    folder = cfg.paths.landing / "tb" / f"dt={D}"
    folder.mkdir(parents=True)
    with gzip.open(folder / "UserBehavior.CSV.gz", "wt") as handle:
        handle.write("\n".join(TB_LINES) + "\n")

    report = ingest(cfg, D, spark)

    assert _event_rows(spark, cfg) == TB_ROWS
    assert report["raw_rows"] == 3 and report["accepted"] == 3 and report["skipped_files"] == []


def test_a_tab_separated_file_with_a_header_reads_by_its_delimiter(spark, cfg):
    header = "user_id\titem_id\tcategory_id\tbehavior_type\ttimestamp"
    source = _taobao_like(header=True, column_names=(), delimiter="\t", events_glob=["*.tsv"])
    cfg = _with_sources(cfg, source)
    _land(cfg, "tb", D, "events.tsv", [header, *(line.replace(",", "\t") for line in TB_LINES)])

    report = ingest(cfg, D, spark)

    assert _event_rows(spark, cfg) == TB_ROWS and report["quarantined"] == 0


def test_a_purchase_only_feed_takes_its_event_type_from_the_config(spark, cfg):
    columns = {"visitor_id": "customer", "item_id": "sku", "event_ts": "ts"}
    source = SourceConfig(
        name="orders", layout="generic", columns=columns, event_type="purchase",
        timestamp_format="epoch_s",
    )  # fmt: skip
    cfg = _with_sources(cfg, source)
    _land(cfg, "orders", D, "orders.csv", ["customer,sku,ts", "7,100,1442534400"])

    ingest(cfg, D, spark)

    assert _event_rows(spark, cfg) == [(7, 100, "purchase")]


def test_files_no_pattern_matches_are_reported_as_skipped_not_ignored(spark, cfg, caplog):
    cfg = _with_sources(cfg, _taobao_like(events_glob=["behaviour*.csv"]))
    _land(cfg, "tb", D, "Behaviour-1.csv", TB_LINES)
    stray = _land(cfg, "tb", D, "notes.txt", ["not an export"])

    report = ingest(cfg, D, spark)

    assert report["accepted"] == 3
    assert report["skipped_files"] == [{"file": str(stray), "matches_none_of": ["behaviour*.csv"]}]
    assert f"{stray} matches none of" in caplog.text


def test_a_binary_file_fails_naming_it(spark, cfg):
    cfg = _with_sources(cfg, _taobao_like())
    folder = cfg.paths.landing / "tb" / f"dt={D}"
    folder.mkdir(parents=True)
    (folder / "dump.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    (folder / "broken.csv.gz").write_bytes(b"\x1f\x8b\x08not really gzip")

    with pytest.raises(UnreadableFileError, match=re.escape(str(folder / "broken.csv.gz"))):
        ingest(cfg, D, spark)


def test_text_ids_become_stable_integers_and_the_dictionary_keeps_the_text(spark, cfg):
    source = _taobao_like(text_ids=["item_id", "visitor_id"])
    cfg = _with_sources(cfg, source)
    _land(
        cfg, "tb", D, "events.csv", ["alice,85123A,5,pv,1442534400", "bob,85123A,5,buy,1442534460"]
    )

    ingest(cfg, D, spark)

    rows = _bronze(spark, cfg).orderBy("event_ts").collect()
    assert rows[0].item_id == rows[1].item_id and rows[0].visitor_id != rows[1].visitor_id
    assert all(0 <= r.item_id < 2**62 and 0 <= r.visitor_id < 2**62 for r in rows)
    ids = _bronze(spark, cfg, table="id_dictionary").collect()
    assert {(r.id_column, r.id, r.raw_id) for r in ids} == {
        ("item_id", rows[0].item_id, "85123A"),
        ("visitor_id", rows[0].visitor_id, "alice"),
        ("visitor_id", rows[1].visitor_id, "bob"),
    }
    # The same text gets the same id on a later night, with no state carried over.
    again = spark.createDataFrame([("85123A",)], "t string").select(text_id(F.col("t"))).first()
    assert again[0] == rows[0].item_id


@pytest.fixture(params=[None, 40], ids=["one-split", "40-byte-splits"])
def split_bytes(spark, request):
    """Spark's file split size for the test: its default, or 40 bytes, so that a record's lines
    fall into different splits (partitions) of one file."""
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    if request.param:
        spark.conf.set(key, str(request.param))
    yield request.param
    spark.conf.set(key, before)


def test_csv_quoting_follows_rfc_4180_and_a_broken_record_is_never_half_accepted(
    spark, cfg, split_bytes
):
    cfg = _with_sources(
        cfg, SourceConfig(name="rr", layout="retailrocket"), max_quarantine_rate=1.0
    )
    lines = [
        RR_HEADER,
        f'{T0},1,transaction,10,"tx ""7"""',  # a doubled quote is one quote
        f'{T0 + 1},2,transaction,11,"tx\n8"',  # a line break inside quotes: one record
        f'{T0 + 2},3,"view\n",12,',  # ... parsed whole, and quarantined whole
        f"{T0 + 3},4,view,13,",
        f'{T0 + 4},5,"view,14,',  # a quote that never closes: this line and every one after
        f"{T0 + 5},6,view,15,",
    ]
    path = _land(cfg, "rr", D, "events.csv", lines)
    if split_bytes:
        assert spark.read.text(str(path)).rdd.getNumPartitions() > 4

    report = ingest(cfg, D, spark)

    bronze = _bronze(spark, cfg).orderBy("event_ts").collect()
    assert [(r.visitor_id, r.event_type, r.transaction_id) for r in bronze] == [
        (1, "purchase", 'tx "7"'),
        (2, "purchase", "tx\n8"),
        (4, "view", None),
    ]
    quarantine = spark.read.parquet(str(Lake(cfg.paths.lake).partition("quarantine", "rows", D)))
    assert sorted((r.raw_line, r.reason) for r in quarantine.collect()) == [
        (f'{T0 + 2},3,"view\n",12,', "unknown_event_type"),
        (f'{T0 + 4},5,"view,14,', "unclosed_quote"),
        (f"{T0 + 5},6,view,15,", "unclosed_quote"),
    ]
    # 8 lines after the header make 6 records: each is accepted or quarantined, once.
    counts = report["files"][str(path)]
    assert (counts["raw_rows"], counts["accepted"], counts["quarantined"]) == (6, 3, 3)
    assert report["raw_rows"] == report["accepted"] + report["quarantined"] == 6
