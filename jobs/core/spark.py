"""The one Spark session factory.

Under spark-submit the master and resources come from the submit command (the Airflow
connection), so the same job runs on local[*] or a cluster unchanged; run directly with python,
the config's `spark.master` applies.
"""

from __future__ import annotations

from jobs.core.config import Config


def get_spark(app_name: str, cfg: Config):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    if not _launched_by_spark_submit():
        builder = builder.master(cfg.spark.master)
    return builder.getOrCreate()


def _launched_by_spark_submit() -> bool:
    import os

    # spark-submit starts the Python driver with the gateway port in its environment.
    return "PYSPARK_GATEWAY_PORT" in os.environ
