"""jobs/tools/bare_night.py: the bare script's matrix and lists on a tiny lake (no timings)."""

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.tools.bare_night import main, weighted_matrix

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RUN_DATE = date(2015, 9, 18)  # split_lake's


def test_the_matrix_sums_each_pairs_event_weights():
    events = pd.DataFrame(
        [(1, 10, "view"), (1, 10, "cart"), (1, 11, "view"), (2, 11, "purchase"), (2, 12, "view")]
        + [(3, 13, "view"), (3, 10, "view")],
        columns=["visitor_id", "item_id", "event_type"],
    )

    matrix, visitors, items = weighted_matrix(events, {"view": 1.0, "cart": 4.0, "purchase": 8.0})

    assert visitors.tolist() == [1, 2, 3] and items.tolist() == [10, 11, 12, 13]
    assert matrix.toarray().tolist() == [
        [5.0, 1.0, 0.0, 0.0],  # visitor 1: a view and a cart of item 10
        [0.0, 8.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 1.0],
    ]


def test_every_visitor_gets_a_full_list_of_known_items(split_lake, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    argv = ["--config", str(PROJECT_ROOT / "configs" / "test.yaml"), "--lake", str(split_lake.root)]

    assert main([*argv, "--run-date", RUN_DATE.isoformat(), "--out", str(out)]) == 0

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["visitors"], summary["items"], summary["nnz"]) == (3, 4, 6)
    assert summary["pool"] == 4  # candidate_items 500 of 4 items: all of them
    recs = pd.read_parquet(out)
    assert sorted(recs["user_id"].unique()) == [1, 2, 3]
    for _, lists in recs.groupby("user_id"):
        assert lists["rank"].tolist() == [1, 2, 3, 4]  # N = 50 capped at the 4 items
        assert sorted(lists["item_id"]) == [10, 11, 12, 13]
        assert np.all(np.diff(lists["score"].to_numpy()) <= 0)
