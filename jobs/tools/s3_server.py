"""A local S3-compatible endpoint (moto's HTTP server) whose objects survive restarts.

moto keeps objects in memory; this wrapper restores them from a folder at start and writes them
back on SIGTERM/SIGINT, so what `make demo` published can still be listed afterwards
(`make s3` starts it again). Creates the configured bucket.

    python -m jobs.tools.s3_server --config configs/local.yaml [--state-dir .local/s3]
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from urllib.parse import urlparse

from jobs.infra.config import load_config
from jobs.infra.storage import s3_client

# moto accepts any credentials; boto3 only needs some to sign requests.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def restore(client, state_dir: Path) -> int:
    """Upload every file under state_dir/<bucket>/<key> back into <bucket>; returns the count."""
    count = 0
    for bucket_dir in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        _ensure_bucket(client, bucket_dir.name)
        for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
            client.upload_file(str(path), bucket_dir.name, path.relative_to(bucket_dir).as_posix())
            count += 1
    return count


def snapshot(client, state_dir: Path) -> int:
    """Write every object of every bucket to state_dir/<bucket>/<key>; returns the count."""
    import shutil

    tmp = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    for bucket in client.list_buckets()["Buckets"]:
        (tmp / bucket["Name"]).mkdir(parents=True, exist_ok=True)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                target = tmp / bucket["Name"] / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket["Name"], obj["Key"], str(target))
                count += 1
    shutil.rmtree(state_dir, ignore_errors=True)
    tmp.rename(state_dir)
    return count


def _ensure_bucket(client, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def main(argv: list[str] | None = None) -> int:
    from moto.server import ThreadedMotoServer

    parser = argparse.ArgumentParser(description="Local S3 endpoint (moto) with persistence.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--state-dir", default=None, help="default: <lake>/../s3")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    endpoint = urlparse(cfg.storage.endpoint_url or "")
    if endpoint.hostname not in ("127.0.0.1", "localhost") or endpoint.port is None:
        raise SystemExit(
            f"storage.endpoint_url {cfg.storage.endpoint_url!r} is not a local "
            "http://127.0.0.1:PORT endpoint; nothing to start"
        )
    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    state_dir = Path(args.state_dir) if args.state_dir else cfg.paths.lake.parent / "s3"
    state_dir.mkdir(parents=True, exist_ok=True)

    server = ThreadedMotoServer(ip_address=endpoint.hostname, port=endpoint.port, verbose=False)
    server.start()
    client = s3_client(cfg.storage)
    restored = restore(client, state_dir)
    _ensure_bucket(client, cfg.storage.bucket)
    print(
        f"S3 endpoint {cfg.storage.endpoint_url} up, bucket {cfg.storage.bucket}, "
        f"{restored} objects restored from {state_dir}",
        flush=True,
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    saved = snapshot(client, state_dir)
    server.stop()
    print(f"S3 endpoint stopped, {saved} objects saved to {state_dir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
