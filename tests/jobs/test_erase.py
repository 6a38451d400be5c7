import hashlib
import hmac
from datetime import date

import pyarrow as pa
import pytest

from jobs.erase import erase, without_raw_lines, without_visitors
from jobs.feeds.privacy import bronze_visitor_id
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


def test_bronze_visitor_id_is_the_integer_or_its_keyed_hash():
    assert bronze_visitor_id("42", None) == 42
    assert bronze_visitor_id("42", b"k") == int(
        hmac.new(b"k", b"42", hashlib.sha256).hexdigest()[:15], 16
    )
    with pytest.raises(ValueError, match="not an integer"):
        bronze_visitor_id("ann@example.com", None)


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
