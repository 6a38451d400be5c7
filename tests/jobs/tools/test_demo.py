"""jobs/tools/demo.py: the task-by-task progress read from Airflow's database and the reports."""

import sqlite3

from jobs.tools.demo import DAG_ID, stage_fact, task_changes


def _db(path, rows):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE dag_run (id INTEGER, dag_id TEXT, run_id TEXT)")
        conn.execute(
            "CREATE TABLE task_instance (task_id TEXT, dag_id TEXT, run_id TEXT, state TEXT, "
            "duration REAL, start_date TEXT)"
        )
        conn.executemany(
            "INSERT INTO dag_run VALUES (?, ?, ?)", [(1, DAG_ID, "old"), (2, DAG_ID, "new")]
        )
        conn.executemany("INSERT INTO task_instance VALUES (?, ?, ?, ?, ?, ?)", rows)


def test_task_changes_reports_each_new_state_of_the_newest_run_once(tmp_path):
    db = tmp_path / "airflow.db"
    assert task_changes(db, DAG_ID, {}) == []  # before Airflow made its database
    _db(
        db,
        [
            ("ingest", DAG_ID, "old", "success", 9.0, "2015-09-17"),
            ("ingest", DAG_ID, "new", "success", 41.2, "2026-12-07 05:00"),
            ("clean", DAG_ID, "new", "running", None, "2026-12-07 05:01"),
            ("split", DAG_ID, "new", "scheduled", None, None),
            ("train", DAG_ID, "new", None, None, None),
        ],
    )
    seen: dict[str, str] = {}
    assert task_changes(db, DAG_ID, seen) == [
        ("ingest", "success", 41.2),
        ("clean", "running", 0.0),
    ]
    assert task_changes(db, DAG_ID, seen) == []
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE task_instance SET state = 'failed', duration = 3 WHERE task_id = 'clean'"
        )
    assert task_changes(db, DAG_ID, seen) == [("clean", "failed", 3.0)]


def test_stage_fact_names_each_stages_headline_figure():
    assert stage_fact({"accepted": 12345}, "ingest") == "12,345 rows accepted"
    assert (
        stage_fact({"recommendations": {"users": 900}}, "export") == "900 visitors' lists published"
    )
    assert stage_fact({"rows_out": None}, "clean") is None
    assert stage_fact({"anything": 1}, "gate") is None
