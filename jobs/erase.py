"""Erase visitors: remove every row of theirs from every store and keep them out of future runs.

For a data-subject erasure request. Given the shop's visitor ids (as the shop sends them; hashed
here first when ingest pseudonymizes), it

1. adds them to the erasure list ``lake/erasure/visitors/``, which ingest applies to every file
   it reads from then on (their rows are counted as `erased`, never stored);
2. rewrites each lake partition that holds their rows without them: bronze and silver events,
   removed visitors, train/test splits, the id dictionary's text of them, and quarantined rows
   (matched on the visitor_id ingest parsed, exactly);
3. rewrites the exported lists file by file (lake, staging leftovers, shadows) and every
   published run on S3 with its manifest, under each date's lock;
4. rewrites every registered model version without them, in place (docs/reliability.md,
   "Erasure", says why redact and not retrain);
5. writes each place and the rows removed to ``lake/erasure/log/<utc time>.json``.

Not covered, and to be handled by their owners: the shop's landing files.

    python -m jobs.erase --config configs/local.yaml --visitor-id 257597 [--visitor-id ...]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.feeds.privacy import bronze_visitor_ids, visitor_key
from jobs.feeds.sources import ID_COLUMN
from jobs.infra.config import Config, load_config
from jobs.infra.paths import Lake, write_json_atomic
from jobs.infra.schemas import RAW_LINE, VISITOR_ID
from jobs.recommenders.interactions import InteractionMatrix

log = logging.getLogger("erase")

# Tables keyed by the visitor, and the column that holds the id.
VISITOR_TABLES = (
    ("bronze", "events", VISITOR_ID),
    ("silver", "events", VISITOR_ID),
    ("silver", "removed_visitors", VISITOR_ID),
    ("splits", "train", VISITOR_ID),
    ("splits", "test", VISITOR_ID),
)
# Exported lists (lake folders and S3 datasets, named as jobs/export.py names them): rewritten
# file by file, so the names a manifest lists stay and the JSON Lines keep their other lines.
LAKE_EXPORTS = ("recommendations", "shadow_recommendations")
S3_EXPORTS = ("recommendations", "shadow/recommendations")
USER_ID = "user_id"
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


def export_users(ids: list[int], raw_ids: list[str], key: bytes | None, text_ids: bool) -> set[str]:
    """The user_id texts an export writes for these visitors: the bronze ids' digits, and the
    shop's own text when a source sends text ids (the export gives it back); never the raw id
    under pseudonymization, where the export only knows the keyed hash."""
    return {*map(str, ids), *(raw_ids if text_ids and key is None else ())}


def without_export_lines(text: str, users: set[str]) -> tuple[str, int]:
    """JSON Lines (Personalize batch output) minus the users' lines; other lines byte for byte.
    Returns (text, lines removed)."""
    kept, removed = [], 0
    for line in text.splitlines(keepends=True):
        if line.strip() and json.loads(line)["input"]["userId"] in users:
            removed += 1
        else:
            kept.append(line)
    return "".join(kept), removed


def _export_file_without(name: str, data: bytes, users: set[str]):
    """(new bytes, rows removed, the removed Parquet rows or None) of one exported file."""
    if name.endswith(".jsonl"):
        text, removed = without_export_lines(data.decode(), users)
        return text.encode(), removed, None
    table = pq.read_table(pa.BufferReader(data))
    # user_id is the shop's text, or the bronze id (an integer column) when no source has text
    hit = pc.is_in(pc.cast(table[USER_ID], pa.string()), value_set=pa.array(sorted(users)))
    hit = pc.fill_null(hit, False)
    sink = pa.BufferOutputStream()
    pq.write_table(table.filter(pc.invert(hit)), sink)
    gone = table.filter(hit)
    return sink.getvalue().to_pybytes(), gone.num_rows, gone


def _rewrite_export(folder: Path, users: set[str]) -> int:
    """Rewrite an export folder's .parquet and .jsonl files in place without the users' rows
    (each file replaced by a rename); returns rows removed, Parquet rows and JSON lines."""
    removed = 0
    for path in sorted([*folder.glob("*.parquet"), *folder.glob("*.jsonl")]):
        data, n, _ = _export_file_without(path.name, path.read_bytes(), users)
        if n:
            tmp = path.with_name(path.name + ".erasing")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            removed += n
    return removed


def _lake_exports(lake: Lake) -> list[Path]:
    """Every lake folder holding exported lists: installed dates, and the staging folders an
    attempt that died before installing left behind."""
    root = lake.root / "exports"
    folders = [p for name in LAKE_EXPORTS for p in sorted((root / name).glob("dt=*"))]
    for run in sorted((root / "_staging").glob("run=*")):
        folders += [run / name for name in LAKE_EXPORTS if (run / name).is_dir()]
    return folders


def erase_published(client, storage, users: set[str]) -> dict[str, int]:
    """Rewrite every published run of the visitor datasets on S3 (every date, live or not,
    shadows too) without the users' rows, and each changed run's manifest to match.

    Under each date's lock, so no export of that date writes meanwhile; pointers and locks are
    never written (a pointer names a run prefix and its manifest key, both kept). Returns
    s3://... object -> rows removed."""
    from jobs.infra.storage import DateWriter, dataset_prefix

    removed: dict[str, int] = {}
    paginator = client.get_paginator("list_objects_v2")
    for dataset in S3_EXPORTS:
        root = dataset_prefix(storage, dataset)
        runs: dict[str, list[str]] = {}
        for page in paginator.paginate(Bucket=storage.bucket, Prefix=f"{root}/dt="):
            for obj in page.get("Contents", []):
                run, _, name = obj["Key"].rpartition("/")
                if "/run=" in run:
                    runs.setdefault(run, []).append(name)
        by_day: dict[date, list[str]] = {}
        for run in sorted(runs):
            day = date.fromisoformat(run.rsplit("/dt=", 1)[1].split("/", 1)[0])
            by_day.setdefault(day, []).append(run)
        for day, day_runs in by_day.items():
            # One lock per date, renewed after every rewrite like an upload renews it: a long
            # erase keeps the date, or fails rather than write beside an export that took it.
            with DateWriter(client, storage, [dataset], day, "erase") as writer:
                for run in day_runs:
                    removed.update(
                        _erase_run(client, storage.bucket, run, runs[run], users, writer.confirm)
                    )
    return removed


def _erase_run(
    client, bucket: str, run: str, names: list[str], users, renew_lock
) -> dict[str, int]:
    from jobs.infra.storage import MANIFEST

    removed, changed, gone = {}, {}, []
    for name in sorted(n for n in names if n.endswith((".parquet", ".jsonl"))):
        key = f"{run}/{name}"
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        data, n, rows = _export_file_without(name, body, users)
        if not n:
            continue
        client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
        renew_lock()
        removed[f"s3://{bucket}/{key}"] = n
        changed[key] = data
        if rows is not None:
            gone.append(rows)
    if changed and MANIFEST in names:
        key = f"{run}/{MANIFEST}"
        manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        for entry in manifest.get("files", []):
            if entry["key"] in changed:
                data = changed[entry["key"]]
                entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        if gone:
            rows = pa.concat_tables(gone)
            manifest["rows"] = manifest.get("rows", 0) - rows.num_rows
            manifest["users"] = manifest.get("users", 0) - len(pc.unique(rows[USER_ID]))
            by_source = manifest.get("rows_by_source", {})
            for source, count in Counter(rows["source"].to_pylist()).items():
                by_source[source] = by_source.get(source, 0) - count
        manifest["erased_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )
    return removed


def without_model_visitors(recommender, ids: list[int]):
    """(the recommender without these visitors' rows, rows removed). ALS loses their factor
    rows and ids, own history their history, item-kNN and EASE their rows of the history they
    score from; popularity knows no visitor. What stays (item factors, similarities,
    popularity) is aggregate over everyone and names no visitor."""
    drop = np.asarray(ids, dtype=np.int64)
    if recommender.family in ("als", "repeat"):
        held = recommender.visitor_ids
        before = len(held) if recommender.family == "als" else len(recommender.history)
        redacted = recommender.for_visitors(held[~np.isin(held, drop)])
        after = len(redacted.visitor_ids) if recommender.family == "als" else len(redacted.history)
        return redacted, before - after
    data = getattr(recommender, "data", None)
    if isinstance(data, InteractionMatrix):
        keep = ~np.isin(data.visitor_ids, drop)
        redacted = copy.copy(recommender)
        redacted.data = InteractionMatrix(data.matrix[keep], data.visitor_ids[keep], data.item_ids)
        return redacted, int((~keep).sum())
    return recommender, 0


def redact_registered_models(cfg: Config, ids: list[int]) -> dict[str, int]:
    """Rewrite every registered version of cfg.mlflow.model_name without these visitors, in
    place in the artifact store, and tag the version `erased_at`. Returns models:/NAME/VERSION
    -> rows removed.

    In place rather than as new versions: aliases, the gate's and reports' version numbers and
    every stored model_uri keep naming the same version, and loading it gives the redacted
    model; a new version per erasure would leave the old ones to delete and break those links.
    """
    import tempfile

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from jobs.infra.tracking import init_tracking
    from jobs.recommenders.base import META_FILE
    from jobs.recommenders.pyfunc import load_saved

    init_tracking(cfg)
    client = mlflow.MlflowClient()
    name = cfg.mlflow.model_name
    removed: dict[str, int] = {}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for version in sorted(
        client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
    ):
        location = client.get_model_version_download_uri(name, version.version)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp))
            saved = next(local.rglob(META_FILE)).parent  # the recommender's own folder
            redacted, n = without_model_visitors(load_saved(saved), ids)
            if not n:
                continue
            shutil.rmtree(saved)
            redacted.save(saved)
            folder = saved.relative_to(local).as_posix()
            get_artifact_repository(location).log_artifacts(str(saved), folder)
        client.set_model_version_tag(name, version.version, "erased_at", stamp)
        removed[f"models:/{name}/{version.version}"] = n
    return removed


def erase(cfg: Config, raw_ids: list[str], key: bytes | None, client=None) -> dict:
    """Add the visitors to the erasure list and remove their rows from every store: the lake,
    the published exports on S3 (`client`, default: one for cfg.storage) and the registered
    models. Returns the erasure log entry."""
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
    users = export_users(ids, raw_ids, key, text_ids)
    for folder in _lake_exports(lake):
        n = _rewrite_export(folder, users)
        if n:
            removed[str(folder)] = n
    if client is None:
        from jobs.infra.storage import s3_client

        client = s3_client(cfg.storage)
    removed.update(erase_published(client, cfg.storage, users))
    removed.update(redact_registered_models(cfg, ids))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    # The log names places and counts, never the ids: it must not re-create what it erased.
    entry = {
        "erased_visitors": len(ids),
        "rows_removed": removed,
        "rows_removed_by_store": _by_store(removed),
        "at": stamp,
    }
    write_json_atomic(lake.root / "erasure" / "log" / f"{stamp}.json", entry)
    return entry


def _by_store(removed: dict[str, int]) -> dict[str, int]:
    stores = Counter()
    for place, n in removed.items():
        stores[
            "s3"
            if place.startswith("s3://")
            else "mlflow"
            if place.startswith("models:/")
            else "lake"
        ] += n
    return dict(stores)


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
