"""The storage layout: the only module that knows where a stage's data lives.

landing/<source>/dt=YYYY-MM-DD/         the files a source delivered for that day (read only)
lake/<layer>/<table>/dt=YYYY-MM-DD/     one partition per logical date, overwritten on rerun
lake/<layer>/<table>/dt=.../_lineage.json  what the partition was built from (files, rows, sha256)
lake/_runs/dt=YYYY-MM-DD/<stage>.json   each stage's counts and outcome for that date
"""

from __future__ import annotations

import hashlib
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


class IncompletePartitionError(FileNotFoundError):
    """A partition a stage reads is missing, or the Spark job writing it did not finish."""


@dataclass(frozen=True)
class Lake:
    root: Path

    def table(self, layer: str, table: str) -> Path:
        return self.root / layer / table

    def partition(self, layer: str, table: str, run_date: date) -> Path:
        return self.table(layer, table) / f"dt={run_date.isoformat()}"

    def complete(self, layer: str, table: str, run_date: date, producer: str) -> Path:
        """The partition's path if `producer` (the stage writing it) finished it, else an
        IncompletePartitionError naming it: Spark writes _SUCCESS only once every file is in,
        so a killed run's leftovers are never read as data."""
        path = self.partition(layer, table, run_date)
        if not path.is_dir():
            raise IncompletePartitionError(
                f"no {layer}/{table} partition at {path}: run {producer} for {run_date} first"
            )
        if not (path / "_SUCCESS").exists():
            raise IncompletePartitionError(
                f"{path} is incomplete (no _SUCCESS marker): the {producer} run writing it did "
                f"not finish. Run {producer} for {run_date} again"
            )
        return path

    def dates_until(self, layer: str, table: str, run_date: date) -> list[date]:
        """Dates of the table's partitions up to and including run_date, oldest first."""
        root = self.table(layer, table)
        found = (
            date.fromisoformat(p.name[3:])
            for p in root.glob("dt=*")
            if p.is_dir() and (p / "_SUCCESS").exists()
        )
        return sorted(d for d in found if d <= run_date)

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


LINEAGE_FILE = "_lineage.json"  # Spark and pandas readers skip files starting with "_"


def write_lineage(partition: Path, inputs: list[dict[str, Any]], **facts: Any) -> Path:
    """Record what a written partition was built from: its inputs and facts such as row counts.

    Each input is a dict naming a file or partition with its rows and sha256, so that "which raw
    files fed this model?" is answered by following the chain of _lineage.json files back.
    """
    path = partition / LINEAGE_FILE
    write_json_atomic(path, {"partition": str(partition), "inputs": inputs, **facts})
    return path


def read_lineage(partition: Path) -> dict[str, Any]:
    path = partition / LINEAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no lineage recorded for {partition}")
    return json.loads(path.read_text())


def trace_lineage(partition: Path) -> dict[str, Any]:
    """Follow _lineage.json files back from a partition to the landed files at their root.

    Returns {"partitions": [...every partition on the way...], "files": [...raw file entries,
    each with its sha256...]}; a partition without lineage is listed under "untraced".
    """
    partitions: list[str] = []
    files: dict[str, dict[str, Any]] = {}
    untraced: list[str] = []
    pending = [partition]
    while pending:
        current = pending.pop()
        if str(current) in partitions:
            continue
        partitions.append(str(current))
        if not (current / LINEAGE_FILE).is_file():
            untraced.append(str(current))
            continue
        for entry in read_lineage(current)["inputs"]:
            if "partition" in entry:
                pending.append(Path(entry["partition"]))
            else:
                files[entry["file"]] = entry
    return {
        "partitions": sorted(partitions),
        "files": [files[k] for k in sorted(files)],
        "untraced": sorted(untraced),
    }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def partition_digest(partition: Path) -> str:
    """sha256 over the rows of the partition's data files, in part-number order.

    Rows, not file bytes: Spark names each file with a fresh UUID, and parquet-mr lists each
    column chunk's encodings in an order that changes from one JVM to the next, so a rerun that
    writes the same rows writes files whose footers differ. Each file is hashed as its decoded
    Arrow table in IPC form (schema and values), so the digest changes exactly when the data does.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    for file in sorted(p for p in partition.iterdir() if not p.name.startswith(("_", "."))):
        table = pq.read_table(file)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(hashlib.sha256(sink.getvalue()).digest())
    return digest.hexdigest()


def read_partition(
    lake: Lake, layer: str, table: str, run_date: date, columns=None, producer: str | None = None
):
    """A lake partition as a pandas DataFrame (for the single-process stages). With `producer`
    (the Spark stage writing it), a partition that stage did not finish is an error."""
    import pandas as pd

    if producer is not None:
        return pd.read_parquet(lake.complete(layer, table, run_date, producer), columns=columns)
    path = lake.partition(layer, table, run_date)
    if not path.is_dir():
        raise FileNotFoundError(f"partition not found: {path}: did the stage that writes it run?")
    return pd.read_parquet(path, columns=columns)
