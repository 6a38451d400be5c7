import hashlib
import hmac
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.erase import erase, without_quarantined_visitors, without_raw_lines, without_visitors
from jobs.feeds.privacy import bronze_visitor_ids, text_id_of
from jobs.infra.paths import Lake
from jobs.ingest import run as ingest

D = date(2015, 9, 18)
T0 = 1442534400000  # 2015-09-18 00:00:00 UTC in ms


def test_without_visitors_drops_only_their_rows():
    table = pa.table({"visitor_id": [1, 2, None, 1], "item_id": [10, 11, 12, 13]})
    kept = without_visitors(table, "visitor_id", [1])
    assert kept.to_pydict() == {"visitor_id": [2, None], "item_id": [11, 12]}


def test_without_raw_lines_matches_whole_fields_only():
    lines = ["1442534400000,7,view,10,", "1442534400000,77,view,7", '{"customer":"7"}', "x,17,y"]
    kept = without_raw_lines(pa.table({"raw_line": lines}), ["7"])
    assert kept["raw_line"].to_pylist() == ["x,17,y"]


def test_without_raw_lines_with_several_ids_keeps_an_id_inside_a_timestamp():
    # Ids 1442 and 400 appear inside the timestamp, never as a field of their own.
    lines = ["1442534400000,9,view,10,", "1442534400000,1442,view,10,", "5,400,view,10,"]
    kept = without_raw_lines(pa.table({"raw_line": lines}), ["1442", "400"])
    assert kept["raw_line"].to_pylist() == ["1442534400000,9,view,10,"]


def test_quarantined_rows_are_matched_on_the_parsed_visitor_not_the_line():
    table = pa.table(
        {
            "raw_line": ["T,7,view,10,", "T,77,view,7,", "<redacted: 3 fields>", "T,x,view,7,"],
            "visitor_id": pa.array([7, 77, 7, None], pa.int64()),
        }
    )
    kept = without_quarantined_visitors(table, [7], ["7"])
    assert kept["raw_line"].to_pylist() == ["T,77,view,7,", "T,x,view,7,"]


def test_bronze_visitor_ids_are_the_integer_its_keyed_hash_or_its_text_id():
    assert bronze_visitor_ids("42", None, text_ids=False) == {42}
    assert bronze_visitor_ids("42", b"k", text_ids=False) == {
        int(hmac.new(b"k", b"42", hashlib.sha256).hexdigest()[:15], 16)
    }
    assert bronze_visitor_ids("ann@example.com", None, text_ids=True) == {
        text_id_of("ann@example.com")
    }
    with pytest.raises(ValueError, match="not an integer, and no source lists visitor_id"):
        bronze_visitor_ids("ann@example.com", None, text_ids=False)


@pytest.mark.spark
def test_the_python_text_id_is_the_one_spark_stores(spark):
    from pyspark.sql import functions as F

    from jobs.feeds.sources import text_id

    texts = ["85123A", "ann@example.com", "Mug, blue", "ünïcode ✓"]
    rows = spark.createDataFrame([(s,) for s in texts], "t string").select(text_id(F.col("t")))
    assert [r[0] for r in rows.collect()] == [text_id_of(s) for s in texts]


def test_an_erased_text_visitor_leaves_the_export_and_the_id_dictionary(cfg):
    lake = Lake(cfg.paths.lake)
    ann, bob = text_id_of("ann"), text_id_of("bob")
    exports = lake.partition("exports", "recommendations", D)
    exports.mkdir(parents=True)
    pq.write_table(
        pa.table({"user_id": ["ann", "bob"], "item_id": ["A", "A"]}), exports / "p.parquet"
    )
    words = lake.partition("bronze", "id_dictionary", D)
    words.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"id_column": ["visitor_id", "visitor_id", "item_id"], "id": [ann, bob, ann],
             "raw_id": ["ann", "bob", "an item hashing like ann"]}
        ),
        words / "p.parquet",
    )  # fmt: skip
    source = cfg.ingest.sources[0].model_copy(
        update={"layout": "generic", "text_ids": ("visitor_id",)}
    )
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"sources": (source,)})})

    entry = erase(cfg, ["ann"], None)

    assert pq.read_table(exports, partitioning=None)["user_id"].to_pylist() == ["bob"]
    assert pq.read_table(words, partitioning=None).to_pydict() == {
        "id_column": ["visitor_id", "item_id"],
        "id": [bob, ann],
        "raw_id": ["bob", "an item hashing like ann"],
    }
    assert entry["erased_visitors"] == 1 and sum(entry["rows_removed"].values()) == 2


@pytest.mark.spark
def test_erased_visitor_leaves_the_lake_and_is_kept_out_of_later_ingests(spark, cfg):
    folder = cfg.paths.landing / "retailrocket" / f"dt={D}"
    folder.mkdir(parents=True)
    (folder / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        f"{T0},1,view,10,\n{T0},2,view,10,\n{T0},1,view\n"
    )
    lake = Lake(cfg.paths.lake)
    cfg = cfg.model_copy(
        update={"ingest": cfg.ingest.model_copy(update={"max_quarantine_rate": 1.0})}
    )
    ingest(cfg, D, spark)

    entry = erase(cfg, ["1"], key=None)
    assert set(entry["rows_removed"].values()) == {1}  # one bronze row, one quarantined line
    bronze = spark.read.parquet(str(lake.partition("bronze", "events", D)))
    assert [r.visitor_id for r in bronze.collect()] == [2]
    assert spark.read.parquet(str(lake.partition("quarantine", "rows", D))).count() == 0

    report = ingest(cfg, D, spark)  # the landing file still has visitor 1: ingest drops it
    assert (report["accepted"], report["erased"], report["quarantined"]) == (1, 2, 0)
    bronze = spark.read.parquet(str(lake.partition("bronze", "events", D)))
    assert [r.visitor_id for r in bronze.collect()] == [2]
