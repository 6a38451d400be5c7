"""The one Spark session factory.

Under spark-submit the master and resources come from the submit command (the Airflow
connection), so the same job runs on local[*] or a cluster unchanged; run directly with python,
the config's `spark.master` applies. With `spark.remote` set, the session is one on that Spark
Connect server instead (jobs.tools.spark_connect starts one), so a night's stages share a driver.
On a local master the driver listens on 127.0.0.1 only (`session_conf`), since its ports take
no authentication.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from jobs.infra.config import Config, SparkConfig

log = logging.getLogger("spark")

LOOPBACK = "127.0.0.1"

# Logged once the session is up; jobs.tools.bench sums it over a night's Spark stages.
READY_MESSAGE = "spark session ready: %.1f s to start, %.1f s after the process started"


def get_spark(app_name: str, cfg: Config):
    """The stage's session: on the Connect server `spark.remote` when set, else its own."""
    started = time.perf_counter()
    session = attach(cfg.spark) if cfg.spark.remote is not None else _own_session(app_name, cfg)
    log.info(READY_MESSAGE, time.perf_counter() - started, process_age_seconds())
    return session


def _own_session(app_name: str, cfg: Config):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    submitted = _launched_by_spark_submit()
    master = _submitted_master() if submitted else cfg.spark.master
    for key, value in session_conf(cfg.spark, master, os.environ.get("SPARK_LOCAL_IP")).items():
        builder = builder.config(key, value)
    if not submitted:
        builder = builder.master(cfg.spark.master)
    return builder.getOrCreate()


def attach(spark: SparkConfig):
    """A session on the Spark Connect server `spark.remote`, with the runtime SQL settings of
    `spark.conf` (time zone, shuffle partitions, ...) set on it.

    The rest of `spark.conf` (driver memory, UI, ...) is fixed when the server starts, by
    jobs.tools.spark_connect from the same config; a value the server holds differently is
    logged as a warning, since this session cannot change it. `stop()` ends the session, not
    the server.
    """
    from pyspark.sql import SparkSession

    # Not builder.config(): the Connect builder sets options after the fact and drops the
    # ones the server refuses without a word.
    session = SparkSession.builder.remote(spark.remote).getOrCreate()
    for key, value in spark.conf.items():
        if session.conf.isModifiable(key):
            session.conf.set(key, value)
        elif (held := session.conf.get(key, None)) != value:
            log.warning(
                "spark.conf %s is %s on the Connect server %s, not %s: the server's is fixed "
                "when it starts; restart it with this config to change it",
                key,
                held,
                spark.remote,
                value,
            )
    return session


def session_conf(spark: SparkConfig, master: str, local_ip: str | None) -> dict[str, str]:
    """The settings a session starts with: `spark.conf`, and where the driver listens.

    `master` is the session's master URL; `local_ip` the driver's SPARK_LOCAL_IP (None: unset).
    The driver's RPC and block manager ports take no authentication, so on a local master
    (local, local[N], local-cluster[...]) they bind to 127.0.0.1 unless `spark.bind_address`
    names another address; on a cluster master, to `spark.bind_address` if set, else where
    Spark puts them. Spark binds its web UI to SPARK_LOCAL_IP or else every interface, never to
    a setting: wherever the driver is bound, the UI is off unless SPARK_LOCAL_IP is that address.

    Raises ValueError when the UI is switched on explicitly but would listen elsewhere.
    """
    conf = dict(spark.conf)
    address = spark.bind_address or (LOOPBACK if is_local(master) else None)
    if address is None:
        return conf
    conf["spark.driver.bindAddress"] = address
    conf["spark.driver.host"] = address
    if local_ip != address:
        if conf.get("spark.ui.enabled", "false").strip().lower() == "true":
            raise ValueError(
                f"spark.conf spark.ui.enabled is true, but the UI would listen on "
                f"{local_ip or 'every interface'}: set SPARK_LOCAL_IP={address} to keep it "
                f"on {address}, or turn it off"
            )
        conf["spark.ui.enabled"] = "false"
    return conf


def is_local(master: str) -> bool:
    """True for masters that run the executors inside this machine's driver process or beside it."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


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


def _submitted_master() -> str:
    """The --master of the spark-submit that started this driver.

    spark-submit's JVM already holds it (as the system property spark.master); connecting to
    that JVM starts no context, so the bind settings can still be chosen before one exists.
    """
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", "")
