"""A Spark standalone cluster (master + one worker on 127.0.0.1) per module, the jobs zip, a
Spark Connect server per module, and config overlays for runs of the stages."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """One master and one worker (1 core, 1 GB for executors); stopped even when a test fails."""
    from jobs.tools.cluster import start

    cluster = start(tmp_path_factory.mktemp("spark-cluster"), cores=1, memory="1g")
    try:
        yield cluster
    finally:
        cluster.stop()  # raises ClusterError if a master, worker or executor survives


@pytest.fixture(scope="module")
def jobs_zip(tmp_path_factory):
    """The jobs package zipped for --py-files."""
    from jobs.tools.cluster import package_jobs

    return package_jobs(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def spark_connect(tmp_path_factory):
    """A Spark Connect server of the test config (local[1], 1 GB) on a free port, token-guarded;
    stopped even when a test fails."""
    from jobs.infra.config import load_config
    from jobs.tools.processes import free_port
    from jobs.tools.spark_connect import start

    spark = load_config(PROJECT / "configs" / "test.yaml", environ={}).spark
    server = start(spark, f"sc://localhost:{free_port()}", tmp_path_factory.mktemp("spark-connect"))
    try:
        yield server
    finally:
        server.stop()  # raises ConnectServerError if the server's JVM survives


@pytest.fixture()
def run_overlay(tmp_path):
    """run_overlay(run): the path of a config overlay for one run of the stages: the shared
    raw and landing folders in tmp_path, the run's own lake, reports and MLflow store."""

    def write(run: str) -> Path:
        root = tmp_path / run
        path = tmp_path / f"{run}.yaml"
        path.write_text(f"""
extends: {PROJECT / "configs" / "test.yaml"}
paths:
  lake: {root / "lake"}
  raw: {tmp_path / "raw"}
  landing: {tmp_path / "landing"}
  reports: {root / "reports"}
mlflow:
  tracking_uri: sqlite:///{root / "mlflow.db"}
  artifact_root: {root / "artifacts"}
""")
        return path

    return write
