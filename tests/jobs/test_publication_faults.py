"""Attacks on publication (issue 22, items 1 and 2), against the real `publish` and export code
and a real S3 endpoint (moto's server). The only stand-in is a wrapper around the boto3 client
that injects the fault: a stall, a kill, a corruption. Each test asserts what a consumer that
reads the pointers sees: a complete run whose stored bytes match its manifest, never a mix.
docs/reliability.md lists them."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import date

import numpy as np
import pandas as pd
import pytest

from jobs import export
from jobs.export import ExportInputs, IdNames
from jobs.infra.config import load_config
from jobs.infra.storage import PublicationError, apply_retention, publish
from jobs.recommenders.base import Fallback
from jobs.recommenders.popularity import PopularityRecommender

DAY = date(2015, 9, 18)


class _Wrapped:
    """The real client, with `before` and `after` hooks around named calls."""

    def __init__(self, client, before=None, after=None):
        self._client, self._before, self._after = client, before or {}, after or {}

    def __getattr__(self, name):
        call = getattr(self._client, name)
        if name not in self._before and name not in self._after:
            return call

        def hooked(*args, **kwargs):
            if name in self._before:
                self._before[name](*args, **kwargs)
            try:
                result = call(*args, **kwargs)
            except Exception:
                if name in self._after:
                    self._after[name](*args, failed=True, **kwargs)
                raise
            if name in self._after:
                self._after[name](*args, failed=False, **kwargs)
            return result

        return hooked


def _files(tmp_path, contents):
    paths = []
    for name, body in contents.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        paths.append(path)
    return paths


def _get(client, bucket, key_or_uri):
    key = key_or_uri.removeprefix(f"s3://{bucket}/")
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _whole(client, bucket, manifest_uri) -> dict:
    """The manifest at `manifest_uri`, after checking every file it lists is stored as listed."""
    manifest = json.loads(_get(client, bucket, manifest_uri))
    for entry in manifest["files"]:
        body = _get(client, bucket, entry["key"])
        assert (len(body), hashlib.sha256(body).hexdigest()) == (entry["size"], entry["sha256"])
    return manifest


def _latest_run(client, bucket, dataset="recs") -> str:
    pointer = json.loads(_get(client, bucket, f"nightly/{dataset}/latest.json"))
    return _whole(client, bucket, pointer["manifest"])["run_id"]


# -- one dataset, straight through publish --------------------------------------------------


def test_two_writers_of_one_date_leave_the_pointer_on_a_whole_run(bucket, tmp_path):
    """A moves its pointer, then pauses until B has got as far as it can; before the lock,
    each deleted the other's run after moving the pointer, leaving it naming nothing."""
    client, storage = bucket
    a_moved, b_tried = threading.Event(), threading.Event()

    def a_pause(*args, failed, **kwargs):
        if kwargs["Key"] == "nightly/recs/latest.json":
            a_moved.set()
            b_tried.wait(10)

    def b_signal(*args, failed, **kwargs):
        # B reached the pointer (no lock) or found the date's lock held.
        if kwargs["Key"] == "nightly/recs/latest.json" or failed:
            b_tried.set()

    files = _files(tmp_path, {"p.jsonl": b"same rows\n"})
    errors = []

    def run_a():
        try:
            publish(
                _Wrapped(client, after={"put_object": a_pause}),
                storage,
                "recs",
                DAY,
                "a",
                files,
                {},
            )
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    a = threading.Thread(target=run_a)
    a.start()
    assert a_moved.wait(10)
    publish(
        _Wrapped(client, after={"put_object": b_signal}),
        storage,
        "recs",
        DAY,
        "b",
        files,
        {},
        lock_wait=20,
    )
    a.join(20)
    assert errors == []
    assert _latest_run(client, storage.bucket) == "b"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=storage.bucket)["Contents"]]
    assert not [k for k in keys if "run=a/" in k or "/_locks/" in k]


def test_a_stalled_attempt_that_resumes_moves_no_pointer_and_deletes_nothing(bucket, tmp_path):
    """A uploads, stalls just before its pointer write past its lock's expiry; B takes over and
    publishes; A resumes and must neither point at its own (deleted) run nor delete B's."""
    client, storage = bucket
    a_stalled, b_done = threading.Event(), threading.Event()

    def a_stall(*args, **kwargs):
        if kwargs["Key"] == "nightly/recs/latest.json":
            a_stalled.set()
            b_done.wait(20)

    errors = []

    def run_a():
        files = _files(tmp_path / "a", {"p.jsonl": b"attempt a\n"})
        wrapped = _Wrapped(client, before={"put_object": a_stall})
        try:
            publish(wrapped, storage, "recs", DAY, "try1", files, {}, lock_ttl=1)
        except PublicationError as error:
            errors.append(error)

    a = threading.Thread(target=run_a)
    a.start()
    assert a_stalled.wait(10)
    files = _files(tmp_path / "b", {"p.jsonl": b"attempt b\n"})
    publish(client, storage, "recs", DAY, "try2", files, {}, lock_wait=20)
    b_done.set()
    a.join(20)
    assert len(errors) == 1 and "another attempt" in str(errors[0])
    assert _latest_run(client, storage.bucket) == "try2"
    assert _get(client, storage.bucket, "nightly/recs/dt=2015-09-18/run=try2/p.jsonl") == (
        b"attempt b\n"
    )


def test_same_size_corruption_in_the_store_is_caught_and_the_good_run_survives(bucket, tmp_path):
    """After each upload the stored object is replaced by other bytes of the same size, with
    the uploader's metadata and a checksum of its own: only the store's checksum tells."""
    client, storage = bucket
    good = _files(tmp_path / "good", {"p.jsonl": b"good rows\n"})
    publish(client, storage, "recs", date(2015, 9, 17), "good", good, {})

    def corrupt(filename, bucket_name, key, failed, **kwargs):
        head = client.head_object(Bucket=bucket_name, Key=key)
        client.put_object(
            Bucket=bucket_name,
            Key=key,
            Body=b"X" * head["ContentLength"],
            Metadata=head["Metadata"],
            ChecksumAlgorithm="SHA256",
        )

    new = _files(tmp_path / "new", {"p.jsonl": b"next rows\n"})
    with pytest.raises(PublicationError, match=r"dt=2015-09-18/run=bad/p.jsonl: .*no pointer"):
        publish(
            _Wrapped(client, after={"upload_file": corrupt}), storage, "recs", DAY, "bad", new, {}
        )
    assert _latest_run(client, storage.bucket) == "good"
    assert _get(client, storage.bucket, "nightly/recs/dt=2015-09-17/run=good/p.jsonl") == (
        b"good rows\n"
    )


def test_an_object_deleted_before_verification_fails_naming_it(bucket, tmp_path):
    client, storage = bucket
    good = _files(tmp_path / "good", {"p.jsonl": b"good rows\n"})
    publish(client, storage, "recs", date(2015, 9, 17), "good", good, {})

    def delete(filename, bucket_name, key, failed, **kwargs):
        client.delete_object(Bucket=bucket_name, Key=key)

    new = _files(tmp_path / "new", {"p.jsonl": b"next rows\n"})
    with pytest.raises(PublicationError, match=r"run=gone/p.jsonl: uploaded but no longer"):
        publish(
            _Wrapped(client, after={"upload_file": delete}), storage, "recs", DAY, "gone", new, {}
        )
    assert _latest_run(client, storage.bucket) == "good"


def test_retention_never_deletes_the_run_a_pointer_names(bucket, tmp_path):
    client, storage = bucket
    files = _files(tmp_path, {"a.jsonl": b"1\n"})
    for day in (1, 2, 3, 4):
        publish(client, storage, "recs", date(2015, 9, day), f"r{day}", files, {})
    # An operator moved latest back to the 1st (a bad night since), then the 4th's retention.
    publish(client, storage, "recs", date(2015, 9, 1), "r1b", files, {}, force_latest=True)
    deleted = apply_retention(client, storage, "recs", date(2015, 9, 4), keep_days=2)
    assert deleted == ["nightly/recs/dt=2015-09-02/"]
    assert _latest_run(client, storage.bucket) == "r1b"


# -- both datasets, through the export stage ------------------------------------------------


@pytest.fixture()
def export_cfg(s3_endpoint, write_overlay, request):
    from jobs.infra.storage import s3_client

    name = "f-" + request.node.name.lower().replace("_", "-")[:50]
    cfg = load_config(write_overlay(s3_endpoint, name), environ={})
    s3_client(cfg.storage).create_bucket(Bucket=name)
    return cfg


def _inputs(version: str) -> ExportInputs:
    """Three visitors, six items in two categories; the version tells the nights apart."""
    model = PopularityRecommender(np.arange(100, 106))
    catalog = pd.DataFrame(
        {"item_id": np.arange(100, 106), "category_id": [1, 1, 1, 2, 2, 2], "available": True}
    )
    return ExportInputs(
        recommender=model,
        model_version=version,
        visitors=np.array([1, 2, 3]),
        exclude=pd.DataFrame({"visitor_id": [1], "item_id": [100]}),
        blocked=np.array([], dtype=np.int64),
        fallback=Fallback(model.popular_items),
        catalog=catalog,
        reranker=None,
        names=IdNames({}),
    )


def _export(monkeypatch, cfg, day, run_id, client=None, **kwargs):
    """The real export stage with tiny inputs (model `night-<day>`) and, if given, a client."""
    import jobs.infra.storage as storage

    monkeypatch.setattr(export, "load_inputs", lambda cfg, lake, d: _inputs(f"night-{d}"))
    if client is not None:
        monkeypatch.setattr(storage, "s3_client", lambda _storage: client)
    return export.run(cfg, day, run_id=run_id, **kwargs)


def _release(cfg) -> dict:
    """What a consumer sees from the release pointer: dataset -> (date, run, model version),
    every listed file checked against its manifest."""
    from jobs.infra.storage import s3_client

    client, bucket = s3_client(cfg.storage), cfg.storage.bucket
    pointer = json.loads(_get(client, bucket, "nightly/latest.json"))
    seen = {}
    for dataset, where in pointer["datasets"].items():
        manifest = _whole(client, bucket, where["manifest"])
        seen[dataset] = (manifest["logical_date"], manifest["run_id"], manifest["model_version"])
    return seen


def test_a_kill_between_the_datasets_leaves_the_release_on_the_older_pair(export_cfg, monkeypatch):
    from jobs.infra.storage import s3_client

    _export(monkeypatch, export_cfg, date(2015, 9, 17), "n17")
    client = s3_client(export_cfg.storage)

    def kill(filename, bucket_name, key, **kwargs):
        if "/similar_items/" in key:
            raise KeyboardInterrupt("killed between the datasets")

    with pytest.raises(KeyboardInterrupt):
        _export(monkeypatch, export_cfg, DAY, "n18", _Wrapped(client, before={"upload_file": kill}))
    # Neither the datasets' own pointers split, nor the release that names both.
    assert _latest_run(client, export_cfg.storage.bucket, "recommendations") == "n17"
    assert _latest_run(client, export_cfg.storage.bucket, "similar_items") == "n17"
    older = ("2015-09-17", "n17", "night-2015-09-17")
    assert _release(export_cfg) == {"recommendations": older, "similar_items": older}


def test_a_backfill_publishes_its_date_and_leaves_latest_on_the_newer_night(
    export_cfg, monkeypatch, caplog
):
    from jobs.infra.storage import s3_client

    _export(monkeypatch, export_cfg, date(2015, 9, 9), "n09")
    backfill = _export(monkeypatch, export_cfg, date(2015, 8, 20), "b20")
    client, bucket = s3_client(export_cfg.storage), export_cfg.storage.bucket
    assert _latest_run(client, bucket, "recommendations") == "n09"
    newer = ("2015-09-09", "n09", "night-2015-09-09")
    assert _release(export_cfg) == {"recommendations": newer, "similar_items": newer}
    assert backfill["latest_moved"] is False and backfill["recommendations"]["latest"] is None
    assert "latest.json names a newer date and was not moved" in caplog.text
    backfilled = _whole(client, bucket, backfill["recommendations"]["uri"] + "_manifest.json")
    assert backfilled["logical_date"] == "2015-08-20"

    forced = _export(monkeypatch, export_cfg, date(2015, 8, 20), "b20-forced", force_latest=True)
    assert forced["latest_moved"] is True
    back = ("2015-08-20", "b20-forced", "night-2015-08-20")
    assert _release(export_cfg) == {"recommendations": back, "similar_items": back}
    assert "--force-latest" in caplog.text


def test_two_exports_of_one_date_at_once_both_finish_and_the_release_is_whole(
    export_cfg, monkeypatch
):
    # Both attempts share the lake and its staging root; each must keep to its own folder.
    monkeypatch.setattr(export, "load_inputs", lambda cfg, lake, d: _inputs(f"night-{d}"))
    errors = []

    def attempt(run_id):
        try:
            export.run(export_cfg, DAY, run_id=run_id)
        except Exception as error:  # surfaced by the assertion below
            errors.append((run_id, error))

    threads = [threading.Thread(target=attempt, args=(r,)) for r in ("x1", "x2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    seen = _release(export_cfg)
    assert seen["recommendations"] == seen["similar_items"]
    assert seen["recommendations"][1] in {"x1", "x2"}
    lake = export_cfg.paths.lake
    assert not list((lake / "exports" / "_staging").glob("*"))
    assert sorted(p.name for p in (lake / f"exports/recommendations/dt={DAY}").iterdir()) == [
        "part-00000.jsonl",
        "part-00000.parquet",
    ]
