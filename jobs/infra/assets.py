"""The published datasets as Airflow Assets: what a downstream DAG schedules on.

One Asset per dataset the export publishes (recommendations, similar items), named
``nightly_recs.<dataset>``, its URI the dataset's latest.json. The nightly DAG's `announce` task
emits an event for both once the export moved latest.json (`announce_release`); a backfill of an
older date publishes under its dt= without moving it, and `announce` is skipped: no event, so a
consumer is only woken when what latest.json names changed. Each event's extra names the release
pointer and the run folders, so a consumer knows what to read:

    @dag(schedule=published_assets(cfg.storage))   # dags/example_reload_on_publish.py
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import Asset

from jobs.infra.config import StorageConfig
from jobs.infra.storage import LATEST, dataset_prefix

log = logging.getLogger("recs.assets")

# jobs/export.py RECS_DATASET and SIMILAR_DATASET (importing the stage here would load numpy and
# pandas whenever a DAG file is parsed); tests/dags check the two agree.
DATASETS = ("recommendations", "similar_items")
NAME_PREFIX = "nightly_recs."


def published_assets(storage: StorageConfig) -> list[Asset]:
    """The Asset of each published dataset: its latest.json in the configured bucket."""
    return [
        Asset(
            name=f"{NAME_PREFIX}{dataset}",
            uri=f"s3://{storage.bucket}/{dataset_prefix(storage, dataset)}/{LATEST}",
            group="recommendations",
        )
        for dataset in DATASETS
    ]


def announce_release(ti, outlets, outlet_events) -> None:
    """The `announce` task: an event for every published dataset's Asset when the export moved
    latest.json; skipped (no event) when it did not."""
    from airflow.sdk.exceptions import AirflowSkipException

    published = ti.xcom_pull(task_ids="export")
    if not published["latest_moved"]:
        raise AirflowSkipException(
            f"the export of {published['logical_date']} is published but latest.json names a "
            "newer date: no Asset event"
        )
    for asset in outlets:
        dataset = asset.name.removeprefix(NAME_PREFIX)
        outlet_events[asset].extra = {
            "logical_date": published["logical_date"],
            "run_id": published["run_id"],
            "release": published["release"],
            "prefix": published["datasets"][dataset],
        }


def read_release(triggering_asset_events, config: str) -> dict[str, Any]:
    """For a DAG scheduled on the Assets: read the release latest.json the newest event names,
    with S3 through the config's Airflow connection, and log the runs it names."""
    from jobs.infra.config import load_config
    from jobs.infra.storage import s3_client

    storage = load_config(config).storage
    events = [event for asset_events in triggering_asset_events.values() for event in asset_events]
    newest = max(events, key=lambda event: event.timestamp)
    bucket, _, key = newest.extra["release"].removeprefix("s3://").partition("/")
    client = s3_client(storage, aws_conn_id=storage.aws_conn_id)
    release = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    for dataset, run in sorted(release["datasets"].items()):
        log.info(
            "release %s (run %s): %s at %s",
            release["logical_date"],
            release["run_id"],
            dataset,
            run["prefix"],
        )
    return {"logical_date": release["logical_date"], "run_id": release["run_id"]}
