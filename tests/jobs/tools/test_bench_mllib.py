"""jobs/tools/bench_mllib.py: both engines fit one tiny split and are scored alike (no timings)."""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RUN_DATE = date(2015, 9, 18)

# Test window: visitor 1 comes back for item 12, visitor 2 for 13, and a cold visitor 9.
TEST_EVENTS = [
    (1, 12, "view", "2015-09-06 10:00"),
    (2, 13, "view", "2015-09-06 11:00"),
    (9, 10, "view", "2015-09-06 12:00"),
]


# MLlib fits in the JVM: make test-all.
pytestmark = pytest.mark.slow


def test_both_engines_fit_one_matrix_and_are_scored_on_warm_test_visitors(split_lake, tmp_path):
    lake = split_lake
    events = pd.DataFrame(TEST_EVENTS, columns=["visitor_id", "item_id", "event_type", "event_ts"])
    events["event_ts"] = pd.to_datetime(events["event_ts"], utc=True)
    partition = lake.partition("splits", "test", RUN_DATE)
    partition.mkdir(parents=True)
    events.to_parquet(partition / "part-0.parquet", index=False)
    out = tmp_path / "mllib.json"

    # Its own process: the tool stops its Spark session, which must not be the tests' one.
    done = subprocess.run(
        [sys.executable, "-m", "jobs.tools.bench_mllib", "--run-date", RUN_DATE.isoformat()]
        + ["--config", str(PROJECT_ROOT / "configs" / "test.yaml"), "--lake", str(lake.root)]
        + ["--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["matrix"] == {"visitors": 3, "items": 4, "nnz": 6}
    assert result["test_visitors"] == 2  # visitors 1 and 2; 9 is cold
    assert sorted(result["engines"]) == ["implicit", "spark_mllib"]
    for figures in result["engines"].values():
        assert figures["fit_s"] > 0 and figures["recommend_all_s"] > 0
        assert 0 <= figures["ndcg_at_10"] <= 1 and 0 <= figures["recall_at_20"] <= 1
    assert result["spark"]["jvm_blas"] and result["spark"]["jvm_lapack"]
    assert "| spark_mllib |" in done.stdout
    assert result["end_to_end_ratio"] > 0
