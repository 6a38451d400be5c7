"""A Spark standalone cluster (master + one worker on 127.0.0.1) per module, and the jobs zip."""

from __future__ import annotations

import pytest


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
