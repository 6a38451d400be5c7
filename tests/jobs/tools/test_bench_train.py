"""jobs/tools/bench_train.py: both fits run on the training split of a tiny lake (no timings)."""

import json
from datetime import date
from pathlib import Path

import pytest

from jobs.infra.paths import Lake
from jobs.tools.bench_train import main

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RUN_DATE = date(2015, 9, 18)
CUTOFF = "2015-09-05T00:00:00+00:00"


def _run(lake: Lake, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "train.json"
    argv = ["--config", str(PROJECT_ROOT / "configs" / "test.yaml")]
    argv += ["--run-date", RUN_DATE.isoformat(), "--lake", str(lake.root)]
    assert main([*argv, "--repeat", "1", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_without_a_train_report_both_fits_use_the_config_params(split_lake, tmp_path):
    result = _run(split_lake, tmp_path)

    assert result["params_source"] == "config train.* (no train report)"
    assert (result["params"]["factors"], result["params"]["iterations"]) == (16, 8)
    assert result["matrix"] == {"visitors": 3, "items": 4, "nnz": 6}
    assert result["events"] == 7
    for key in ("bare_fit", "pipeline_fit", "pipeline_path"):
        assert len(result["runs"][key]) == 1
        assert result["median_s"][key] > 0
    assert result["median_s"]["pipeline_path"] >= result["median_s"]["pipeline_fit"]
    assert result["ratio"] > 0
    assert result["command"].startswith("python -m jobs.tools.bench_train --config")
    assert result["machine"]["cores"] >= 1


def test_the_params_the_train_stage_chose_are_used_by_default(split_lake, tmp_path):
    lake = split_lake
    tuned = {
        "factors": 4,
        "regularization": 0.1,
        "alpha": 10.0,
        "iterations": 2,
        "random_state": 7,
        "num_threads": 1,
        "use_gpu": False,
        "engine": "implicit",
        "mllib_blocks": 10,
        "candidate_items": None,
        "rank_every_item_below": None,
        "event_weights": {"view": 1.0, "cart": 4.0, "purchase": 8.0},
        "half_life_days": 7.0,  # decay needs the split's cutoff
        "saturation": None,
        "weighting": "bm25",
        "bm25_k1": 100.0,
        "bm25_b": 0.8,
    }
    lake.write_stage_report(RUN_DATE, "train", {"params": tuned})

    result = _run(lake, tmp_path)

    assert result["params_source"].endswith("train.json")
    assert result["params"] == tuned
    assert result["matrix"] == {"visitors": 3, "items": 4, "nnz": 6}
    assert result["ratio"] > 0
    assert result["seconds_per_iteration"]["bare_fit"] > 0


def test_params_config_ignores_the_train_report(split_lake, tmp_path):
    lake = split_lake
    lake.write_stage_report(RUN_DATE, "train", {"params": {"factors": 4}})  # not even valid

    result = _run(lake, tmp_path, "--params", "config")

    assert result["params_source"] == "config train.*"
    assert result["params"]["factors"] == 16


def test_a_missing_training_split_is_a_named_error(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_stage_report(RUN_DATE, "split", {"cutoff": CUTOFF})

    with pytest.raises(FileNotFoundError, match="splits/train/dt=2015-09-18"):
        _run(lake, tmp_path)


def test_repeat_must_be_positive(split_lake, tmp_path):
    with pytest.raises(ValueError, match="--repeat"):
        _run(split_lake, tmp_path, "--repeat", "0")
