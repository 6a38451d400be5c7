"""The alert Notifier under Airflow: a task fails in `dag.test()`, the Notifier writes the
alerts.jsonl record and POSTs the alert through the `recs_alerts` HTTP connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


PROBE_DAG = """
from datetime import UTC, datetime

from airflow.sdk import DAG, task

from jobs.infra.alerts import AlertNotifier

with DAG(
    "alert_probe",
    schedule=None,
    start_date=datetime(2015, 9, 1, tzinfo=UTC),
    params={"config": CONFIG},
    default_args={"retries": 0, "on_failure_callback": AlertNotifier()},
):

    @task
    def fine():
        return "ok"

    @task
    def broken():
        raise RuntimeError("the feed is empty")

    fine() >> broken()
"""


def test_the_notifier_fires_on_a_failed_task(dagbag, tmp_path, monkeypatch, webhook):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    url, received = webhook
    monkeypatch.setenv("AIRFLOW_CONN_RECS_ALERTS", json.dumps({"conn_type": "http", "host": url}))
    config = tmp_path / "overlay.yaml"
    config.write_text(
        f"extends: {PROJECT / 'configs' / 'test.yaml'}\npaths:\n  reports: {tmp_path / 'reports'}\n"
    )
    # dag.test() runs only a DAG Airflow has serialized, recorded under a known bundle.
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "alert_probe.py").write_text(PROBE_DAG.replace("CONFIG", repr(str(config))))
    bag = DagBag(dag_folder=str(folder))
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)

    run = bag.dags["alert_probe"].test(logical_date=datetime(2015, 9, 18, tzinfo=UTC))
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"fine": "success", "broken": "failed"}
    [alert] = [json.loads(line) for line in (tmp_path / "reports" / "alerts.jsonl").open()]
    assert alert["dag_id"] == "alert_probe" and alert["task_id"] == "broken"
    assert alert["logical_date"] == "2015-09-18T00:00:00+00:00"
    assert "the feed is empty" in alert["error"]
    assert received == [alert]  # the same record, through the connection
