"""`make up` / `make down` for real: the local stack comes up, runs the DAG for a date triggered
through Airflow's REST API (LocalExecutor, scheduler, api-server; the Spark stages on the stack's
Spark Connect server), the publication's Assets start the example downstream DAG, which reads the
new latest.json; the stack is looked at in headless Chromium (Airflow's runs, MLflow's experiment
and champion), and stops with nothing left."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from datetime import date
from pathlib import Path

import pytest

from jobs.infra.config import load_config
from jobs.tools.processes import free_port, group_members

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAY = date(2015, 9, 18)
DOWNSTREAM = "example_reload_on_publish"


def _wait_for_run(api, run_id: str, seconds: float, dag_id: str = "nightly_recs") -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(10)
    raise AssertionError(f"run {run_id} did not finish in {seconds}s")


def _unpause_when_listed(api, dag_id: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            api("PATCH", f"dags/{dag_id}", {"is_paused": False})
            return
        except urllib.error.HTTPError:  # not parsed yet
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def _first_run(api, dag_id: str, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = api("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]
        if runs:
            return runs
        time.sleep(5)
    raise AssertionError(f"{dag_id} did not start in {seconds}s")


def test_up_runs_a_triggered_date_and_down_leaves_nothing(tmp_path, write_overlay, monkeypatch):
    from jobs.tools import browse, stack

    for key in ("AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(stack, "AIRFLOW_PORT", free_port())
    monkeypatch.setattr(stack, "MLFLOW_PORT", free_port())
    monkeypatch.setattr(stack, "CONNECT_PORT", free_port())
    monkeypatch.setattr(stack, "STATE", tmp_path / "stack")
    monkeypatch.setattr(stack, "PIDS", tmp_path / "stack" / "pids.json")
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = write_overlay(endpoint, "stack", "schedule:\n  end_date: 2015-09-18\n")

    pids = stack.up(config, scale=0.003, seed=42, last_day=DAY, days=1)
    try:
        assert set(pids) == {
            "s3",
            "spark-connect",
            "mlflow",
            "api-server",
            "scheduler",
            "dag-processor",
            "triggerer",
        }
        services = stack.status()
        assert sorted(services) == sorted(pids)
        assert all(s["processes"] >= 1 and s["rss_mb"] > 0 for s in services.values()), services
        health = stack.airflow_health()
        assert health["scheduler"]["status"] == "healthy", health
        # The end date keeps the scheduler from starting runs of its own once unpaused.
        stack.api("PATCH", "dags/nightly_recs", {"is_paused": False})
        _unpause_when_listed(stack.api, DOWNSTREAM)  # scheduled on the published Assets
        run = stack.api(
            "POST",
            "dags/nightly_recs/dagRuns",
            {"logical_date": f"{DAY}T00:00:00Z", "conf": {"config": str(config)}},
        )
        done = _wait_for_run(stack.api, run["dag_run_id"], seconds=1200)
        states = {
            t["task_id"]: t["state"]
            for t in stack.api(
                "GET", f"dags/nightly_recs/dagRuns/{run['dag_run_id']}/taskInstances"
            )["task_instances"]
        }
        assert done["state"] == "success", states
        # The Spark stages ran as clients of the stack's Spark Connect server, not spark-submit.
        ingest = stack.api("GET", "dags/nightly_recs/tasks/ingest")
        assert ingest["operator_name"] == "BashOperator", ingest
        runs = stack.api("GET", "dags/nightly_recs/dagRuns")["dag_runs"]
        assert [r["logical_date"][:10] for r in runs] == [str(DAY)]
        # The per-run summary is the summarize task's XCom, visible in the UI.
        xcom = stack.api(
            "GET",
            f"dags/nightly_recs/dagRuns/{run['dag_run_id']}/taskInstances/summarize/xcomEntries/return_value",
        )
        summary = json.loads(xcom["value"]) if isinstance(xcom["value"], str) else xcom["value"]
        assert summary["gate"] == "promoted" and summary["users_exported"] > 0

        # The publication moved latest.json: its Assets' events started the downstream DAG
        # through the scheduler, and it read the release the export had just written.
        [downstream] = _first_run(stack.api, DOWNSTREAM, seconds=300)
        assert downstream["run_type"] == "asset_triggered", downstream
        finished = _wait_for_run(stack.api, downstream["dag_run_id"], 300, DOWNSTREAM)
        assert finished["state"] == "success", finished
        read = stack.api(
            "GET",
            f"dags/{DOWNSTREAM}/dagRuns/{downstream['dag_run_id']}/taskInstances/read_release/xcomEntries/return_value",
        )
        release = json.loads(read["value"]) if isinstance(read["value"], str) else read["value"]
        assert release["logical_date"] == str(DAY), release

        # Seen in a browser: headless Chromium signs in and checks the Airflow and MLflow pages.
        shots = browse.capture(
            f"http://127.0.0.1:{stack.AIRFLOW_PORT}",
            f"http://127.0.0.1:{stack.MLFLOW_PORT}",
            tmp_path / "screenshots",
            (stack.USER, stack.PASSWORD),
            load_config(config).mlflow.experiment,
            load_config(config).mlflow.model_name,
        )
        assert sorted(shots) == [
            "airflow-dags",
            "airflow-runs",
            "mlflow-experiment",
            "mlflow-model",
        ]
        for path in shots.values():
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stack.down()

    assert not (tmp_path / "stack" / "pids.json").exists()
    assert not any(group_members(pid) for pid in pids.values())
    for port in (stack.AIRFLOW_PORT, stack.MLFLOW_PORT, stack.CONNECT_PORT):  # nothing listens
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    assert Path(tmp_path / "lake" / "_runs" / f"dt={DAY}" / "export.json").is_file()
