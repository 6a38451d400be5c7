"""jobs/tools/tuning_sample.py: a date's search run on every visitor and on a sample."""

import json
from datetime import date
from pathlib import Path

import pandas as pd

from jobs.infra.config import load_config
from jobs.infra.paths import Lake
from jobs.tools.tuning_sample import compared, main

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RUN_DATE = date(2015, 9, 18)
VALIDATION_CUTOFF = pd.Timestamp("2015-09-10", tz="UTC")


def _lake(root: Path, train_split) -> Lake:
    """30 visitors in two taste groups; each views four items of their group before the
    validation cutoff and a fifth one after it."""
    rows = []
    for v in range(30):
        group = 0 if v < 15 else 10
        start = pd.Timestamp("2015-09-01", tz="UTC") + pd.Timedelta(hours=v)
        rows += [(v, group + (v + j) % 6, "view", start + pd.Timedelta(hours=j)) for j in range(4)]
        rows.append((v, group + (v + 4) % 6, "view", VALIDATION_CUTOFF + pd.Timedelta(hours=v)))
    events = pd.DataFrame(rows, columns=["visitor_id", "item_id", "event_type", "event_ts"])
    report = {"cutoff": "2015-09-12T00:00:00+00:00", "validation_cutoff": str(VALIDATION_CUTOFF)}
    return train_split(root, events, report)


def _config(tmp_path: Path) -> Path:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        f"extends: {PROJECT_ROOT / 'configs' / 'test.yaml'}\n"
        f"paths:\n  lake: {tmp_path / 'lake'}\n"
        "tune:\n  trials: 2\n  max_validation_visitors: 4\n  max_fit_visitors: 10\n"
    )
    return overlay


def test_both_searches_run_every_trial_the_sample_on_fewer_visitors(tmp_path, train_split):
    _lake(tmp_path / "lake", train_split)
    figures = compared(load_config(_config(tmp_path)), RUN_DATE)

    assert figures["max_fit_visitors"] == 10
    assert [t["trial"] for t in figures["trials"]] == [0, 1]
    for trial in figures["trials"]:
        assert trial["every_visitor_fit_visitors"] == 30
        assert trial["sample_fit_visitors"] == 10
        assert 0 < trial["every_visitor_ndcg"] <= 1 and 0 <= trial["sample_ndcg"] <= 1
    assert isinstance(figures["same_winner"], bool)


def test_main_writes_the_figures_and_prints_the_table(tmp_path, capsys, train_split):
    _lake(tmp_path / "elsewhere", train_split)
    out = tmp_path / "figures.json"
    argv = ["--run-date", RUN_DATE.isoformat(), "--config", str(_config(tmp_path))]
    argv += ["--lake", str(tmp_path / "elsewhere")]

    assert main([*argv, "--out", str(out)]) == 0

    assert len(json.loads(out.read_text())["trials"]) == 2
    printed = capsys.readouterr().out
    assert "| trial | factors, regularization, alpha |" in printed
    assert "visitors fitted: 30 every visitor, 10 sample" in printed
