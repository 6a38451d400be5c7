"""End to end: data that fails validation stops the nightly DAG before a model is trained.

Hand-made bronze, catalog and silver partitions with known defects are written into a fresh lake;
the real DAG runs through Airflow with ingest and clean marked successful (their output is what
this test wrote), validate runs for real under spark-submit, fails naming the expectations, and
nothing downstream runs: no split, no MLflow run or model version, nothing published to S3.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DAY = datetime(2015, 9, 18, tzinfo=UTC)
DOWNSTREAM = ("split", "train", "evaluate", "gate", "export", "announce", "summarize", "monitor")


def _ts(day: int, hour: int) -> datetime:
    return datetime(2015, 9, day, hour, tzinfo=UTC)


def _write_parquet(partition: Path, rows: list[dict], schema) -> None:
    """A partition as Spark would leave it: one Parquet file and a _SUCCESS marker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    partition.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), partition / "part-00000.parquet")
    (partition / "_SUCCESS").touch()


def _write_bad_lake(lake: Path) -> None:
    import pyarrow as pa

    # The Arrow types Spark reads back as schemas.event_schema() and the catalog's columns.
    events_schema = pa.schema(
        [
            ("event_ts", pa.timestamp("us", tz="UTC")),
            ("visitor_id", pa.int64()),
            ("item_id", pa.int64()),
            ("event_type", pa.string()),
            ("session_id", pa.string()),
            ("price", pa.float64()),
            ("quantity", pa.int32()),
            ("transaction_id", pa.string()),
            ("source", pa.string()),
            ("ingest_run", pa.string()),
        ]
    )
    catalog_schema = pa.schema(
        [
            ("item_id", pa.int64()),
            ("category_id", pa.int64()),
            ("price", pa.float64()),
            ("available", pa.bool_()),
            ("first_seen_ts", pa.timestamp("us", tz="UTC")),
        ]
    )

    def event(day, hour, visitor, item, event_type="view", txn=None):
        return {
            "event_ts": _ts(day, hour),
            "visitor_id": visitor,
            "item_id": item,
            "event_type": event_type,
            "session_id": None,
            "price": None,
            "quantity": None,
            "transaction_id": txn,
            "source": "shop",
            "ingest_run": f"ingest/2015-09-{day}",
        }

    history = [event(17, h, 1 + h % 3, 10 + h % 4) for h in range(8)]  # 8 on the 17th
    today = [
        event(18, 1, 1, 10),
        event(18, 2, 2, 11, "cart"),
        event(18, 3, 2, 11, "purchase", "t-1"),
        event(18, 4, 3, 99),  # item 99 is not in the catalog
        event(18, 5, 3, 99),
        event(18, 6, 1, 12, "click"),  # an event type ingest must never let through
    ]
    catalog = [
        {
            "item_id": i,
            "category_id": 1,
            "price": 9.5,
            "available": True,
            "first_seen_ts": _ts(1, 0),
        }
        for i in (10, 11, 12, 13)
    ]
    _write_parquet(lake / "bronze/events/dt=2015-09-18", today, events_schema)
    _write_parquet(lake / "bronze/catalog/dt=2015-09-18", catalog, catalog_schema)
    _write_parquet(lake / "silver/events/dt=2015-09-18", history + today, events_schema)


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_data_failing_validation_stops_the_dag_before_training(
    dagbag, tmp_path, bucket, monkeypatch, write_overlay, dag_run_env
):
    client, storage = bucket
    lake = tmp_path / "lake"
    _write_bad_lake(lake)
    config = write_overlay(storage.endpoint_url, storage.bucket, prefix=storage.prefix)
    dag = dagbag.dags["nightly_recs"]
    # The DAG retries with minutes of backoff; a data failure fails the same way every time.
    for task in dag.tasks:
        monkeypatch.setattr(task, "retries", 0)

    run = dag.test(
        logical_date=DAY,
        run_conf={"config": str(config)},
        mark_success_pattern="^(ingest|clean)$",
    )

    states = _states(run)
    assert str(run.state) == "failed", states
    assert states == {
        "ingest": "success",
        "clean": "success",
        "validate": "failed",
        **dict.fromkeys(DOWNSTREAM, "upstream_failed"),
    }
    report = json.loads((lake / "_runs/dt=2015-09-18/validate.json").read_text())
    assert report["success"] is False
    failed = {name: s["failed_expectations"] for name, s in report["suites"].items() if s["failed"]}
    assert failed == {
        "bronze_events": ["expect_column_values_to_be_in_set(event_type)"],
        "silver_events": ["expect_column_values_to_be_in_set(event_type)"],
        "silver_catalog_coverage": ["expect_column_values_to_be_null(item_id_not_in_catalog)"],
    }
    assert Path(report["data_docs_index"]).is_file()
    # The failure callback recorded an alert naming the task and the date.
    alerts = [json.loads(line) for line in (tmp_path / "reports/alerts.jsonl").open()]
    assert [(a["task_id"], a["logical_date"]) for a in alerts] == [
        ("validate", "2015-09-18T00:00:00+00:00")
    ]
    # Nothing after validate left a trace: no stage report, no split, no model, no publication.
    assert sorted(p.name for p in (lake / "_runs/dt=2015-09-18").iterdir()) == ["validate.json"]
    assert not (lake / "splits").exists()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "artifacts").exists()
    assert client.list_objects_v2(Bucket=storage.bucket)["KeyCount"] == 0
