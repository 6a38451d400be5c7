import hashlib
import hmac
import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.erase import (
    erase,
    without_export_lines,
    without_model_visitors,
    without_quarantined_visitors,
    without_raw_lines,
    without_visitors,
)
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


def test_an_erased_text_visitor_leaves_the_export_and_the_id_dictionary(cfg, bucket):
    client, storage = bucket
    cfg = cfg.model_copy(update={"storage": storage})
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

    entry = erase(cfg, ["ann"], None, client)

    assert pq.read_table(exports, partitioning=None)["user_id"].to_pylist() == ["bob"]
    assert pq.read_table(words, partitioning=None).to_pydict() == {
        "id_column": ["visitor_id", "item_id"],
        "id": [bob, ann],
        "raw_id": ["bob", "an item hashing like ann"],
    }
    assert entry["erased_visitors"] == 1 and sum(entry["rows_removed"].values()) == 2


@pytest.mark.spark
def test_erased_visitor_leaves_the_lake_and_is_kept_out_of_later_ingests(spark, cfg, bucket):
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

    entry = erase(cfg.model_copy(update={"storage": bucket[1]}), ["1"], None, bucket[0])
    assert set(entry["rows_removed"].values()) == {1}  # one bronze row, one quarantined line
    bronze = spark.read.parquet(str(lake.partition("bronze", "events", D)))
    assert [r.visitor_id for r in bronze.collect()] == [2]
    assert spark.read.parquet(str(lake.partition("quarantine", "rows", D))).count() == 0

    report = ingest(cfg, D, spark)  # the landing file still has visitor 1: ingest drops it
    assert (report["accepted"], report["erased"], report["quarantined"]) == (1, 2, 0)
    bronze = spark.read.parquet(str(lake.partition("bronze", "events", D)))
    assert [r.visitor_id for r in bronze.collect()] == [2]


def test_export_lines_lose_only_the_erased_users_lines():
    lines = [
        '{"input":{"userId":"7"},"output":{"recommendedItems":["1"],"scores":[0.5]},"error":null}',
        '{"input":{"userId":"77"},"output":{"recommendedItems":["7"],"scores":[0.25]},"error":null}',
    ]
    text, removed = without_export_lines("\n".join(lines) + "\n", {"7"})
    assert (text, removed) == (lines[1] + "\n", 1)


def test_a_lake_export_keeps_its_files_and_other_visitors_lines(cfg, bucket):
    client, storage = bucket
    cfg = cfg.model_copy(update={"storage": storage})
    lake = Lake(cfg.paths.lake)
    folders = [
        lake.partition("exports", "recommendations", D),
        lake.partition("exports", "shadow_recommendations", D),
        lake.root / "exports" / "_staging" / "run=dead-1234" / "recommendations",
    ]
    other = (
        '{"input":{"userId":"2"},"output":{"recommendedItems":["10"],"scores":[1]},"error":null}\n'
    )
    for folder in folders:
        folder.mkdir(parents=True)
        pq.write_table(
            pa.table({"user_id": [1, 2], "item_id": [10, 10]}), folder / "part-00000.parquet"
        )
        (folder / "part-00000.jsonl").write_text(other.replace('"2"', '"1"') + other)

    entry = erase(cfg, ["1"], None, client)

    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == [
            "part-00000.jsonl",
            "part-00000.parquet",
        ]
        assert (folder / "part-00000.jsonl").read_text() == other
        assert pq.read_table(folder / "part-00000.parquet")["user_id"].to_pylist() == [2]
        assert entry["rows_removed"][str(folder)] == 2  # one Parquet row, one JSON line


def _items(ids):
    return np.asarray(ids, dtype=np.int64)


def test_saved_models_forget_erased_visitors_and_give_them_the_fallback():
    from jobs.recommenders.interactions import build_interactions
    from jobs.recommenders.neighbours import ItemKnnRecommender
    from jobs.recommenders.repeat import RepeatRecommender

    events = pd.DataFrame(
        {"visitor_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 11],
         "event_type": ["view"] * 5}
    )  # fmt: skip
    interactions = build_interactions(events, {"view": 1.0})
    repeat = RepeatRecommender(interactions, _items([10, 11, 12]))
    knn = ItemKnnRecommender.fit(interactions, neighbours=5)
    for model, personal in ((repeat, "repeat"), (knn, knn.name)):
        redacted, removed = without_model_visitors(model, [1, 9])
        assert removed == 2 if model is repeat else removed == 1
        lists = redacted.recommend(_items([1, 2]), 2)
        assert set(lists.loc[lists["visitor_id"] == 1, "source"]) == {"popular"}
        assert personal in set(lists.loc[lists["visitor_id"] == 2, "source"])


BUCKET = "erase-night"


def _whole(ids) -> re.Pattern:
    return re.compile(r"(?<![\w.])(" + "|".join(map(str, ids)) + r")(?![\w.])")


def _traces(table: pa.Table, ids: set[int], texts: set[str]) -> int:
    hits = 0
    for column in ("visitor_id", "user_id"):
        if column in table.column_names:
            values = pc.cast(table[column], pa.string()).to_pylist()
            hits += sum(v in texts for v in values)
    if "raw_line" in table.column_names:
        hits += sum(bool(_whole(ids).search(v or "")) for v in table["raw_line"].to_pylist())
    if "id_column" in table.column_names:
        hits += sum(
            c == "visitor_id" and i in ids
            for c, i in zip(table["id_column"].to_pylist(), table["id"].to_pylist(), strict=True)
        )
    return hits


# Keys that hold visitor ids in any JSON the project writes; counts sit under other names
# ("visitors": 4225), and the shop's ids are small integers a count can equal.
ID_KEYS = {"visitor_id", "visitor_ids", "visitorid", "user_id", "user_ids", "userid"}


def _json_traces(value, ids: set[int], key: str = "") -> int:
    """Values equal to one of `ids` under an id key, anywhere in a parsed JSON document."""
    if isinstance(value, dict):
        return sum(_json_traces(v, ids, k) for k, v in value.items())
    if isinstance(value, list):
        return sum(_json_traces(v, ids, key) for v in value)
    if key.lower() not in ID_KEYS or isinstance(value, bool):
        return 0
    try:
        return int(int(value) in ids)
    except (TypeError, ValueError):
        return 0


def _file_traces(name: str, data: bytes, ids: set[int], texts: set[str]) -> int:
    if name.endswith(".parquet"):
        return _traces(pq.read_table(pa.BufferReader(data)), ids, texts)
    if name.endswith(".jsonl"):
        return sum(
            json.loads(x)["input"].get("userId") in texts for x in data.decode().splitlines()
        )
    if name.endswith(".json"):
        return _json_traces(json.loads(data), ids)
    return 0


def _every_trace(cfg, client, ids: set[int]) -> dict[str, int]:
    """Where the visitors still are: lake files, reports, S3 objects, registered models."""
    import mlflow

    from jobs.recommenders.pyfunc import load_recommender

    texts = set(map(str, ids))
    found = {}
    listing = Lake(cfg.paths.lake).table("erasure", "visitors")
    for root in (cfg.paths.lake, cfg.paths.reports, cfg.mlflow.artifact_root):
        for path in root.rglob("*"):
            if path.is_file() and listing not in path.parents:
                n = _file_traces(path.name, path.read_bytes(), ids, texts)
                if n:
                    found[str(path)] = n
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        n = _file_traces(obj["Key"], body, ids, texts)
        if n:
            found[f"s3://{BUCKET}/{obj['Key']}"] = n
    registry = mlflow.MlflowClient()
    versions = registry.search_model_versions(f"name = '{cfg.mlflow.model_name}'")
    for version in versions:
        model = load_recommender(f"models:/{cfg.mlflow.model_name}/{version.version}")
        known = getattr(
            model, "visitor_ids", getattr(getattr(model, "data", None), "visitor_ids", [])
        )
        n = int(np.isin(np.asarray(known), list(ids)).sum())
        lists = model.recommend(np.asarray(sorted(ids)), 5)
        n += int((lists["source"] == model.name).sum())
        if n:
            found[f"models:/{cfg.mlflow.model_name}/{version.version}"] = n
    return found


def test_erase_after_a_night_leaves_no_trace_in_any_store(
    spark, tmp_path, s3_endpoint, write_overlay
):
    import mlflow

    from jobs import clean, evaluate, export, gate, monitor, split, summarize, train, validate
    from jobs.infra.config import load_config
    from jobs.infra.storage import s3_client
    from jobs.shop import generate
    from jobs.shop.land import land

    day, history = date(2015, 9, 18), date(2015, 9, 17)
    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    cfg = load_config(write_overlay(s3_endpoint, BUCKET), environ={})
    client = s3_client(cfg.storage)
    client.create_bucket(Bucket=BUCKET)
    land(tmp_path / "raw", cfg.paths.landing / "retailrocket", day)
    ingest(cfg, history, spark)
    for stage in (ingest, clean.run, validate.run, split.run):
        stage(cfg, day, spark)

    def rest(cfg, run_id):
        for stage in (train, evaluate, gate):
            stage.run(cfg, day)
        export.run(cfg, day, run_id=run_id)
        summarize.run(cfg, day)
        monitor.run(cfg, day)

    rest(cfg, "night-1")
    # A gated rerun: the champion's lists again, and the challenger's under shadow/.
    bad = "train:\n  regularization: 1000000.0\ntune:\n  trials: 0\n"
    rest(load_config(write_overlay(s3_endpoint, BUCKET, bad), environ={}), "night-2")

    lake = Lake(cfg.paths.lake)
    shadow = pq.read_table(
        sorted(lake.partition("exports", "shadow_recommendations", day).glob("*.parquet"))
    )
    quarantined = pq.read_table(lake.table("quarantine", "rows"), partitioning=None)
    held = set(
        pq.read_table(lake.table("silver", "events"), partitioning=None)["visitor_id"].to_pylist()
    )
    in_quarantine = sorted(set(quarantined["visitor_id"].drop_null().to_pylist()) & held)
    # One visitor of the shadow sample and one with a quarantined line (else a second one).
    first = int(shadow["user_id"][0].as_py())
    second = next((v for v in in_quarantine if v != first), int(shadow["user_id"][-1].as_py()))
    ids = {first, second}
    before = _every_trace(cfg, client, ids)
    assert any(p.startswith("models:/") for p in before)
    assert any("/shadow/" in p for p in before) and any("exports/shadow" in p for p in before)

    entry = erase(cfg, [str(i) for i in sorted(ids)], None, client)

    assert _every_trace(cfg, client, ids) == {}
    assert set(entry["rows_removed_by_store"]) == {"lake", "s3", "mlflow"}
    # Only the erased went: every other visitor still has a full list in the live export.
    latest = json.loads(
        client.get_object(Bucket=BUCKET, Key="nightly/recommendations/latest.json")["Body"].read()
    )
    manifest = json.loads(
        client.get_object(Bucket=BUCKET, Key=latest["manifest"].removeprefix(f"s3://{BUCKET}/"))[
            "Body"
        ].read()
    )
    assert (
        manifest["users"] == len(held) - 2
        and manifest["rows"] == manifest["users"] * cfg.export.top_n
    )
    for f in manifest["files"]:
        body = client.get_object(Bucket=BUCKET, Key=f["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f["sha256"]
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    champion = mlflow.MlflowClient().get_model_version_by_alias(cfg.mlflow.model_name, "champion")
    assert "erased_at" in champion.tags
