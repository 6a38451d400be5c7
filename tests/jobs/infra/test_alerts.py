import json
from datetime import UTC, datetime
from types import SimpleNamespace

from jobs.infra import alerts

TI = SimpleNamespace(
    dag_id="nightly_recs",
    task_id="validate",
    run_id="manual__2015-09-18",
    try_number=3,
    log_url="http://127.0.0.1:8080/log",
)


def _context(config=None):
    return {
        "ti": TI,
        "logical_date": datetime(2015, 9, 18, tzinfo=UTC),
        "exception": RuntimeError("2 expectations failed"),
        "params": {"config": str(config)} if config else {},
    }


def test_the_alert_names_the_task_the_date_the_try_and_the_error():
    assert alerts.alert_from_context(_context()) == {
        "dag_id": "nightly_recs",
        "task_id": "validate",
        "run_id": "manual__2015-09-18",
        "logical_date": "2015-09-18T00:00:00+00:00",
        "try_number": 3,
        "error": "RuntimeError('2 expectations failed')",
        "log_url": "http://127.0.0.1:8080/log",
    }


def test_failure_is_logged_and_written_to_the_reports_folder_without_a_webhook(
    cfg, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("AIRFLOW_CONN_RECS_ALERTS", raising=False)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"extends: {cfg.source_file}\npaths:\n  reports: {tmp_path / 'reports'}\n")
    alerts.AlertNotifier()(_context(overlay))
    assert "could not send" not in caplog.text  # no connection: nothing to send, no error
    assert "ALERT" in caplog.text and "validate" in caplog.text
    lines = (tmp_path / "reports" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == ["validate"]


def test_the_webhook_connection_gets_the_alert_as_json(webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("AIRFLOW_CONN_RECS_ALERTS", json.dumps({"conn_type": "http", "host": url}))
    alerts.AlertNotifier()(_context())
    assert [r["task_id"] for r in received] == ["validate"]
    assert received[0]["error"] == "RuntimeError('2 expectations failed')"


def test_a_broken_webhook_never_hides_the_failure(monkeypatch, caplog):
    unreachable = {"conn_type": "http", "host": "http://127.0.0.1:9/unreachable"}
    monkeypatch.setenv("AIRFLOW_CONN_RECS_ALERTS", json.dumps(unreachable))
    alerts.AlertNotifier()(_context())  # must not raise
    assert "ALERT" in caplog.text
    assert "could not send the alert" in caplog.text


def test_a_failed_monitor_sends_its_findings_with_the_alert(cfg, tmp_path, monkeypatch):
    from jobs.infra.paths import Lake

    monkeypatch.delenv("AIRFLOW_CONN_RECS_ALERTS", raising=False)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        f"extends: {cfg.source_file}\npaths:\n  reports: {tmp_path / 'reports'}\n"
        f"  lake: {tmp_path / 'lake'}\n"
    )
    findings = ["ndcg_at_10 = 0.01; max_drop limit 0.08 (trailing median 0.1): too low"]
    Lake(tmp_path / "lake").write_stage_report(
        datetime(2015, 9, 18).date(), "monitor", {"alerts": findings}
    )
    monkeypatch.setattr(TI, "task_id", "monitor")
    alerts.AlertNotifier()(_context(overlay))
    [alert] = [json.loads(line) for line in (tmp_path / "reports" / "alerts.jsonl").open()]
    assert alert["task_id"] == "monitor" and alert["findings"] == findings
