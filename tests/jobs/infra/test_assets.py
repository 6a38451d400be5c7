"""The published datasets' Assets: named and addressed from the config; an event per dataset
only when the export moved latest.json."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest

from jobs.infra.assets import announce_release, published_assets
from jobs.infra.config import StorageConfig

STORAGE = StorageConfig(bucket="recs", prefix="nightly")
PUBLISHED = {
    "logical_date": "2015-09-18",
    "run_id": "manual__2015-09-18T000000-1",
    "release": "s3://recs/nightly/latest.json",
    "datasets": {
        "recommendations": "s3://recs/nightly/recommendations/dt=2015-09-18/run=r/",
        "similar_items": "s3://recs/nightly/similar_items/dt=2015-09-18/run=r/",
    },
}


def _announce(latest_moved: bool) -> dict[str, dict]:
    ti = SimpleNamespace(xcom_pull=lambda task_ids: {**PUBLISHED, "latest_moved": latest_moved})
    events = defaultdict(SimpleNamespace)
    outlets = published_assets(STORAGE)
    announce_release(ti, outlets, events)
    return {asset.name: events[asset].extra for asset in outlets}


def test_each_dataset_is_an_asset_at_its_latest_json():
    assert {a.name: a.uri for a in published_assets(STORAGE)} == {
        "nightly_recs.recommendations": "s3://recs/nightly/recommendations/latest.json",
        "nightly_recs.similar_items": "s3://recs/nightly/similar_items/latest.json",
    }


def test_a_moved_latest_json_gives_each_asset_an_event_naming_its_run():
    extras = _announce(latest_moved=True)
    assert extras["nightly_recs.similar_items"] == {
        "logical_date": "2015-09-18",
        "run_id": "manual__2015-09-18T000000-1",
        "release": "s3://recs/nightly/latest.json",
        "prefix": PUBLISHED["datasets"]["similar_items"],
    }
    assert extras["nightly_recs.recommendations"]["prefix"].endswith(
        "recommendations/dt=2015-09-18/run=r/"
    )


def test_a_backfill_that_leaves_latest_json_emits_nothing():
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="newer date: no Asset event"):
        _announce(latest_moved=False)
