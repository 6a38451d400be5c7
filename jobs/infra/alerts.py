"""Alerts for failed tasks: always a log line and a JSON line in the reports folder; a webhook
POST too when the Airflow connection `recs_alerts` exists.

The DAG sets `on_failure_callback=on_failure`. A webhook is configured as a connection, e.g.

    AIRFLOW_CONN_RECS_ALERTS='{"conn_type": "http", "host": "https://hooks.example.com/T0/B0/x"}'

(or in the UI: Admin -> Connections). The payload is the alert as JSON. Alerting never raises:
a broken webhook must not hide the failure it reports, so its own errors are logged instead.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger("recs.alerts")

ALERT_CONN_ID = "recs_alerts"
WEBHOOK_TIMEOUT_SECONDS = 10


def alert_from_context(context: dict[str, Any]) -> dict[str, Any]:
    """The facts an on-call engineer needs, from an Airflow callback context."""
    ti = context.get("ti") or context.get("task_instance")
    logical_date = context.get("logical_date")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "logical_date": logical_date.isoformat() if logical_date else None,
        "try_number": getattr(ti, "try_number", None),
        "error": repr(context.get("exception")) if context.get("exception") else None,
        "log_url": getattr(ti, "log_url", None),
    }


def webhook_url(conn_id: str = ALERT_CONN_ID) -> str | None:
    """The webhook URL of connection `conn_id`, or None when no such connection exists."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as err:  # Airflow raises its own not-found type, which moved across versions
        if "isn't defined" in str(err) or "not found" in str(err).lower():
            return None
        raise
    host = conn.host or ""
    if host.startswith(("http://", "https://")):
        return host
    scheme = conn.schema if conn.schema in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}"


def post_json(url: str, payload: dict[str, Any]) -> int:
    """POST `payload` as JSON; returns the HTTP status."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
        return response.status


def record(alert: dict[str, Any], reports: Path | None) -> None:
    """Log the alert and append it to <reports>/alerts.jsonl."""
    log.error("ALERT %s", json.dumps(alert, sort_keys=True))
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        with (reports / "alerts.jsonl").open("a") as out:
            out.write(json.dumps(alert, sort_keys=True) + "\n")


def on_failure(context: dict[str, Any]) -> None:
    """Airflow on_failure_callback: record the alert, then notify the webhook if configured.
    When the failed task's stage report lists `alerts` (the monitor's findings), they go in."""
    alert = alert_from_context(context)
    cfg = None
    try:
        cfg = _config(context)
        reports = None if cfg is None else cfg.paths.reports
    except Exception:
        log.exception("could not read the run's config; the alert goes to the log only")
        reports = None
    try:
        findings = None if cfg is None else _findings(cfg, alert)
        if findings:
            alert["findings"] = findings
    except Exception:
        log.exception("could not read the failed task's findings; the alert goes without them")
    try:
        record(alert, reports)
    except Exception:
        log.exception("could not record the alert %s", alert)
    try:
        url = webhook_url()
        if url:
            status = post_json(url, alert)
            log.info("alert sent to the %s webhook: HTTP %s", ALERT_CONN_ID, status)
    except Exception:
        log.exception("could not send the alert to the %s webhook", ALERT_CONN_ID)


def _config(context: dict[str, Any]):
    """The run's config (the DAG's `config` param), or None when the run names none."""
    from jobs.infra.config import load_config

    config = (context.get("params") or {}).get("config")
    return load_config(Path(config)) if config else None


def _findings(cfg, alert: dict[str, Any]) -> list[str] | None:
    """The `alerts` of the failed task's stage report for the logical date, if it has any."""
    from datetime import datetime

    from jobs.infra.paths import Lake

    if not alert["task_id"] or not alert["logical_date"]:
        return None
    day = datetime.fromisoformat(alert["logical_date"]).date()
    path = Lake(cfg.paths.lake).stage_report(day, alert["task_id"])
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("alerts") or None
