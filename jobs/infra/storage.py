"""Publication to S3-compatible object storage with boto3, all or nothing.

Layout under ``s3://BUCKET/PREFIX/``:

    <dataset>/dt=YYYY-MM-DD/run=RUN_ID/<files>      the export of one attempt
    <dataset>/dt=YYYY-MM-DD/run=RUN_ID/_manifest.json
    <dataset>/latest.json                            points at the newest complete run
    shadow/<dataset>/dt=YYYY-MM-DD/run=RUN_ID/...   a gated challenger's lists; no latest.json

Files are uploaded (multipart above 8 MB, retried), then the manifest, then every object is
verified (size and sha256 metadata), and only then ``latest.json`` moves. A consumer that reads
``latest.json`` first therefore never sees a partial export. Older runs of the same date are
deleted only after the new one is live.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from jobs.infra.config import StorageConfig

MANIFEST = "_manifest.json"
LATEST = "latest.json"


class PublicationError(RuntimeError):
    """An upload could not be verified; latest.json was not touched."""


def s3_client(storage: StorageConfig):
    """A boto3 S3 client for the configured endpoint; credentials from the environment."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url,
        region_name=storage.region,
        config=BotoConfig(
            retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}
        ),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Publication:
    bucket: str
    prefix: str  # the run's folder, ends without a slash
    manifest: dict[str, Any]
    latest: dict[str, Any] | None  # None: published without moving latest.json (shadow)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"


def dataset_prefix(storage: StorageConfig, dataset: str) -> str:
    return "/".join(p for p in (storage.prefix.strip("/"), dataset) if p)


def publish(
    client,
    storage: StorageConfig,
    dataset: str,
    run_date: date,
    run_id: str,
    files: list[Path],
    facts: dict[str, Any],
    move_latest: bool = True,
) -> Publication:
    """Upload `files` as one run of `dataset` for `run_date`, verify, then move latest.json
    (unless `move_latest` is False: consumers following latest.json never see this run).

    `facts` (counts, model version, config hash, ...) go into the manifest as they are.
    """
    from boto3.s3.transfer import TransferConfig

    root = dataset_prefix(storage, dataset)
    run_prefix = f"{root}/dt={run_date.isoformat()}/run={run_id}"
    transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    entries = []
    for path in sorted(files):
        checksum = sha256_of(path)
        key = f"{run_prefix}/{path.name}"
        client.upload_file(
            str(path),
            storage.bucket,
            key,
            Config=transfer,
            ExtraArgs={"Metadata": {"sha256": checksum}},
        )
        entries.append({"key": key, "size": path.stat().st_size, "sha256": checksum})
    manifest = {
        "dataset": dataset,
        "logical_date": run_date.isoformat(),
        "run_id": run_id,
        "files": entries,
        **facts,
    }
    client.put_object(
        Bucket=storage.bucket,
        Key=f"{run_prefix}/{MANIFEST}",
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    _verify(client, storage.bucket, entries)
    latest = None
    if move_latest:
        latest = {
            "logical_date": run_date.isoformat(),
            "run_id": run_id,
            "prefix": f"s3://{storage.bucket}/{run_prefix}/",
            "manifest": f"s3://{storage.bucket}/{run_prefix}/{MANIFEST}",
        }
        client.put_object(
            Bucket=storage.bucket,
            Key=f"{root}/{LATEST}",
            Body=json.dumps(latest, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )
    _delete_other_runs(client, storage.bucket, f"{root}/dt={run_date.isoformat()}/", run_prefix)
    return Publication(bucket=storage.bucket, prefix=run_prefix, manifest=manifest, latest=latest)


def _verify(client, bucket: str, entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        head = client.head_object(Bucket=bucket, Key=entry["key"])
        size, checksum = head["ContentLength"], head.get("Metadata", {}).get("sha256")
        if size != entry["size"] or checksum != entry["sha256"]:
            raise PublicationError(
                f"s3://{bucket}/{entry['key']}: stored {size} bytes sha256={checksum}, "
                f"expected {entry['size']} bytes sha256={entry['sha256']}; latest.json untouched"
            )


def _delete_other_runs(client, bucket: str, date_prefix: str, keep_prefix: str | None) -> None:
    """Delete every object under date_prefix, except those of the run at keep_prefix."""
    paginator = client.get_paginator("list_objects_v2")
    stale = [
        {"Key": obj["Key"]}
        for page in paginator.paginate(Bucket=bucket, Prefix=date_prefix)
        for obj in page.get("Contents", [])
        if keep_prefix is None or not obj["Key"].startswith(keep_prefix + "/")
    ]
    for start in range(0, len(stale), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": stale[start : start + 1000]})


def remove_date(client, storage: StorageConfig, dataset: str, run_date: date) -> None:
    """Delete every run of `dataset` for `run_date` (a rerun that no longer produces it)."""
    root = dataset_prefix(storage, dataset)
    _delete_other_runs(client, storage.bucket, f"{root}/dt={run_date.isoformat()}/", None)


def apply_retention(
    client, storage: StorageConfig, dataset: str, run_date: date, keep_days: int
) -> list[str]:
    """Delete the publications of all but the `keep_days` newest logical dates (and run_date).

    Call only after a publication succeeded. Returns the deleted dt= prefixes.
    """
    root = dataset_prefix(storage, dataset)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=f"{root}/dt=", Delimiter="/"
    )
    dates = sorted(
        {p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])}, reverse=True
    )
    keep = set(dates[:keep_days]) | {f"{root}/dt={run_date.isoformat()}/"}
    stale = [d for d in dates if d not in keep]
    for prefix in stale:
        _delete_other_runs(client, storage.bucket, prefix, keep_prefix=None)
    return stale
