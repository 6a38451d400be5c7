"""Re-running a date rewrites that date's lake partitions with the same rows, lineage and reports.

The Spark stages of one logical date run twice on a tiny generated shop, each stage in its own
process as the DAG runs them; every partition they wrote for the date must hold the same rows in
the same order (`partition_digest`: file names and parquet-mr's per-JVM order of encodings in
the footer aside), the same lineage, and the stage reports must say the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.infra.paths import LINEAGE_FILE, partition_digest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DAY = date(2015, 9, 18)
STAGES = ("ingest", "clean", "validate", "split")
# Validation results carry GE's run ids and times; what must not change is checked apart.
REPORTS = ("ingest", "clean", "split")


def _snapshot(lake: Path) -> dict[str, object]:
    state: dict[str, object] = {}
    for partition in sorted(lake.glob(f"*/*/dt={DAY}")):
        key = str(partition.relative_to(lake))
        state[key] = partition_digest(partition)
        lineage = partition / LINEAGE_FILE
        if lineage.is_file():
            state[f"{key}/{LINEAGE_FILE}"] = lineage.read_text()
    for stage in REPORTS:
        state[f"_runs/{stage}.json"] = (lake / f"_runs/dt={DAY}/{stage}.json").read_text()
    validation = json.loads((lake / f"_runs/dt={DAY}/validate.json").read_text())
    state["validate"] = (
        validation["success"],
        {name: suite["failed_expectations"] for name, suite in validation["suites"].items()},
    )
    return state


def _stage(name: str, day: date, config: Path) -> None:
    """One stage as its own process, as the DAG runs it (and so with its own Spark session)."""
    cmd = [sys.executable, "-m", f"jobs.{name}", "--run-date", day.isoformat()]
    done = subprocess.run(
        [*cmd, "--config", str(config)], cwd=PROJECT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_rerunning_a_date_rewrites_the_same_rows_lineage_and_reports(
    tmp_path, write_overlay, s3_endpoint
):
    from jobs.infra.config import load_config
    from jobs.shop import generate
    from jobs.shop.land import land

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    config = write_overlay(s3_endpoint, "rerun")
    lake = load_config(config, environ={}).paths.lake
    land(tmp_path / "raw", tmp_path / "landing" / "retailrocket", DAY)
    _stage("ingest", DAY - timedelta(days=1), config)

    snapshots = []
    for _ in range(2):
        for stage in STAGES:
            _stage(stage, DAY, config)
        snapshots.append(_snapshot(lake))

    first, second = snapshots
    written = [k for k in first if k.count("/") == 2 and not k.startswith("_runs")]
    assert {"bronze/events/dt=2015-09-18", "silver/events/dt=2015-09-18"} <= set(written)
    assert {"splits/train/dt=2015-09-18", "splits/catalog/dt=2015-09-18"} <= set(written)
    assert first.keys() == second.keys()
    changed = sorted(k for k in first if first[k] != second[k])
    assert not changed, changed
