"""
# example_reload_on_publish

A downstream DAG scheduled on the published recommendations: it runs once for every nightly
publication that moved `latest.json` (nightly_recs' `announce` emits the Assets' events), reads
the new release `latest.json` from S3 and logs the runs it names. Replace its one task with what a
consumer does then: warm a cache, reload a serving index.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, dag

from jobs.infra.assets import published_assets, read_release
from jobs.infra.config import load_config

PROJECT = Path(__file__).resolve().parents[1]
# The nightly DAG's config (dags/nightly_recs.py): the same bucket, so the same Assets.
CONFIG = Path(os.environ.get("RECS_CONFIG") or PROJECT / "configs" / "local.yaml")


@dag(
    dag_id="example_reload_on_publish",
    # Both datasets: the export publishes them together, and one release names both.
    schedule=published_assets(load_config(CONFIG).storage),
    catchup=False,
    max_active_runs=1,
    tags=["recommendations", "example"],
    default_args={"retries": 2, "retry_exponential_backoff": True},
    params={"config": Param(str(CONFIG), type="string")},
    doc_md=__doc__,
)
def example_reload_on_publish():
    PythonOperator(
        task_id="read_release",
        python_callable=read_release,
        op_kwargs={"config": "{{ params.config }}"},
    )


example_reload_on_publish()
