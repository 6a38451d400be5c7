"""Publication to S3-compatible object storage with boto3: a protocol, not a sequence.

Layout under ``s3://BUCKET/PREFIX/``:

    latest.json                                      the release: names one run of every dataset
    <dataset>/dt=YYYY-MM-DD/run=RUN_ID/<files>      the export of one attempt
    <dataset>/dt=YYYY-MM-DD/run=RUN_ID/_manifest.json
    <dataset>/latest.json                            the dataset's own pointer (after the release)
    <dataset>/_locks/dt=YYYY-MM-DD.json              held while one attempt writes that date
    shadow/<dataset>/dt=YYYY-MM-DD/run=RUN_ID/...   a gated challenger's lists; no pointer

What holds (docs/reliability.md; tests/jobs/test_publication_faults.py attacks each):

- One writer per dataset and date: a lock object created with ``If-None-Match: *``, renewed after
  every upload, taken over only once expired (with ``If-Match`` on the expired lock's ETag).
- Integrity from the store: every object is uploaded with ``ChecksumAlgorithm=SHA256``; before a
  pointer moves, each object's stored checksum (and size) is read back and compared with the
  local file's sha256 (the composite of its parts when multipart).
- Pointers move by compare-and-swap (``If-Match`` on the ETag seen when the lock was taken), only
  forward in logical date unless forced, and only while the lock is still ours.
- Nothing a pointer names is ever deleted: not by the date's cleanup, not by retention.

The remaining window: a writer that stalls longer than the lock's TTL between its last check and
a delete may still delete; the TTL (minutes) against a check-to-write gap (milliseconds) keeps it
small, and the pointers themselves are never written without a successful compare-and-swap.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jobs.infra.config import StorageConfig
from jobs.infra.paths import sha256_file

log = logging.getLogger("storage")

MANIFEST = "_manifest.json"
LATEST = "latest.json"
LOCKS = "_locks"
PART_SIZE = 8 << 20  # multipart threshold and part size; the composite checksum depends on it
LOCK_TTL = 600.0  # seconds a silent writer keeps its lock; every upload renews it
LOCK_POLL = 0.5  # seconds between tries of a held lock


class PublicationError(RuntimeError):
    """The publication could not be completed safely; no pointer names anything unverified."""


def s3_client(storage: StorageConfig, aws_conn_id: str | None = None):
    """A boto3 S3 client for the configured storage.

    With `aws_conn_id` (an Airflow task passes `storage.aws_conn_id`), the credentials come from
    that Airflow `aws` connection through the amazon provider's hook (its keys, role or profile),
    and so do the endpoint and region when it names them (else the config's). Without it (a job
    run alone, the tools, the tests): the config's endpoint and region, and the credentials boto3
    finds in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the instance role).
    """
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}
    )
    if aws_conn_id is None:
        return boto3.client(
            "s3", endpoint_url=storage.endpoint_url, region_name=storage.region, config=config
        )
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = S3Hook(aws_conn_id=aws_conn_id, config=config)
    try:
        hook.get_connection(aws_conn_id)
    except AirflowNotFoundException:
        # The hook would fall back to the environment silently; a named connection must exist.
        raise PublicationError(
            f"storage.aws_conn_id names the Airflow connection {aws_conn_id!r}, which does not "
            f"exist: create it (AIRFLOW_CONN_{aws_conn_id.upper()} or Admin -> Connections), or "
            "set storage.aws_conn_id: null to take credentials from the environment"
        ) from None
    conn = hook.conn_config
    return hook.get_session(region_name=conn.region_name or storage.region).client(
        "s3",
        endpoint_url=conn.get_service_endpoint_url("s3") or storage.endpoint_url,
        config=config,
    )


def s3_sha256_of(path: Path, part_size: int = PART_SIZE, sha256: str | None = None) -> str:
    """The ChecksumSHA256 S3 stores for `path` uploaded by `publish`: base64 of the sha256 below
    `part_size` (`sha256`, the hex digest, if already known), else the composite (sha256 of the
    parts' sha256s) with its part count, ``-N``."""
    from s3transfer.utils import ChunksizeAdjuster

    size = path.stat().st_size
    if size < part_size:
        return base64.b64encode(bytes.fromhex(sha256 or sha256_file(path))).decode()
    # s3transfer widens parts past 10,000 of them; ask it, so the parts are the ones it sends.
    chunk = ChunksizeAdjuster().adjust_chunksize(part_size, size)
    parts = []
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            parts.append(hashlib.sha256(block).digest())
    return f"{base64.b64encode(hashlib.sha256(b''.join(parts)).digest()).decode()}-{len(parts)}"


def _same_checksum(stored: str | None, expected: str) -> bool:
    # AWS appends "-N" to a composite checksum, moto does not; base64 never contains "-".
    if not stored:
        return False
    value, _, parts = stored.partition("-")
    want, _, want_parts = expected.partition("-")
    return value == want and (not parts or parts == want_parts)


@dataclass(frozen=True)
class Publication:
    bucket: str
    prefix: str  # the run's folder, ends without a slash
    manifest: dict[str, Any]
    latest: dict[str, Any] | None  # the dataset pointer it now holds; None: not moved

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]


def dataset_prefix(storage: StorageConfig, dataset: str) -> str:
    return "/".join(p for p in (storage.prefix.strip("/"), dataset) if p)


def release_key(storage: StorageConfig) -> str:
    """The key of the release pointer: the one object a consumer reads first."""
    return "/".join(p for p in (storage.prefix.strip("/"), LATEST) if p)


def _lock_key(storage: StorageConfig, dataset: str, run_date: date) -> str:
    return f"{dataset_prefix(storage, dataset)}/{LOCKS}/dt={run_date.isoformat()}.json"


def _code(error) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _lost_race(error) -> bool:
    """A conditional write lost: the object changed (412), vanished (404) or is being written
    by someone else right now (409 ConditionalRequestConflict)."""
    return _code(error) in {"PreconditionFailed", "412", "NoSuchKey", "404", "409"} or (
        "Conflict" in _code(error)
    )


def _read_json(client, bucket: str, key: str) -> tuple[dict | None, str | None]:
    """(body, ETag) of a JSON object; (None, None) when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _code(error) in {"NoSuchKey", "404"}:
            return None, None
        raise
    return json.loads(obj["Body"].read()), obj["ETag"]


def _put_json(client, bucket: str, key: str, body: dict, etag: str | None) -> str | None:
    """Write `body` only if the object is still the one with `etag` (None: still absent).
    Returns the new ETag, or None when someone else changed it first."""
    from botocore.exceptions import ClientError

    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        return client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(body, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
            **condition,
        )["ETag"]
    except ClientError as error:
        if _lost_race(error):
            return None
        raise


class _Lock:
    """One writer per dataset and date: an object created only if absent, with an expiry."""

    def __init__(self, client, bucket: str, key: str, run_id: str, ttl: float):
        self.client, self.bucket, self.key, self.run_id, self.ttl = client, bucket, key, run_id, ttl
        self.token = uuid.uuid4().hex  # two attempts may share a run id; never a token
        self.etag: str | None = None

    def _body(self) -> dict:
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        return {"run_id": self.run_id, "token": self.token, "expires_at": expires.isoformat()}

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            self.etag = _put_json(self.client, self.bucket, self.key, self._body(), None)
            if self.etag:
                return
            held, etag = _read_json(self.client, self.bucket, self.key)
            if held is None:
                continue  # released between our two calls
            if datetime.fromisoformat(held["expires_at"]) < datetime.now(UTC):
                self.etag = _put_json(self.client, self.bucket, self.key, self._body(), etag)
                if self.etag:
                    log.warning(
                        "took over s3://%s/%s from run %s, expired at %s",
                        self.bucket,
                        self.key,
                        held["run_id"],
                        held["expires_at"],
                    )
                    return
                continue
            if time.monotonic() >= deadline:
                raise PublicationError(
                    f"s3://{self.bucket}/{self.key} is held by run {held['run_id']} until "
                    f"{held['expires_at']}: another attempt is publishing this date; "
                    "nothing was uploaded"
                )
            time.sleep(LOCK_POLL)

    def confirm(self) -> None:
        """Renew the expiry; PublicationError if another attempt took the lock over."""
        etag = _put_json(self.client, self.bucket, self.key, self._body(), self.etag)
        if etag is None:
            raise PublicationError(
                f"lost s3://{self.bucket}/{self.key} (silent past its {self.ttl:.0f} s expiry): "
                f"another attempt took over; run {self.run_id} moved no pointer from here on "
                "and deleted nothing"
            )
        self.etag = etag

    def release(self) -> None:
        held, _ = _read_json(self.client, self.bucket, self.key)
        if held is not None and held["token"] == self.token:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


class DateWriter:
    """The one writer of `datasets` for `run_date`: holds their locks (``with``) while it
    uploads and verifies runs, moves pointers and removes the date's other runs."""

    def __init__(
        self,
        client,
        storage: StorageConfig,
        datasets: list[str],
        run_date: date,
        run_id: str,
        lock_ttl: float = LOCK_TTL,
        lock_wait: float = LOCK_TTL,
        part_size: int = PART_SIZE,
    ):
        self.client, self.storage, self.bucket = client, storage, storage.bucket
        self.datasets = sorted(set(datasets))  # one order for everyone: no deadlock
        self.run_date, self.run_id, self.part_size = run_date, run_id, part_size
        self.lock_wait = lock_wait
        self._locks = [
            _Lock(client, self.bucket, _lock_key(storage, d, run_date), run_id, lock_ttl)
            for d in self.datasets
        ]
        self._seen: dict[str, str | None] = {}  # pointer key -> ETag when the lock was taken

    def __enter__(self) -> DateWriter:
        taken = []
        try:
            for lock in self._locks:
                lock.acquire(self.lock_wait)
                taken.append(lock)
        except BaseException:
            for lock in taken:
                lock.release()
            raise
        # Pointers are compared against what they were when this attempt became the writer:
        # an attempt that lost its lock and resumes cannot overwrite its successor's move.
        for key in [release_key(self.storage)] + [self._latest_key(d) for d in self.datasets]:
            self._seen[key] = _read_json(self.client, self.bucket, key)[1]
        return self

    def __exit__(self, *exc) -> None:
        for lock in reversed(self._locks):
            lock.release()

    def confirm(self) -> None:
        for lock in self._locks:
            lock.confirm()

    def _latest_key(self, dataset: str) -> str:
        return f"{dataset_prefix(self.storage, dataset)}/{LATEST}"

    def run_prefix(self, dataset: str) -> str:
        root = dataset_prefix(self.storage, dataset)
        return f"{root}/dt={self.run_date.isoformat()}/run={self.run_id}"

    def upload(self, dataset: str, files: list[Path], facts: dict[str, Any]) -> Publication:
        """Upload `files` and a manifest as this attempt's run of `dataset`, then verify every
        object against the store's own checksum. Moves no pointer."""
        from boto3.s3.transfer import TransferConfig

        if dataset not in self.datasets:
            raise ValueError(f"{dataset!r} is not locked by this writer ({self.datasets})")
        run_prefix = self.run_prefix(dataset)
        if run_prefix in self.pointed_runs(dataset):
            raise PublicationError(
                f"s3://{self.bucket}/{run_prefix}/ is live (a pointer names it): "
                f"run id {self.run_id} was used before; publish under a new one"
            )
        transfer = TransferConfig(
            multipart_threshold=self.part_size, multipart_chunksize=self.part_size
        )
        entries, expected = [], {}
        for path in sorted(files):
            key = f"{run_prefix}/{path.name}"
            size, digest = path.stat().st_size, sha256_file(path)
            client_checksum = s3_sha256_of(path, self.part_size, digest)
            self.client.upload_file(
                str(path),
                self.bucket,
                key,
                Config=transfer,
                ExtraArgs={"ChecksumAlgorithm": "SHA256"},
            )
            entries.append({"key": key, "size": size, "sha256": digest})
            expected[key] = (size, client_checksum)
            self.confirm()  # the heartbeat: a writer that stalls loses the lock
        manifest = {
            "dataset": dataset,
            "logical_date": self.run_date.isoformat(),
            "run_id": self.run_id,
            "files": entries,
            **facts,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        manifest_key = f"{run_prefix}/{MANIFEST}"
        self.client.put_object(
            Bucket=self.bucket,
            Key=manifest_key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )
        expected[manifest_key] = (
            len(body),
            base64.b64encode(hashlib.sha256(body).digest()).decode(),
        )
        self._verify(expected)
        return Publication(self.bucket, run_prefix, manifest, latest=None)

    def _verify(self, expected: dict[str, tuple[int, str]]) -> None:
        from botocore.exceptions import ClientError

        for key, (size, checksum) in expected.items():
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except ClientError as error:
                if _code(error) not in {"NoSuchKey", "404"}:
                    raise
                raise PublicationError(
                    f"s3://{self.bucket}/{key}: uploaded but no longer in the store (deleted "
                    "by someone else or a lifecycle rule?); no pointer moved"
                ) from error
            stored_size, stored = head["ContentLength"], head.get("ChecksumSHA256")
            if stored_size != size or not _same_checksum(stored, checksum):
                raise PublicationError(
                    f"s3://{self.bucket}/{key}: the store holds {stored_size} bytes with "
                    f"sha256 {stored}, the local file has {size} bytes with sha256 {checksum}; "
                    "no pointer moved"
                )

    def move_latest(
        self, pubs: list[Publication], release: bool = True, force: bool = False
    ) -> list[Publication]:
        """Point the release (when `release`) at `pubs` together, then each dataset's
        latest.json at its run: only forward in logical date (the same date replaces) unless
        `force`. Returns `pubs` with `latest` set where the dataset pointer moved."""
        day = self.run_date.isoformat()
        if release:
            pointer = {
                "logical_date": day,
                "run_id": self.run_id,
                "datasets": {
                    p.dataset: {"prefix": p.uri, "manifest": f"{p.uri}{MANIFEST}"} for p in pubs
                },
            }
            if not self._move(release_key(self.storage), pointer, force):
                return pubs
        moved = []
        for pub in pubs:
            pointer = {
                "logical_date": day,
                "run_id": self.run_id,
                "prefix": pub.uri,
                "manifest": f"{pub.uri}{MANIFEST}",
            }
            if self._move(self._latest_key(pub.dataset), pointer, force):
                pub = replace(pub, latest=pointer)
            moved.append(pub)
        return moved

    def _move(self, key: str, pointer: dict, force: bool) -> bool:
        etag, day = self._seen[key], self.run_date.isoformat()
        while True:
            self.confirm()
            current, now = _read_json(self.client, self.bucket, key)
            if now != etag and current and current["logical_date"] == day:
                # Moved since this attempt took the lock, by another attempt of this date:
                # the lock was not ours all along, so this attempt yields.
                raise PublicationError(
                    f"s3://{self.bucket}/{key} was moved to run {current['run_id']} of {day} "
                    f"while run {self.run_id} held the lock; this attempt moves nothing more"
                )
            etag = now  # another date's writer moved it: judge the move again
            newer = current and date.fromisoformat(current["logical_date"]) > self.run_date
            if newer and not force:
                log.warning(
                    "s3://%s/%s stays at %s (run %s), newer than %s; pass --force-latest to "
                    "move it back",
                    self.bucket,
                    key,
                    current["logical_date"],
                    current["run_id"],
                    self.run_date,
                )
                return False
            if newer:
                log.warning(
                    "forced: s3://%s/%s moves back from %s to %s",
                    self.bucket,
                    key,
                    current["logical_date"],
                    self.run_date,
                )
            written = _put_json(self.client, self.bucket, key, pointer, etag)
            if written:
                self._seen[key] = written
                return True

    def pointed_runs(self, dataset: str) -> set[str]:
        return pointed_runs(self.client, self.storage, dataset)

    def remove_other_runs(self, dataset: str) -> list[str]:
        """Delete the date's runs of `dataset` other than this attempt's and any a pointer
        names; returns the deleted keys."""
        self.confirm()
        root = dataset_prefix(self.storage, dataset)
        keep = self.pointed_runs(dataset) | {self.run_prefix(dataset)}
        return _delete_runs(self.client, self.bucket, f"{root}/dt={self.run_date}/", keep)


def pointed_runs(client, storage: StorageConfig, dataset: str) -> set[str]:
    """The run prefixes (keys, no trailing slash) of `dataset` that any pointer names."""
    runs = set()
    release, _ = _read_json(client, storage.bucket, release_key(storage))
    latest, _ = _read_json(client, storage.bucket, f"{dataset_prefix(storage, dataset)}/{LATEST}")
    for pointer in ((release or {}).get("datasets", {}).get(dataset), latest):
        if pointer:
            runs.add(pointer["prefix"].removeprefix(f"s3://{storage.bucket}/").rstrip("/"))
    return runs


def _delete_runs(client, bucket: str, date_prefix: str, keep: set[str]) -> list[str]:
    """Delete every object under date_prefix outside the run prefixes in `keep`."""
    paginator = client.get_paginator("list_objects_v2")
    stale = [
        obj["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=date_prefix)
        for obj in page.get("Contents", [])
        if not any(obj["Key"].startswith(run + "/") for run in keep)
    ]
    for start in range(0, len(stale), 1000):
        batch = [{"Key": k} for k in stale[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch})
    return stale


def publish(
    client,
    storage: StorageConfig,
    dataset: str,
    run_date: date,
    run_id: str,
    files: list[Path],
    facts: dict[str, Any],
    move_latest: bool = True,
    force_latest: bool = False,
    lock_ttl: float = LOCK_TTL,
    lock_wait: float = LOCK_TTL,
    part_size: int = PART_SIZE,
) -> Publication:
    """Publish one dataset's run for `run_date` under its lock: upload, verify, move its
    latest.json (unless `move_latest` is False, as for shadows; only forward in date unless
    `force_latest`), then delete the date's other runs no pointer names.

    `facts` (counts, model version, config hash, ...) go into the manifest as they are. The
    release pointer is not touched: export moves it for both datasets at once.
    """
    with DateWriter(
        client, storage, [dataset], run_date, run_id, lock_ttl, lock_wait, part_size
    ) as writer:
        pub = writer.upload(dataset, files, facts)
        if move_latest:
            (pub,) = writer.move_latest([pub], release=False, force=force_latest)
        writer.remove_other_runs(dataset)
    return pub


def remove_date(client, storage: StorageConfig, dataset: str, run_date: date) -> None:
    """Delete every run of `dataset` for `run_date` no pointer names (a rerun that no longer
    produces it), under the date's lock."""
    with DateWriter(client, storage, [dataset], run_date, "remove-date") as writer:
        root = dataset_prefix(storage, dataset)
        _delete_runs(client, storage.bucket, f"{root}/dt={run_date}/", writer.pointed_runs(dataset))


def apply_retention(
    client, storage: StorageConfig, dataset: str, run_date: date, keep_days: int
) -> list[str]:
    """Delete the publications of all but the `keep_days` newest logical dates (and run_date),
    except runs a pointer names and dates a live writer holds.

    Returns the dt= prefixes it deleted from.
    """
    root = dataset_prefix(storage, dataset)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=f"{root}/dt=", Delimiter="/"
    )
    dates = sorted(
        {p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])}, reverse=True
    )
    keep = set(dates[:keep_days]) | {f"{root}/dt={run_date.isoformat()}/"}
    pointed = pointed_runs(client, storage, dataset)
    deleted = []
    for prefix in (d for d in dates if d not in keep):
        day = date.fromisoformat(prefix.rstrip("/").rsplit("dt=", 1)[1])
        held, _ = _read_json(client, storage.bucket, _lock_key(storage, dataset, day))
        if held and datetime.fromisoformat(held["expires_at"]) > datetime.now(UTC):
            log.info("retention skips %s: run %s is writing it", prefix, held["run_id"])
            continue
        if _delete_runs(client, storage.bucket, prefix, pointed):
            deleted.append(prefix)
    return deleted
