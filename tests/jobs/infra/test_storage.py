import json
from datetime import date

import pytest

from jobs.infra.paths import sha256_file
from jobs.infra.storage import (
    PublicationError,
    apply_retention,
    publish,
    remove_date,
    s3_sha256_of,
)

DAY = date(2015, 9, 18)


def _files(tmp_path, contents):
    paths = []
    for name, body in contents.items():
        path = tmp_path / name
        path.write_bytes(body)
        paths.append(path)
    return paths


def _keys(client, bucket):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _latest(client, storage):
    body = client.get_object(Bucket=storage.bucket, Key="nightly/recs/latest.json")["Body"]
    return json.loads(body.read())


def test_publish_uploads_files_then_manifest_then_latest(bucket, tmp_path):
    client, storage = bucket
    files = _files(tmp_path, {"part-00000.parquet": b"abc", "part-00000.jsonl": b"{}\n"})
    pub = publish(client, storage, "recs", DAY, "r1", files, {"users": 2})
    run = "nightly/recs/dt=2015-09-18/run=r1"
    assert _keys(client, storage.bucket) == [
        f"{run}/_manifest.json",
        f"{run}/part-00000.jsonl",
        f"{run}/part-00000.parquet",
        "nightly/recs/latest.json",
    ]
    manifest = json.loads(
        client.get_object(Bucket=storage.bucket, Key=f"{run}/_manifest.json")["Body"].read()
    )
    assert manifest["users"] == 2
    assert {f["key"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        f"{run}/part-00000.jsonl": (3, sha256_file(files[1])),
        f"{run}/part-00000.parquet": (3, sha256_file(files[0])),
    }
    assert _latest(client, storage)["manifest"] == f"s3://{storage.bucket}/{run}/_manifest.json"
    assert pub.uri == f"s3://{storage.bucket}/{run}/"


def test_a_rerun_replaces_the_dates_earlier_run(bucket, tmp_path):
    client, storage = bucket
    files = _files(tmp_path, {"a.jsonl": b"1\n"})
    publish(client, storage, "recs", DAY, "r1", files, {})
    publish(client, storage, "recs", DAY, "r2", files, {})
    keys = _keys(client, storage.bucket)
    assert not [k for k in keys if "run=r1" in k]
    assert _latest(client, storage)["run_id"] == "r2"


class _FailingClient:
    """Passes calls through to a real client but fails the n-th upload, as a dying endpoint."""

    def __init__(self, client, fail_on_upload: int):
        self._client, self._left = client, fail_on_upload

    def upload_file(self, *args, **kwargs):
        self._left -= 1
        if self._left == 0:
            raise ConnectionError("endpoint went away")
        return self._client.upload_file(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_failure_midway_leaves_latest_untouched_and_the_retry_completes(bucket, tmp_path):
    client, storage = bucket
    old = _files(tmp_path, {"old.jsonl": b"old\n"})
    publish(client, storage, "recs", date(2015, 9, 17), "r0", old, {})
    new = _files(tmp_path, {"p1.jsonl": b"1\n", "p2.jsonl": b"2\n"})
    with pytest.raises(ConnectionError):
        publish(_FailingClient(client, fail_on_upload=2), storage, "recs", DAY, "r1-try1", new, {})
    assert _latest(client, storage)["run_id"] == "r0"
    publish(client, storage, "recs", DAY, "r1-try2", new, {})
    assert _latest(client, storage)["run_id"] == "r1-try2"
    assert not [k for k in _keys(client, storage.bucket) if "try1" in k]


def test_an_object_the_store_holds_no_sha256_for_is_not_published(bucket, tmp_path):
    client, storage = bucket

    class _Unchecked(_FailingClient):
        def upload_file(self, filename, bucket_name, key, **kwargs):
            kwargs["ExtraArgs"] = {}  # botocore's default CRC32 only: the store's sha256 is absent
            return self._client.upload_file(filename, bucket_name, key, **kwargs)

    files = _files(tmp_path, {"p.jsonl": b"1\n"})
    with pytest.raises(PublicationError, match=r"run=r1/p.jsonl: .* sha256 None.*no pointer moved"):
        publish(_Unchecked(client, 0), storage, "recs", DAY, "r1", files, {})
    assert "nightly/recs/latest.json" not in _keys(client, storage.bucket)


def test_a_multipart_upload_is_verified_by_its_composite_checksum(bucket, tmp_path):
    client, storage = bucket
    part = 5 << 20  # S3's smallest part
    files = _files(tmp_path, {"big.parquet": bytes(range(256)) * (2 * part // 256 + 7)})
    assert s3_sha256_of(files[0], part).endswith("-3")
    publish(client, storage, "recs", DAY, "r1", files, {}, part_size=part)
    head = client.head_object(
        Bucket=storage.bucket,
        Key="nightly/recs/dt=2015-09-18/run=r1/big.parquet",
        ChecksumMode="ENABLED",
    )
    assert head["ChecksumSHA256"].partition("-")[0] == s3_sha256_of(files[0], part)[:-2]
    assert _latest(client, storage)["run_id"] == "r1"


def test_retention_keeps_the_newest_days_and_the_run_date(bucket, tmp_path):
    client, storage = bucket
    files = _files(tmp_path, {"a.jsonl": b"1\n"})
    for day in (1, 2, 3, 4):
        publish(client, storage, "recs", date(2015, 9, day), f"r{day}", files, {})
    deleted = apply_retention(client, storage, "recs", date(2015, 9, 1), keep_days=2)
    assert deleted == ["nightly/recs/dt=2015-09-02/"]
    dates = {k.split("/")[2] for k in _keys(client, storage.bucket) if "/dt=" in k}
    assert dates == {"dt=2015-09-01", "dt=2015-09-03", "dt=2015-09-04"}


def test_a_shadow_publication_leaves_latest_alone_and_a_date_can_be_removed(bucket, tmp_path):
    client, storage = bucket
    files = _files(tmp_path, {"a.jsonl": b"1\n"})
    publish(client, storage, "recs", DAY, "r1", files, {})
    pub = publish(client, storage, "shadow/recs", DAY, "r1", files, {}, move_latest=False)
    assert pub.latest is None
    shadow_run = "nightly/shadow/recs/dt=2015-09-18/run=r1"
    assert [k for k in _keys(client, storage.bucket) if k.startswith("nightly/shadow/")] == [
        f"{shadow_run}/_manifest.json",
        f"{shadow_run}/a.jsonl",
    ]
    assert _latest(client, storage)["run_id"] == "r1"  # the live dataset's pointer only
    remove_date(client, storage, "shadow/recs", DAY)
    assert not [k for k in _keys(client, storage.bucket) if k.startswith("nightly/shadow/")]
    assert "nightly/recs/latest.json" in _keys(client, storage.bucket)


def test_a_named_airflow_connection_gives_endpoint_and_credentials(s3_endpoint, monkeypatch):
    # No AWS_* variables and a config endpoint that answers nothing: only the connection's work.
    from jobs.infra.config import StorageConfig
    from jobs.infra.storage import s3_client

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    connection = {
        "conn_type": "aws",
        "login": "conn-key",
        "password": "conn-secret",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_RECS_S3_TEST", json.dumps(connection))
    storage = StorageConfig(endpoint_url="http://127.0.0.1:9", bucket="from-conn")
    client = s3_client(storage, aws_conn_id="recs_s3_test")
    assert client.meta.endpoint_url == s3_endpoint
    assert client.meta.region_name == "eu-west-1"
    client.create_bucket(
        Bucket="from-conn", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    assert "from-conn" in {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert client._request_signer._credentials.access_key == "conn-key"


def test_a_named_connection_that_does_not_exist_is_an_error(monkeypatch):
    from jobs.infra.config import StorageConfig
    from jobs.infra.storage import PublicationError, s3_client

    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    with pytest.raises(PublicationError, match="'no_such_conn', which does not exist"):
        s3_client(StorageConfig(bucket="recs"), aws_conn_id="no_such_conn")
