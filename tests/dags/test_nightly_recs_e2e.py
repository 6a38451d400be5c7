"""End to end: the whole DAG through Airflow on a tiny generated shop, real Spark, MLflow, S3.

Run 1 validates, tunes, trains and publishes, with S3 through the Airflow connection the config
names and no AWS_* variable set, and announces both datasets' Assets. Run 2 reruns the same date
with a deliberately bad model (regularization so strong every factor is ~0, no tuning): the gate
blocks it against the champion, `gate` is skipped, the champion stays, and the export republishes
the same lists (same file checksums in the manifest) under a new run folder."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DAY = datetime(2015, 9, 18, tzinfo=UTC)
SCALE = "0.003"


def _get_json(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def _asset_events() -> dict[str, dict]:
    """Asset name -> the extra of its newest event, from Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .order_by(AssetEvent.timestamp)
            .all()
        )
    return {name: extra for name, extra in rows}


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_nightly_run_publishes_then_a_gated_rerun_keeps_the_champion(
    dagbag, tmp_path, s3_endpoint, write_overlay, dag_run_env, monkeypatch
):
    import mlflow

    from jobs import ingest
    from jobs.infra.config import load_config
    from jobs.infra.storage import s3_client
    from jobs.shop import generate
    from jobs.shop.land import land

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", SCALE, "--seed", "42"]) == 0
    config = write_overlay(s3_endpoint, "e2e")
    # The shop's feed: history up to the day before, then the day itself as the nightly arrival.
    land(tmp_path / "raw", tmp_path / "landing" / "retailrocket", DAY.date())
    history = (DAY - timedelta(days=1)).date().isoformat()
    assert ingest.main(["--run-date", history, "--config", str(config)]) == 0
    cfg = load_config(config, environ={})
    client = s3_client(cfg.storage)  # the test's own reader: credentials resolved here, once
    client.create_bucket(Bucket="e2e")
    dag = dagbag.dags["nightly_recs"]
    # The export finds S3 only through the connection the config names (storage.aws_conn_id):
    # no AWS_* variables, and the config's own endpoint answers nothing.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{cfg.storage.aws_conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "from-the-connection",
                "password": "any: moto takes every key",
                "extra": {"endpoint_url": s3_endpoint},
            }
        ),
    )
    config = write_overlay("http://127.0.0.1:9", "e2e")

    first = dag.test(logical_date=DAY, run_conf={"config": str(config)})
    assert str(first.state) == "success", _states(first)
    assert set(_states(first).values()) == {"success"}
    # The published datasets' Assets got one event each, naming the release just moved.
    published = first.get_task_instance("announce").xcom_pull(task_ids="export")
    assert published["latest_moved"] is True
    events = _asset_events()
    assert sorted(events) == ["nightly_recs.recommendations", "nightly_recs.similar_items"]
    assert {e["release"] for e in events.values()} == {"s3://e2e/nightly/latest.json"}
    assert {e["run_id"] for e in events.values()} == {published["run_id"]}

    # The lake holds every stage's partition for the date.
    lake = cfg.paths.lake
    for layer, table in [
        ("bronze", "events"),
        ("bronze", "catalog"),
        ("quarantine", "rows"),
        ("silver", "events"),
        ("splits", "train"),
        ("splits", "test"),
    ]:
        assert (lake / layer / table / "dt=2015-09-18" / "_SUCCESS").exists(), (layer, table)
    # Every line of the export is accounted for across the history load and the day.
    reports = [
        json.loads((lake / f"_runs/dt={d}/ingest.json").read_text()) for d in (history, DAY.date())
    ]
    truth = json.loads((tmp_path / "raw/ground_truth/summary.json").read_text())
    assert sum(r["quarantined"] for r in reports) >= 1 and reports[0]["duplicates"] >= 1
    event_rows = sum(
        c["raw_rows"] for r in reports for f, c in r["files"].items() if f.endswith("events.csv")
    )
    assert event_rows == (tmp_path / "raw/events.csv").read_text().count("\n") - 1  # header
    assert truth["scale"] == float(SCALE)

    # S3, read back over HTTP: latest.json -> manifest -> every listed file.
    latest = _get_json(client, "e2e", "nightly/recommendations/latest.json")
    manifest_key = latest["manifest"].removeprefix("s3://e2e/")
    manifest = _get_json(client, "e2e", manifest_key)
    stored = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket="e2e")["Contents"]}
    assert {f["key"]: f["size"] for f in manifest["files"]}.items() <= stored.items()
    assert manifest["users"] > 0 and manifest["model_version"] == "1"
    assert manifest["rows"] == manifest["users"] * cfg.export.top_n
    exported = pd.concat(
        pd.read_parquet(io.BytesIO(client.get_object(Bucket="e2e", Key=f["key"])["Body"].read()))
        for f in manifest["files"]
        if f["key"].endswith(".parquet")
    )
    silver = pd.read_parquet(lake / "silver/events/dt=2015-09-18")
    catalog = pd.read_parquet(lake / "bronze/catalog/dt=2015-09-18")
    assert exported["user_id"].nunique() == silver["visitor_id"].nunique()
    assert (exported.groupby("user_id").size() == cfg.export.top_n).all()
    assert not exported.duplicated(["user_id", "item_id"]).any()
    bought = silver[silver["event_type"] == "purchase"]
    assert exported.merge(
        bought, left_on=["user_id", "item_id"], right_on=["visitor_id", "item_id"]
    ).empty
    assert not exported["item_id"].isin(catalog.loc[~catalog["available"], "item_id"]).any()
    assert {"als", "popular"} <= set(exported["source"])
    # The model's lists come from its candidate pool (configs/test.yaml train.candidate_items).
    assert exported.loc[exported["source"] == "als", "item_id"].nunique() <= 500
    similar_latest = _get_json(client, "e2e", "nightly/similar_items/latest.json")
    similar = _get_json(client, "e2e", similar_latest["manifest"].removeprefix("s3://e2e/"))
    assert similar["items"] == len(catalog) and similar["rows"] == len(catalog) * 20

    # MLflow: the run has tags, params, metrics, tuning trials, plots and the champion model.
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow_client = mlflow.MlflowClient()
    champion = mlflow_client.get_model_version_by_alias(cfg.mlflow.model_name, "champion")
    assert str(champion.version) == "1"
    run = mlflow_client.get_run(champion.run_id)
    assert run.data.params["factors"] in {"8", "16"}  # configs/test.yaml tune.space
    assert {"logical_date", "git_commit", "config_hash"} <= run.data.tags.keys()
    metrics = run.data.metrics
    assert metrics["ndcg_at_10"] > metrics["popularity.ndcg_at_10"]
    for name in ("recent_popularity", "oracle"):
        assert f"{name}.ndcg_at_10" in metrics, name
    # The diagnostics carry the sample's prefix, the run its size and seed.
    assert "sample.user_knn.ndcg_at_10" in metrics
    assert run.data.tags["evaluate.sample_seed"] == "2015-09-18"
    assert metrics["oracle.ndcg_at_10"] >= metrics["ndcg_at_10"]
    assert "sample.challenger_every_item.ndcg_at_10" in metrics  # what the pool costs, side by side
    assert "sample.challenger.segments.power.ndcg_at_10" in metrics or (
        "sample.challenger.segments.casual.ndcg_at_10" in metrics
    )
    assert run.data.tags["gate.decision"] == "promoted"
    trials = mlflow_client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == 2 and all("best_validation_ndcg" in t.data.metrics for t in trials)
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        "plots/audit.png",
        "plots/learning_curves.png",
        "plots/ndcg_by_segment.png",
        "plots/popularity_bias.png",
    }
    # The re-ranking trade-off table and the audit, side by side in the run.
    tables = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/rerank.json",
        "evaluation/audit_segments.json",
        "evaluation/audit_exposure.json",
    } <= tables
    evaluation = json.loads((lake / "_runs/dt=2015-09-18/evaluate.json").read_text())
    assert set(evaluation["reranking"]) == {"configured", *cfg.rerank.compare}
    configured = evaluation["reranking"]["configured"]["metrics"]["ndcg_at_10"]
    # The default weights keep the model's order (up to ties in the deeper list's scores).
    assert configured == pytest.approx(evaluation["challenger"]["ndcg_at_10"], abs=1e-3)
    assert "audit_warnings" in run.data.tags and "sample.audit.exposure_gini.challenger" in metrics
    assert set(evaluation["audit"]["segments"]) == {"activity", "tenure"}
    assert run.inputs.dataset_inputs[0].dataset.source
    # The champion loads in a fresh Python process and recommends, known visitor or not.
    visitors = pd.read_parquet(lake / "splits/train/dt=2015-09-18")["visitor_id"].unique()[:3]
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, mlflow, pandas as pd\n"
            "mlflow.set_tracking_uri(sys.argv[1])\n"
            "model = mlflow.pyfunc.load_model(f'models:/{sys.argv[2]}@champion')\n"
            "ids = [int(v) for v in sys.argv[3:]]\n"
            "lists = model.predict(pd.DataFrame({'visitor_id': ids}), params={'n': 5})\n"
            "sizes = lists.groupby('visitor_id').size()\n"
            "print(json.dumps({str(v): int(n) for v, n in sizes.items()}))\n",
            cfg.mlflow.tracking_uri,
            cfg.mlflow.model_name,
            *map(str, [*visitors, -1]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    sizes = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert sizes == {str(v): 5 for v in [*visitors, -1]}, fresh.stderr[-2000:]

    # The monitor recorded the night; with no earlier night, it had nothing to compare with.
    night = json.loads((lake / "_runs/dt=2015-09-18/monitor.json").read_text())
    assert night["alerts"] == [] and night["trailing"] == {}
    assert night["facts"]["ndcg_at_10"] == metrics["ndcg_at_10"]
    assert night["facts"]["events.view"] > 0 and night["facts"]["stale_ratio"] is None
    trend = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "monitor")}
    assert trend == {"monitor/report.json", "monitor/trend.png"}
    # Make that night "yesterday", so the rerun below has a trailing night to be compared with.
    yesterday = lake / "_runs/dt=2015-09-17/monitor.json"
    yesterday.write_text((lake / "_runs/dt=2015-09-18/monitor.json").read_text())

    # Rerun the date with a deliberately bad model: gated, champion kept, same lists republished.
    bad = "train:\n  regularization: 1000000.0\ntune:\n  trials: 0\n"
    gated = write_overlay("http://127.0.0.1:9", "e2e", bad)
    second = dag.test(
        logical_date=DAY,
        run_conf={"config": str(gated)},
        mark_success_pattern="^(ingest|clean|validate|split)$",
    )
    states = _states(second)
    assert states["gate"] == "skipped", states
    assert states["export"] == "success" and states["summarize"] == "success", states
    # The degraded model fired the night-over-night alert: monitor failed, with its findings.
    assert states["monitor"] == "failed" and str(second.state) == "failed", states
    alerts = [json.loads(line) for line in (cfg.paths.reports / "alerts.jsonl").open()]
    assert [a["task_id"] for a in alerts] == ["monitor"]
    assert [f.split(" ")[0] for f in alerts[0]["findings"]] == ["ndcg_at_10"]
    assert (
        str(mlflow_client.get_model_version_by_alias(cfg.mlflow.model_name, "champion").version)
        == "1"
    )
    challenger = mlflow_client.get_model_version(cfg.mlflow.model_name, "2")
    assert challenger.tags["gate.decision"] == "gated"
    assert "< champion" in challenger.tags["gate.reasons"]
    latest2 = _get_json(client, "e2e", "nightly/recommendations/latest.json")
    assert latest2["run_id"] != latest["run_id"]
    manifest2 = _get_json(client, "e2e", latest2["manifest"].removeprefix("s3://e2e/"))
    assert [f["sha256"] for f in manifest2["files"]] == [f["sha256"] for f in manifest["files"]]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="e2e")["Contents"]]
    assert not [k for k in keys if f"run={latest['run_id']}/" in k]  # the old run is gone
    # The gated challenger's lists went to shadow/, with a manifest and no latest.json.
    shadow_keys = [k for k in keys if k.startswith("nightly/shadow/recommendations/")]
    shadow_manifest = _get_json(
        client, "e2e", next(k for k in shadow_keys if k.endswith("_manifest.json"))
    )
    assert shadow_manifest["model_version"] == "2" and shadow_manifest["champion_version"] == "1"
    assert shadow_manifest["users"] == min(cfg.export.shadow_visitors, manifest["users"])
    assert shadow_manifest["rows"] == shadow_manifest["users"] * cfg.export.top_n
    assert not [k for k in shadow_keys if k.endswith("latest.json")]
