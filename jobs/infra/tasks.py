"""Airflow task callables for the stages that run in the task process rather than a subprocess.

The export runs here because only the task process can read any Airflow connection (a
subprocess sees AIRFLOW_CONN_* variables only, not the UI's connections or a secrets backend's).
Each stage is imported when its task runs, so a DAG file importing this module stays light.
"""

from __future__ import annotations

from datetime import date


def export(config: str, ds: str, run_id: str, ti) -> dict:
    """jobs/export.py for the logical date `ds`, one run folder per try, publishing through the
    config's Airflow connection. Returns the XCom `announce` reads: ids and URIs, no data."""
    from jobs import export as stage
    from jobs.infra.assets import DATASETS
    from jobs.infra.config import load_config
    from jobs.infra.storage import release_key, s3_client

    cfg = load_config(config)
    attempt = f"{run_id.replace(':', '').replace('+', '')}-{ti.try_number}"
    client = s3_client(cfg.storage, aws_conn_id=cfg.storage.aws_conn_id)
    report = stage.run(cfg, date.fromisoformat(ds), run_id=attempt, client=client)
    return {
        "logical_date": ds,
        "run_id": attempt,
        "latest_moved": report["latest_moved"],
        "release": f"s3://{cfg.storage.bucket}/{release_key(cfg.storage)}",
        "datasets": {dataset: report[dataset]["uri"] for dataset in DATASETS},
    }
