"""The Spark stages rerun identically, and give the same results on a real standalone cluster
as on local[1].

A tiny generated shop is landed once; then ingest (history day and the day), clean, validate and
split run through spark-submit, each stage its own process as the DAG runs them, against a
master + worker on 127.0.0.1 (the code shipped to the executors as jobs.zip with --py-files,
driver in client mode). The day's stages then rerun on local[1], changing only --master: every
partition they wrote for the date must hold the same rows in the same order
(`partition_digest`), the same lineage, and the stage reports must say the same. Then train
fits with the spark_mllib engine on the cluster, and evaluate scores that model above
popularity.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from jobs.infra.paths import LINEAGE_FILE, partition_digest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DAY = date(2015, 9, 18)
HISTORY = DAY - timedelta(days=1)
STAGES = [("ingest", HISTORY), ("ingest", DAY), ("clean", DAY), ("validate", DAY), ("split", DAY)]
TABLES = [
    ("silver", "events", DAY),
    ("splits", "train", DAY),
    ("splits", "test", DAY),
    ("quarantine", "rows", HISTORY),
    ("quarantine", "rows", DAY),
]
# Report keys that measure time, not results.
TIMING_KEYS = ("seconds", "duration", "elapsed")
# Validation results carry GE's run ids and times; what must not change is checked apart.
SAME_REPORTS = ("ingest", "clean", "split")


def _snapshot(lake: Path) -> dict[str, object]:
    """The date's partitions (rows in order, file names and parquet-mr's per-JVM order of
    encodings aside), their lineage, and the stage reports."""
    state: dict[str, object] = {}
    for partition in sorted(lake.glob(f"*/*/dt={DAY}")):
        key = str(partition.relative_to(lake))
        state[key] = partition_digest(partition)
        lineage = partition / LINEAGE_FILE
        if lineage.is_file():
            state[f"{key}/{LINEAGE_FILE}"] = lineage.read_text()
    for stage in SAME_REPORTS:
        state[f"_runs/{stage}.json"] = (lake / f"_runs/dt={DAY}/{stage}.json").read_text()
    validation = json.loads((lake / f"_runs/dt={DAY}/validate.json").read_text())
    state["validate"] = (
        validation["success"],
        {name: suite["failed_expectations"] for name, suite in validation["suites"].items()},
    )
    return state


def _spark_submit(master: str, application: Path, args: list[str], py_files: Path):
    """spark-submit as the DAG's SparkSubmitOperator runs it; fails the test with the log tail."""
    from jobs.tools.cluster import daemon_env

    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        *("--master", master, "--deploy-mode", "client"),
        *("--driver-memory", "1g", "--executor-memory", "1g", "--total-executor-cores", "1"),
        *("--conf", "spark.ui.enabled=false"),
        *("--py-files", str(py_files)),
        str(application),
        *args,
    ]
    done = subprocess.run(
        command, env=daemon_env(), cwd=PROJECT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def _run_stages(master: str, config: Path, py_files: Path, stages=STAGES) -> None:
    for stage, run_date in stages:
        _spark_submit(
            master,
            PROJECT / "jobs" / f"{stage}.py",
            ["--run-date", run_date.isoformat(), "--config", str(config)],
            py_files,
        )


def _rows(lake: Path, layer: str, table: str, run_date: date) -> pd.DataFrame:
    frame = pd.read_parquet(lake / layer / table / f"dt={run_date.isoformat()}")
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _report(root: Path, stage: str, run_date: date) -> dict:
    """A stage report with this run's folder replaced by <run> and timings dropped."""
    text = (root / "lake" / "_runs" / f"dt={run_date.isoformat()}" / f"{stage}.json").read_text()
    return _without_timings(json.loads(text.replace(str(root), "<run>")))


def _without_timings(value):
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if not any(word in k for word in TIMING_KEYS)
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_executors_import_the_jobs_package_from_the_shipped_zip(spark_cluster, jobs_zip, tmp_path):
    # The venv has the project installed in editable mode, so `import jobs` would work on an
    # executor of this machine anyway: only a path inside jobs.zip shows --py-files shipped it.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import jobs\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "rdd = spark.sparkContext.parallelize([0], 1)\n"
        "where = rdd.map(lambda _: __import__('jobs').__file__).collect()[0]\n"
        "print('executor:', where)\n"
        "print('driver:', jobs.__file__)\n"
        "spark.stop()\n"
    )

    done = _spark_submit(spark_cluster.master_url, probe, [], jobs_zip)

    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert "jobs.zip" in lines["executor"] and str(PROJECT) not in lines["executor"], lines
    assert "jobs.zip" in lines["driver"], lines


def test_the_spark_stages_rerun_identically_and_give_the_same_results_on_the_cluster(
    spark_cluster, jobs_zip, tmp_path, run_overlay
):
    from jobs.shop import generate
    from jobs.shop.land import land

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    land(tmp_path / "raw", tmp_path / "landing" / "retailrocket", DAY)
    config = run_overlay("cluster")
    cluster = tmp_path / "cluster"

    _run_stages(spark_cluster.master_url, config, jobs_zip)
    first = _snapshot(cluster / "lake")
    # Re-running the date on local[1] rewrites what the cluster wrote identically: the same rows
    # in the same order, lineage and reports. One rerun checks both promises.
    _run_stages("local[1]", config, jobs_zip, STAGES[1:])
    second = _snapshot(cluster / "lake")
    written = [k for k in first if k.count("/") == 2 and not k.startswith("_runs")]
    assert {"bronze/events/dt=2015-09-18", "silver/events/dt=2015-09-18"} <= set(written)
    assert {"splits/train/dt=2015-09-18", "splits/catalog/dt=2015-09-18"} <= set(written)
    assert first.keys() == second.keys()
    changed = sorted(k for k in first if first[k] != second[k])
    assert not changed, changed

    for layer, table, run_date in TABLES:
        if (layer, table, run_date) != ("quarantine", "rows", DAY):  # a clean day may have none
            assert len(_rows(cluster / "lake", layer, table, run_date)) > 0, (layer, table)
    validation = _report(cluster, "validate", DAY)
    assert validation["success"] and validation["rows_validated"]["silver_events"] > 0

    # Training beyond one machine: train and evaluate as the DAG runs them (Python tasks), with
    # the spark_mllib engine fitting on the cluster's executors.
    overlay = tmp_path / "mllib.yaml"
    overlay.write_text(f"""
extends: {tmp_path / "cluster.yaml"}
train:
  engine: spark_mllib
  mllib_blocks: 2
spark:
  master: {spark_cluster.master_url}
  conf:
    spark.executor.memory: 1g
    spark.cores.max: "1"
""")
    for stage in ("train", "evaluate"):
        command = [sys.executable, "-m", f"jobs.{stage}", "--run-date", str(DAY)]
        done = subprocess.run(
            [*command, "--config", str(overlay)],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{stage}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    trained = _report(cluster, "train", DAY)
    assert trained["engine"] == "spark_mllib" and trained["tuning"] == []
    evaluated = _report(cluster, "evaluate", DAY)
    assert evaluated["challenger"]["ndcg_at_10"] > evaluated["popularity"]["ndcg_at_10"]
