"""The storage layout: the only module that knows where a stage's data lives.

lake/<layer>/<table>/dt=YYYY-MM-DD/     one partition per logical date, overwritten on rerun
lake/_runs/dt=YYYY-MM-DD/<stage>.json   each stage's counts and outcome for that date
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any


def end_of_day(run_date: date) -> datetime:
    """The exclusive upper bound of a logical date: 00:00 UTC of the next day.

    Every stage reads data up to this instant and nothing later (no future leakage).
    """
    return datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Lake:
    root: Path

    def partition(self, layer: str, table: str, run_date: date) -> Path:
        return self.root / layer / table / f"dt={run_date.isoformat()}"

    def stage_report(self, run_date: date, stage: str) -> Path:
        return self.root / "_runs" / f"dt={run_date.isoformat()}" / f"{stage}.json"

    def write_stage_report(self, run_date: date, stage: str, report: dict[str, Any]) -> Path:
        """Write a stage's report atomically (temp file + rename) so readers never see half."""
        path = self.stage_report(run_date, stage)
        write_json_atomic(path, report)
        return path

    def read_stage_report(self, run_date: date, stage: str) -> dict[str, Any]:
        path = self.stage_report(run_date, stage)
        if not path.is_file():
            raise FileNotFoundError(
                f"no {stage} report for {run_date} at {path}: did the {stage} stage run?"
            )
        return json.loads(path.read_text())


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_partition(lake: Lake, layer: str, table: str, run_date: date, columns=None):
    """A lake partition as a pandas DataFrame (for the single-process stages)."""
    import pandas as pd

    path = lake.partition(layer, table, run_date)
    if not path.is_dir():
        raise FileNotFoundError(f"partition not found: {path}: did the stage that writes it run?")
    return pd.read_parquet(path, columns=columns)
