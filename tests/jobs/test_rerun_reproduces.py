"""Re-running a date rewrites that date's lake partitions byte for byte, and the stage reports.

The Spark stages of one logical date run twice on a tiny generated shop; every partition they
wrote for the date must hold the same bytes (file names aside: Spark puts a fresh UUID in each)
and the same lineage, and the stage reports must say the same.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.core.paths import LINEAGE_FILE, partition_digest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

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


def test_rerunning_a_date_rewrites_identical_partitions(tmp_path, write_overlay, s3_endpoint):
    from jobs import clean, generate, ingest, split, validate
    from jobs.core.config import load_config
    from jobs.tools.land import land

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    config = write_overlay(s3_endpoint, "rerun")
    lake = load_config(config, environ={}).paths.lake
    land(tmp_path / "raw", tmp_path / "landing" / "retailrocket", DAY)
    args = ["--config", str(config)]
    assert ingest.main(["--run-date", (DAY - timedelta(days=1)).isoformat(), *args]) == 0

    snapshots = []
    for _ in range(2):
        for stage in (ingest, clean, validate, split):
            assert stage.main(["--run-date", DAY.isoformat(), *args]) == 0
        snapshots.append(_snapshot(lake))

    first, second = snapshots
    written = [k for k in first if k.count("/") == 2 and not k.startswith("_runs")]
    assert {"bronze/events/dt=2015-09-18", "silver/events/dt=2015-09-18"} <= set(written)
    assert {"splits/train/dt=2015-09-18", "splits/catalog/dt=2015-09-18"} <= set(written)
    assert first.keys() == second.keys()
    changed = sorted(k for k in first if first[k] != second[k])
    assert not changed, changed
