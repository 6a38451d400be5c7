"""The nightly DAG: it imports, its tasks are wired in order, and (e2e) it runs for real."""

from __future__ import annotations

DAG_ID = "nightly_recs"
ORDER = ["ingest", "clean", "validate", "split", "train", "evaluate", "gate", "export", "summarize"]


def test_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_tasks_run_in_pipeline_order(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert sorted(t.task_id for t in dag.tasks) == sorted(ORDER)
    for upstream, downstream in zip(ORDER, ORDER[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_schedule_and_operating_defaults(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert all(t.retries >= 2 for t in dag.tasks)
    assert all(t.retry_exponential_backoff for t in dag.tasks)
    assert all(t.on_failure_callback for t in dag.tasks)  # jobs/core/alerts.py
    spark_tasks = {t.task_id for t in dag.tasks if t.task_type == "SparkSubmitOperator"}
    assert spark_tasks == {"ingest", "clean", "validate", "split"}
    # A gated challenger skips `gate`; the export must still republish the champion.
    assert dag.get_task("export").trigger_rule == "none_failed"
    assert dag.get_task("gate").skip_on_exit_code == [99]
