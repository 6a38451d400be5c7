"""The Spark stages on one Spark Connect server write what they write with sessions of their own.

A tiny generated shop is landed; ingest (history day and the day), clean, validate and split run
as the DAG runs them on a server (`python -m jobs.<stage>`, each its own process, attached
through RECS__SPARK__REMOTE and the token), with no Java to start a JVM of their own. The same
stages then run on the local[1] session into another lake: every partition must hold the same
rows in the same order (`partition_digest`), the same lineage and the same stage reports,
validation's included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.infra.paths import LINEAGE_FILE, partition_digest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DAY = date(2015, 9, 18)
HISTORY = DAY - timedelta(days=1)
STAGES = [("ingest", HISTORY), ("ingest", DAY), ("clean", DAY), ("validate", DAY), ("split", DAY)]


def _snapshot(root: Path) -> dict[str, object]:
    """Every partition's rows, its lineage and every stage report, with the run's folder as
    <run>. The lineage's config fingerprint is left out: it covers the paths, which differ."""
    lake, state = root / "lake", {}
    for partition in sorted(lake.glob("*/*/dt=*")):
        key = str(partition.relative_to(lake))
        state[key] = partition_digest(partition)
        lineage = partition / LINEAGE_FILE
        if lineage.is_file():
            text = lineage.read_text().replace(str(root), "<run>")
            state[f"{key}/{LINEAGE_FILE}"] = {
                k: v for k, v in json.loads(text).items() if k != "config"
            }
    for report in sorted((lake / "_runs").glob("dt=*/*.json")):
        text = report.read_text().replace(str(root), "<run>")
        state[str(report.relative_to(lake))] = json.loads(text)
    return state


def test_the_spark_stages_on_a_connect_server_write_what_their_own_sessions_write(
    spark_connect, spark, tmp_path, run_overlay
):
    from jobs import clean, ingest, split, validate
    from jobs.infra.config import load_config
    from jobs.shop import generate
    from jobs.shop.land import land

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    land(tmp_path / "raw", tmp_path / "landing" / "retailrocket", DAY)

    # No Java here: a stage that started a session of its own instead of attaching would fail.
    env = {**os.environ, **spark_connect.client_env(), "JAVA_HOME": str(tmp_path / "no-java")}
    on_server = run_overlay("connect")
    for stage, run_date in STAGES:
        command = [sys.executable, "-m", f"jobs.{stage}", "--run-date", run_date.isoformat()]
        done = subprocess.run(
            [*command, "--config", str(on_server)],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{stage}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        assert "spark session ready" in done.stdout, done.stdout[-2000:]
        # The server runs the same config: no setting of it differs from the stage's.
        assert "on the Connect server" not in done.stdout, done.stdout[-2000:]

    own = load_config(run_overlay("local"), environ={})
    modules = {"ingest": ingest, "clean": clean, "validate": validate, "split": split}
    for stage, run_date in STAGES:
        modules[stage].run(own, run_date, spark)

    connect, local = _snapshot(tmp_path / "connect"), _snapshot(tmp_path / "local")
    assert {"silver/events/dt=2015-09-18", "splits/train/dt=2015-09-18"} <= connect.keys()
    assert connect["_runs/dt=2015-09-18/validate.json"]["success"]
    assert connect.keys() == local.keys()
    assert not sorted(k for k in local if connect[k] != local[k])
