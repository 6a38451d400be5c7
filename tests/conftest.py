"""Session-wide fixtures: one local Spark session for every Spark test, and the test config."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from jobs.tools.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# implicit and numpy: one BLAS thread per process, or the cores are oversubscribed.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# Markers follow from the fixtures a test uses, so the tiers cannot drift from what runs.
_FIXTURE_MARKERS = {
    "spark": "spark",
    "s3_endpoint": "service",
    "bucket": "service",
    "dagbag": "airflow",
}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & _FIXTURE_MARKERS.keys():
            item.add_marker(_FIXTURE_MARKERS[fixture])


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        # The driver's ports take no authentication: loopback only (jobs/infra/spark.py).
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path):
    """The test config with every path inside tmp_path."""
    from jobs.infra.config import load_config

    env = {
        "RECS__PATHS__LAKE": str(tmp_path / "lake"),
        "RECS__PATHS__RAW": str(tmp_path / "raw"),
        "RECS__PATHS__LANDING": str(tmp_path / "landing"),
        "RECS__PATHS__REPORTS": str(tmp_path / "reports"),
        "RECS__MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "RECS__MLFLOW__ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    return load_config(PROJECT_ROOT / "configs" / "test.yaml", environ=env)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint (moto's server) on 127.0.0.1 for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def bucket(s3_endpoint, request):
    """A fresh bucket on the session endpoint; returns (client, StorageConfig)."""
    from jobs.infra.config import StorageConfig
    from jobs.infra.storage import s3_client

    # A valid S3 name (StorageConfig checks): cut at 50 characters, never ending in a hyphen.
    name = ("t-" + request.node.name.lower().replace("_", "-")[:50]).rstrip("-")
    storage = StorageConfig(endpoint_url=s3_endpoint, bucket=name, prefix="nightly")
    client = s3_client(storage)
    client.create_bucket(Bucket=name)
    return client, storage


@pytest.fixture()
def write_overlay(tmp_path):
    """A function writing a config overlay with every path in tmp_path and the given bucket."""
    project = PROJECT_ROOT

    def write(endpoint: str, bucket: str, extra: str = "", prefix: str = "nightly") -> Path:
        path = tmp_path / f"e2e{len(list(tmp_path.glob('e2e*.yaml')))}.yaml"
        path.write_text(f"""
extends: {project / "configs" / "test.yaml"}
paths:
  lake: {tmp_path / "lake"}
  raw: {tmp_path / "raw"}
  landing: {tmp_path / "landing"}
  reports: {tmp_path / "reports"}
mlflow:
  tracking_uri: sqlite:///{tmp_path / "mlflow.db"}
  artifact_root: {tmp_path / "artifacts"}
storage:
  endpoint_url: {endpoint}
  bucket: {bucket}
  prefix: {prefix}
{extra}""")
        return path

    return write


@pytest.fixture()
def webhook():
    """(url, received): a local HTTP endpoint that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
