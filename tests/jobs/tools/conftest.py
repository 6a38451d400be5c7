"""A tiny lake with a training split, for the benchmark tools' tests."""

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from jobs.infra.paths import Lake

RUN_DATE = date(2015, 9, 18)
CUTOFF = "2015-09-05T00:00:00+00:00"
# 3 visitors x 4 items, 6 distinct (visitor, item) pairs.
EVENTS = [
    (1, 10, "view", "2015-09-01 10:00"),
    (1, 10, "cart", "2015-09-01 10:05"),
    (1, 11, "view", "2015-09-02 09:00"),
    (2, 11, "purchase", "2015-09-03 12:00"),
    (2, 12, "view", "2015-09-03 12:30"),
    (3, 13, "view", "2015-09-04 08:00"),
    (3, 10, "view", "2015-09-04 08:10"),
]


def write_train_split(root: Path, events: pd.DataFrame, report: dict) -> Lake:
    """A lake at `root` whose splits/train for RUN_DATE holds `events` (complete, as split
    leaves it), with `report` as the split's stage report."""
    lake = Lake(root)
    partition = lake.partition("splits", "train", RUN_DATE)
    partition.mkdir(parents=True)
    events.to_parquet(partition / "part-0.parquet", index=False)
    (partition / "_SUCCESS").touch()
    lake.write_stage_report(RUN_DATE, "split", report)
    return lake


@pytest.fixture()
def train_split():
    """write_train_split, for tests that need their own events in the lake."""
    return write_train_split


@pytest.fixture()
def split_lake(tmp_path: Path) -> Lake:
    """A lake whose splits/train for RUN_DATE holds EVENTS, with the split report's cutoff."""
    events = pd.DataFrame(EVENTS, columns=["visitor_id", "item_id", "event_type", "event_ts"])
    events["event_ts"] = pd.to_datetime(events["event_ts"], utc=True)
    return write_train_split(tmp_path / "lake", events, {"cutoff": CUTOFF})
