"""
# nightly_recs

Every night, for the logical date `ds`:

    ingest -> clean -> validate -> split -> train -> evaluate -> gate -> export -> summarize
      -> monitor;  export -> announce

| task | what it does | runs as |
|---|---|---|
| ingest | files landed for `ds` -> bronze events, quarantine, item facts, catalog | spark* |
| clean | history up to `ds` without crawlers and test traffic -> silver events | spark* |
| validate | Great Expectations: bronze, silver, catalog; Data Docs; stops bad data | spark* |
| split | chronological train / test, the catalog as of the cutoff | spark* |
| train | tuned implicit ALS (trials as nested runs), registered as `challenger` | python |
| evaluate | challenger vs baselines, champion, oracle; re-ranking trade-offs; bias audit | python |
| gate | champion: the challenger, or the best baseline if better (night one: always) | python |
| export | top-N per visitor, similar items per item -> S3 (manifest, then latest.json) | task |
| announce | an Asset event per published dataset when latest.json moved (else skipped) | task |
| summarize | one-screen summary of the run (also the task's XCom) | python |
| monitor | tonight vs the trailing nights; **fails** (the alert) when a fact drifts | python |

spark*: spark-submit; with `spark.remote` set in the config `RECS_CONFIG` names, python attached
to that Spark Connect server, which the night's Spark stages share (`make up` starts one).

A skipped `gate` means the champion stays: the export republishes it. Whenever the challenger
is not promoted, its lists for a sample of visitors go under `shadow/` (never latest.json).
A failed `monitor` (no retries) is a night-over-night alert: the lists are published, and the
task log and the monitor report (MLflow: monitor/) say which fact moved.
A failed task (after its retries) records an alert through a Notifier: the task log,
`<paths.reports>/alerts.jsonl` and, when the HTTP connection `recs_alerts` exists, a JSON POST to
its webhook (jobs/infra/alerts.py).
The export runs in the task process: S3 credentials come from the Airflow connection the config
names (`storage.aws_conn_id`). DAGs scheduled on the Assets (jobs/infra/assets.py) run after each
publication that moved latest.json; dags/example_reload_on_publish.py is one.
Every task writes only the partitions of its logical date, so a rerun rewrites them. A late file:
put it in the day's landing folder and clear `ingest` for that date (docs/ingestion.md).
The config named by `RECS_CONFIG` (default configs/local.yaml) sets the schedule (its
`schedule:` section, read when the file is parsed) and is every run's default `config` param.
Trigger with conf `{"config": "/path/to/overlay.yaml"}` to run one date with another config.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, chain, dag

from jobs.infra.alerts import AlertNotifier
from jobs.infra.assets import announce_release, published_assets
from jobs.infra.config import load_config
from jobs.infra.tasks import export as export_in_task

PROJECT = Path(__file__).resolve().parents[1]
# One variable names the config in every deployment, so the YAML `schedule:` section is the
# schedule everywhere. Loading it takes tens of milliseconds and imports no Spark or pandas.
CONFIG = Path(os.environ.get("RECS_CONFIG") or PROJECT / "configs" / "local.yaml")
SETTINGS = load_config(CONFIG)
SCHEDULE = SETTINGS.schedule
# On a cluster, the jobs package zipped for the executors (`python -m jobs.tools.cluster package`).
PY_FILES = os.environ.get("RECS_SPARK_PY_FILES") or None
STAGE_ARGS = ["--run-date", "{{ ds }}", "--config", "{{ params.config }}"]
GATED_EXIT_CODE = 99  # jobs/gate.py exits with it when the challenger is not promoted


def _spark_stage(name: str) -> SparkSubmitOperator | BashOperator:
    if SETTINGS.spark.remote is not None:
        # The Spark Connect server holds the driver: the stage is a small Python client of it.
        return _python_stage(name)
    return SparkSubmitOperator(
        task_id=name,
        application=str(PROJECT / "jobs" / f"{name}.py"),
        application_args=STAGE_ARGS,
        conn_id="spark_default",
        py_files=PY_FILES,
        name=f"nightly-recs-{name}",
    )


def _python_stage(name: str, extra_args: str = "", **kwargs) -> BashOperator:
    return BashOperator(
        task_id=name,
        bash_command=f"python -m jobs.{name} {' '.join(STAGE_ARGS)} {extra_args}".strip(),
        cwd=str(PROJECT),
        **kwargs,
    )


@dag(
    dag_id="nightly_recs",
    schedule=SCHEDULE.cron,
    start_date=SCHEDULE.start(),
    end_date=SCHEDULE.end(),
    catchup=SCHEDULE.catchup,
    max_active_runs=1,
    tags=["recommendations", "nightly"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": AlertNotifier(),
    },
    params={"config": Param(str(CONFIG), type="string")},
    doc_md=__doc__,
)
def nightly_recs():
    ingest, clean, validate, split = (
        _spark_stage(n) for n in ("ingest", "clean", "validate", "split")
    )
    train, evaluate = _python_stage("train"), _python_stage("evaluate")
    gate = _python_stage("gate", skip_on_exit_code=GATED_EXIT_CODE)
    # In the task process, not a subprocess, so S3 comes through any Airflow connection.
    export = PythonOperator(
        task_id="export",
        python_callable=export_in_task,
        op_kwargs={"config": "{{ params.config }}"},
        trigger_rule="none_failed",
    )
    announce = PythonOperator(
        task_id="announce",
        python_callable=announce_release,
        outlets=published_assets(SETTINGS.storage),
    )
    summarize = _python_stage("summarize", trigger_rule="none_failed", do_xcom_push=True)
    # A drift fails the same way on every try; the alert should not wait for retries.
    monitor = _python_stage("monitor", trigger_rule="none_failed", retries=0)
    chain(ingest, clean, validate, split, train, evaluate, gate, export, summarize, monitor)
    export >> announce


nightly_recs()
