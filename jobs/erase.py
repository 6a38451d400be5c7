"""Erase visitors: remove every row of theirs from the lake and keep them out of future runs.

For a data-subject erasure request. Given the shop's visitor ids (as the shop sends them; hashed
here first when ingest pseudonymizes), it

1. adds them to the erasure list ``lake/erasure/visitors/``, which ingest applies to every file
   it reads from then on (their rows are counted as `erased`, never stored);
2. rewrites each lake partition that holds their rows without them: bronze and silver events,
   removed visitors, train/test splits, the exported lists (text ids too), the id dictionary's
   text of them, and quarantined raw lines that carry the id as a field;
3. writes what it removed, per partition, to ``lake/erasure/log/<utc time>.json``.

The next nightly run then neither trains on them nor exports a list for them. Not covered, and
to be handled by their owners: the shop's landing files, MLflow model artifacts of earlier runs,
and publications of earlier dates still in the bucket (they age out with export.retention_days).

    python -m jobs.erase --config configs/local.yaml --visitor-id 257597 [--visitor-id ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.feeds.privacy import bronze_visitor_ids, visitor_key
from jobs.feeds.sources import ID_COLUMN
from jobs.infra.config import Config, load_config
from jobs.infra.paths import Lake, write_json_atomic
from jobs.infra.schemas import RAW_LINE, VISITOR_ID

log = logging.getLogger("erase")

# Tables keyed by the visitor, and the column that holds the id.
VISITOR_TABLES = (
    ("bronze", "events", VISITOR_ID),
    ("silver", "events", VISITOR_ID),
    ("silver", "removed_visitors", VISITOR_ID),
    ("splits", "train", VISITOR_ID),
    ("splits", "test", VISITOR_ID),
    ("exports", "recommendations", "user_id"),
)
ERASED_FILE = "part-00000-erased.parquet"


def without_visitors(
    table: pa.Table, column: str, ids: list[int], texts: list[str] = ()
) -> pa.Table:
    """The table minus rows whose `column` is one of ids; a text column (an export that gives
    the shop its own ids back) is matched on `texts` and the ids' digits."""
    values = table[column]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        value_set = pa.array(sorted({*texts, *map(str, ids)}), values.type)
    else:
        value_set = pa.array(ids, pa.int64())
    hit = pc.is_in(values, value_set=value_set)
    return table.filter(pc.invert(pc.fill_null(hit, False)))


def without_dictionary_visitors(table: pa.Table, ids: list[int]) -> pa.Table:
    """The id dictionary minus the text of these visitors (item rows are never touched)."""
    hit = pc.and_(
        pc.equal(table[ID_COLUMN], VISITOR_ID),
        pc.is_in(table["id"], value_set=pa.array(ids, pa.int64())),
    )
    return table.filter(pc.invert(hit))


def without_raw_lines(table: pa.Table, raw_ids: list[str]) -> pa.Table:
    """Quarantined rows minus raw lines carrying one of the ids as a whole field.

    For quarantine partitions written before they had a visitor_id column: a whole field (CSV
    or JSON) equal to an id matches, wherever it stands, so an item or transaction id equal to
    the visitor's goes too; a number that merely contains the id does not.
    """
    fields = "|".join(re.escape(i) for i in raw_ids)
    # The group matters: without it, `a|b` binds the boundaries to the first and last id only.
    pattern = rf'(^|[,;\t{{:"\s])({fields})($|[,;\t}}"\s])'
    hit = pc.match_substring_regex(table[RAW_LINE], pattern)
    return table.filter(pc.invert(pc.fill_null(hit, False)))


def without_quarantined_visitors(table: pa.Table, ids: list[int], raw_ids: list[str]) -> pa.Table:
    """Quarantined rows minus the visitors' rows: matched on the visitor_id ingest parsed (the
    bronze form: exact, and the only match a pseudonymized raw line allows), or, in partitions
    older than that column, on the raw line's whole fields."""
    if VISITOR_ID in table.column_names:
        return without_visitors(table, VISITOR_ID, ids)
    return without_raw_lines(table, raw_ids)


def _rewrite(partition: Path, keep) -> int:
    """Rewrite a partition's data files through `keep`; return rows removed (0: untouched)."""
    files = sorted(p for p in partition.glob("*.parquet"))
    if not files:
        return 0
    # The folder name dt=... is not a column of the files: no hive partitioning here.
    table = pq.read_table(files, partitioning=None)
    kept = keep(table)
    removed = table.num_rows - kept.num_rows
    if removed == 0:
        return 0
    staging = partition.with_name(partition.name + ".erasing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    # Spark writes timestamps as INT96; so must we, or Spark reads this file as another type.
    pq.write_table(kept, staging / ERASED_FILE, use_deprecated_int96_timestamps=True)
    for extra in partition.iterdir():  # _SUCCESS, _lineage.json
        if extra.name.startswith("_"):
            shutil.copy2(extra, staging / extra.name)
    backup = partition.with_name(partition.name + ".old")
    os.replace(partition, backup)
    os.replace(staging, partition)
    shutil.rmtree(backup)
    return removed


def erase(cfg: Config, raw_ids: list[str], key: bytes | None) -> dict:
    """Add the visitors to the erasure list and remove their rows from the lake."""
    lake = Lake(cfg.paths.lake)
    text_ids = any(VISITOR_ID in source.text_ids for source in cfg.ingest.sources)
    ids = sorted({n for i in raw_ids for n in bronze_visitor_ids(i, key, text_ids)})
    listing = lake.table("erasure", "visitors")
    listing.mkdir(parents=True, exist_ok=True)
    known = pq.read_table(listing / ERASED_FILE) if (listing / ERASED_FILE).exists() else None
    merged = sorted(set(ids) | set(known[VISITOR_ID].to_pylist() if known else []))
    pq.write_table(pa.table({VISITOR_ID: pa.array(merged, pa.int64())}), listing / ERASED_FILE)
    (listing / "_SUCCESS").touch()

    removed: dict[str, int] = {}
    for layer, table, column in VISITOR_TABLES:
        for partition in sorted(lake.table(layer, table).glob("dt=*")):
            n = _rewrite(partition, lambda t, c=column: without_visitors(t, c, ids, raw_ids))
            if n:
                removed[str(partition)] = n
    for partition in sorted(lake.table("bronze", "id_dictionary").glob("dt=*")):
        n = _rewrite(partition, lambda t: without_dictionary_visitors(t, ids))
        if n:
            removed[str(partition)] = n
    for partition in sorted(lake.table("quarantine", "rows").glob("dt=*")):
        n = _rewrite(partition, lambda t: without_quarantined_visitors(t, ids, raw_ids))
        if n:
            removed[str(partition)] = n
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    # The log names partitions and counts, never the ids: it must not re-create what it erased.
    entry = {"erased_visitors": len(ids), "rows_removed": removed, "at": stamp}
    write_json_atomic(lake.root / "erasure" / "log" / f"{stamp}.json", entry)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--visitor-id", action="append", required=True, dest="ids")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    cfg = load_config(args.config)

    entry = erase(cfg, args.ids, visitor_key(cfg))
    log.info("erased %d visitor(s): %s", entry["erased_visitors"], entry["rows_removed"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
