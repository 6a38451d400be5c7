"""The one Spark session factory.

Under spark-submit the master and resources come from the submit command (the Airflow
connection), so the same job runs on local[*] or a cluster unchanged; run directly with python,
the config's `spark.master` applies.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from jobs.infra.config import Config

log = logging.getLogger("spark")

# Logged once the session is up; jobs.tools.bench sums it over a night's Spark stages.
READY_MESSAGE = "spark session ready: %.1f s to start, %.1f s after the process started"


def get_spark(app_name: str, cfg: Config):
    from pyspark.sql import SparkSession

    started = time.perf_counter()
    builder = SparkSession.builder.appName(app_name)
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    if not _launched_by_spark_submit():
        builder = builder.master(cfg.spark.master)
    session = builder.getOrCreate()
    log.info(READY_MESSAGE, time.perf_counter() - started, process_age_seconds())
    return session


def process_age_seconds() -> float:
    """Seconds since this process started (imports, JVM start and all), from /proc; NaN where
    there is no /proc."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the Python driver with the gateway port in its environment.
    return "PYSPARK_GATEWAY_PORT" in os.environ
