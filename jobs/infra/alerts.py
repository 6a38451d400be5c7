"""Alerts for failed tasks: an Airflow Notifier that always logs the alert and appends it to
<paths.reports>/alerts.jsonl, and POSTs it as JSON through the HTTP connection `recs_alerts`
(the http provider's HttpHook) when that connection exists.

The nightly DAG sets it on every task (`default_args["on_failure_callback"]`); any other DAG or
task can take it the same way:

    from jobs.infra.alerts import AlertNotifier
    @task(on_failure_callback=AlertNotifier())  # or AlertNotifier(http_conn_id="oncall")

A webhook is configured as a connection, e.g.

    AIRFLOW_CONN_RECS_ALERTS='{"conn_type": "http", "host": "https://hooks.example.com/T0/B0/x"}'

(or in the UI: Admin -> Connections; `endpoint` is joined to its URL). The payload is the alert as
JSON. Alerting never raises: a broken webhook must not hide the failure it reports, so its own
errors are logged instead. The run's config (the `config` param) says where reports go.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

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


def record(alert: dict[str, Any], reports: Path | None) -> None:
    """Log the alert and append it to <reports>/alerts.jsonl."""
    log.error("ALERT %s", json.dumps(alert, sort_keys=True))
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        with (reports / "alerts.jsonl").open("a") as out:
            out.write(json.dumps(alert, sort_keys=True) + "\n")


class AlertNotifier(BaseNotifier):
    """Record a failed task's alert (log, alerts.jsonl) and POST it to `http_conn_id`, if defined.

    When the failed task's stage report lists `alerts` (the monitor's findings), they go in.
    """

    template_fields = ("http_conn_id", "endpoint")

    def __init__(self, *, http_conn_id: str = ALERT_CONN_ID, endpoint: str | None = None):
        super().__init__()
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint

    def notify(self, context: dict[str, Any]) -> None:
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
            self._post(alert)
        except Exception:
            log.exception("could not send the alert to the %s webhook", self.http_conn_id)

    def _post(self, alert: dict[str, Any]) -> None:
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        hook = HttpHook(method="POST", http_conn_id=self.http_conn_id)
        try:
            hook.get_connection(self.http_conn_id)
        except AirflowNotFoundException:
            return  # no webhook configured: the log and alerts.jsonl are the alert
        response = hook.run(
            endpoint=self.endpoint,
            json=alert,
            extra_options={"timeout": WEBHOOK_TIMEOUT_SECONDS},
        )
        log.info("alert sent to the %s webhook: HTTP %s", self.http_conn_id, response.status_code)


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
