"""The nightly DAG: it imports, its tasks are wired in order, and (e2e) it runs for real."""

from __future__ import annotations

from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_ID = "nightly_recs"
ORDER = [
    "ingest",
    "clean",
    "validate",
    "split",
    "train",
    "evaluate",
    "gate",
    "export",
    "summarize",
    "monitor",
]


def test_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_tasks_run_in_pipeline_order(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert sorted(t.task_id for t in dag.tasks) == sorted([*ORDER, "announce"])
    for upstream, downstream in zip(ORDER, ORDER[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    # The Assets' events, beside the summary: a skipped announce holds nothing up.
    assert dag.get_task("announce").upstream_task_ids == {"export"}
    assert dag.get_task("announce").downstream_task_ids == set()


def test_each_published_dataset_is_an_asset_the_example_dag_runs_on(dagbag):
    from jobs import export
    from jobs.infra.config import load_config

    storage = load_config(DAGS.parent / "configs" / "local.yaml").storage
    outlets = dagbag.dags[DAG_ID].get_task("announce").outlets
    assert {a.name: a.uri for a in outlets} == {
        f"nightly_recs.{d}": f"s3://{storage.bucket}/{storage.prefix}/{d}/latest.json"
        for d in (export.RECS_DATASET, export.SIMILAR_DATASET)
    }
    example = dagbag.dags["example_reload_on_publish"]
    assert {a.name for a in example.timetable.asset_condition.objects} == {a.name for a in outlets}
    # Only the announce task emits them: the export itself declares none.
    assert [t.task_id for t in dagbag.dags[DAG_ID].tasks if t.outlets] == ["announce"]


def test_schedule_and_operating_defaults(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    # Every task retries, except the monitor: its failure is the night-over-night alert.
    assert all(t.retries >= 2 for t in dag.tasks if t.task_id != "monitor")
    assert dag.get_task("monitor").retries == 0
    assert dag.get_task("monitor").trigger_rule == "none_failed"
    assert all(t.retry_exponential_backoff for t in dag.tasks)
    assert all(t.on_failure_callback for t in dag.tasks)  # jobs/infra/alerts.py
    spark_tasks = {t.task_id for t in dag.tasks if t.task_type == "SparkSubmitOperator"}
    assert spark_tasks == {"ingest", "clean", "validate", "split"}
    # A gated challenger skips `gate`; the export must still republish the champion.
    assert dag.get_task("export").trigger_rule == "none_failed"
    assert dag.get_task("gate").skip_on_exit_code == [99]


def test_spark_tasks_ship_the_jobs_zip_when_one_is_configured(dagbag, monkeypatch, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    assert {t.py_files for t in dagbag.dags[DAG_ID].tasks if hasattr(t, "py_files")} == {None}
    monkeypatch.setenv("RECS_SPARK_PY_FILES", str(tmp_path / "jobs.zip"))
    dag = DagBag(dag_folder=str(DAGS)).dags[DAG_ID]  # parsed again, with the variable set
    shipped = {t.task_id: t.py_files for t in dag.tasks if hasattr(t, "py_files")}
    zipped = str(tmp_path / "jobs.zip")
    assert shipped == dict.fromkeys(["ingest", "clean", "validate", "split"], zipped)


def test_schedule_comes_from_the_config_recs_config_names(dagbag, monkeypatch, tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from airflow.dag_processing.dagbag import DagBag

    overlay = tmp_path / "nightly.yaml"
    overlay.write_text(
        f"extends: {DAGS.parent / 'configs' / 'test.yaml'}\n"
        "schedule:\n  cron: '30 2 * * 1-5'\n  timezone: Europe/Berlin\n"
        "  start_date: 2015-06-01\n  end_date: 2015-09-18\n  catchup: true\n"
    )
    monkeypatch.setenv("RECS_CONFIG", str(overlay))
    dag = DagBag(dag_folder=str(DAGS)).dags[DAG_ID]  # parsed again, with the variable set
    berlin = ZoneInfo("Europe/Berlin")
    assert dag.schedule == "30 2 * * 1-5"
    assert dag.start_date == datetime(2015, 6, 1, tzinfo=berlin)
    assert dag.end_date == datetime(2015, 9, 18, tzinfo=berlin)
    assert dag.catchup is True
    assert dag.params["config"] == str(overlay)  # runs default to the same config


def test_on_a_connect_server_the_spark_stages_are_python_clients_one_task_each(dagbag, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RECS__SPARK__REMOTE", "sc://localhost:15002")
    dag = DagBag(dag_folder=str(DAGS)).dags[DAG_ID]  # parsed again, with the variable set
    stages = ["ingest", "clean", "validate", "split"]
    assert {t.task_id for t in dag.tasks if t.task_type == "SparkSubmitOperator"} == set()
    for name in stages:
        task = dag.get_task(name)
        assert task.task_type == "BashOperator" and task.retries >= 2
        assert task.bash_command == (
            f"python -m jobs.{name} --run-date {{{{ ds }}}} --config {{{{ params.config }}}}"
        )
    for upstream, downstream in zip(ORDER, ORDER[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
