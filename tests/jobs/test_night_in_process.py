"""One whole night in process: every stage's `run` in DAG order on a tiny generated shop.

The same facts the Airflow end-to-end test checks (tests/dags/test_nightly_recs_e2e.py), without
Airflow or a JVM per stage: the shared Spark session, a SQLite MLflow store and registry, and the
session's real S3 endpoint over HTTP. Night 1 validates, tunes, trains and publishes; a rerun of
the date with a deliberately bad model is gated, the champion stays, its lists are republished
and the monitor raises the night-over-night alert. Then night one of a new shop (a fresh
registry and bucket) whose challenger loses to item-kNN: the baseline is published.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pandas as pd
import pytest

from jobs import clean, evaluate, export, gate, ingest, monitor, split, summarize, train, validate
from jobs.evaluate import SERVABLE_BASELINES
from jobs.infra.config import load_config
from jobs.infra.storage import s3_client
from jobs.shop import generate
from jobs.shop.land import land

pytestmark = pytest.mark.spark

DAY = date(2015, 9, 18)
HISTORY = DAY - timedelta(days=1)
BUCKET = "night"


def _get_json(client, key: str) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _night(cfg, spark, run_id: str, spark_stages: bool = True) -> dict:
    """Every stage after the history load, in the DAG's order; the reports by stage."""
    reports = {}
    if spark_stages:
        for stage in (ingest, clean, validate, split):
            reports[stage.__name__.rsplit(".", 1)[1]] = stage.run(cfg, DAY, spark)
    reports["train"] = train.run(cfg, DAY)
    reports["evaluate"] = evaluate.run(cfg, DAY)
    reports["gate"] = gate.run(cfg, DAY)
    reports["export"] = export.run(cfg, DAY, run_id=run_id)
    reports["summarize"] = summarize.run(cfg, DAY)
    reports["monitor"] = monitor.run(cfg, DAY)
    return reports


def _gate_figures(evaluation: dict) -> dict:
    """The main metrics of the challenger, the best baseline and every servable baseline."""
    models = {"challenger": evaluation["challenger"], "best": evaluation["best_baseline"]}
    models |= {m: f for m, f in evaluation["baselines"].items() if m in SERVABLE_BASELINES}
    return {m: {k: v for k, v in f.items() if not isinstance(v, dict)} for m, f in models.items()}


def test_a_night_publishes_then_a_gated_rerun_keeps_the_champion(
    spark, tmp_path, s3_endpoint, write_overlay
):
    import mlflow

    assert generate.main(["--out", str(tmp_path / "raw"), "--scale", "0.003", "--seed", "42"]) == 0
    config = write_overlay(s3_endpoint, BUCKET)
    cfg = load_config(config, environ={})
    client = s3_client(cfg.storage)
    client.create_bucket(Bucket=BUCKET)
    # The shop's feed: the history up to the day before, loaded once, then the day itself.
    land(tmp_path / "raw", cfg.paths.landing / "retailrocket", DAY)
    ingest.run(cfg, HISTORY, spark)

    first = _night(cfg, spark, "night-1")

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
        assert (lake / layer / table / f"dt={DAY}" / "_SUCCESS").exists(), (layer, table)
    # Every line of the export is accounted for across the history load and the day.
    ingested = [
        json.loads((lake / f"_runs/dt={d}/ingest.json").read_text()) for d in (HISTORY, DAY)
    ]
    assert sum(r["quarantined"] for r in ingested) >= 1 and ingested[0]["duplicates"] >= 1
    event_rows = sum(
        c["raw_rows"] for r in ingested for f, c in r["files"].items() if f.endswith("events.csv")
    )
    assert event_rows == (tmp_path / "raw/events.csv").read_text().count("\n") - 1  # header
    assert first["validate"]["success"] is True
    assert first["gate"]["decision"] == "promoted"
    assert first["summarize"]["gate"] == "promoted"

    # S3, read back over HTTP: latest.json -> manifest -> every listed file.
    latest = _get_json(client, "nightly/recommendations/latest.json")
    manifest = _get_json(client, latest["manifest"].removeprefix(f"s3://{BUCKET}/"))
    stored = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f["key"]: f["size"] for f in manifest["files"]}.items() <= stored.items()
    assert manifest["users"] > 0 and manifest["model_version"] == "1"
    assert manifest["rows"] == manifest["users"] * cfg.export.top_n
    exported = pd.concat(
        pd.read_parquet(io.BytesIO(client.get_object(Bucket=BUCKET, Key=f["key"])["Body"].read()))
        for f in manifest["files"]
        if f["key"].endswith(".parquet")
    )
    silver = pd.read_parquet(lake / f"silver/events/dt={DAY}")
    catalog = pd.read_parquet(lake / f"bronze/catalog/dt={DAY}")
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
    similar_latest = _get_json(client, "nightly/similar_items/latest.json")
    similar = _get_json(client, similar_latest["manifest"].removeprefix(f"s3://{BUCKET}/"))
    assert similar["items"] == len(catalog) and similar["rows"] == len(catalog) * 20
    # The release names both runs together; consumers read it first.
    release = _get_json(client, "nightly/latest.json")["datasets"]
    assert release["recommendations"]["manifest"] == latest["manifest"]
    assert release["similar_items"]["manifest"] == similar_latest["manifest"]

    # MLflow: the run has tags, params, metrics, tuning trials, plots and the champion model.
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    registry = mlflow.MlflowClient()
    champion = registry.get_model_version_by_alias(cfg.mlflow.model_name, "champion")
    assert str(champion.version) == "1"
    run = registry.get_run(champion.run_id)
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
    assert "sample.challenger_every_item.ndcg_at_10" in metrics
    assert run.data.tags["gate.decision"] == "promoted"
    trials = registry.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == 2 and all("best_validation_ndcg" in t.data.metrics for t in trials)
    # The tiny shop's validation window is thin: the train report and the run say so.
    assert first["train"]["tuning_note"].startswith("tuned on only")
    assert run.data.tags["tuning_note"] == first["train"]["tuning_note"]
    plots = {a.path for a in registry.list_artifacts(run.info.run_id, "plots")}
    assert plots == {
        "plots/audit.png",
        "plots/learning_curves.png",
        "plots/ndcg_by_segment.png",
        "plots/popularity_bias.png",
    }
    tables = {a.path for a in registry.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/rerank.json",
        "evaluation/audit_segments.json",
        "evaluation/audit_exposure.json",
    } <= tables
    evaluation = first["evaluate"]
    assert set(evaluation["reranking"]) == {"configured", *cfg.rerank.compare}
    configured = evaluation["reranking"]["configured"]["metrics"]["ndcg_at_10"]
    # The default weights keep the model's order (up to ties in the deeper list's scores).
    assert configured == pytest.approx(evaluation["challenger"]["ndcg_at_10"], abs=1e-3)
    assert set(evaluation["audit"]["segments"]) == {"activity", "tenure"}
    assert evaluation["diagnostics"]["visitors"] == evaluation["visitors"]["all"]
    # A sample of everyone: the challenger on the sample is the challenger.
    full = {k: v for k, v in evaluation["challenger"].items() if not isinstance(v, dict)}
    assert evaluation["diagnostics"]["challenger"] == full

    # The diagnostics on a sample of 100 test visitors instead of all of them: the figures the
    # gate and the best baseline's choice read, on every main visitor, do not move.
    sampled_cfg = load_config(
        write_overlay(s3_endpoint, BUCKET, "evaluate:\n  diagnostics_visitors: 100\n"), environ={}
    )
    sampled = evaluate.run(sampled_cfg, DAY)
    assert sampled["diagnostics"]["visitors"] == 100 < evaluation["visitors"]["all"]
    assert sampled["reranking"]["configured"]["metrics"]["users"] < evaluation["visitors"]["main"]
    assert _gate_figures(sampled) == _gate_figures(evaluation)
    tags = registry.get_run(champion.run_id).data.tags
    assert tags["evaluate.sample_visitors"] == f"100 of {evaluation['visitors']['all']}"
    on_the_sample = sampled["diagnostics"]["challenger"]
    assert on_the_sample["users"] == sampled["diagnostics"]["by_group"]["main"]
    logged = registry.get_run(champion.run_id).data.metrics["sample.challenger.ndcg_at_10"]
    assert logged == pytest.approx(on_the_sample["ndcg_at_10"])

    # The monitor recorded the night; with no earlier night, it had nothing to compare with.
    night = first["monitor"]
    assert night["alerts"] == [] and night["trailing"] == {}
    assert night["facts"]["ndcg_at_10"] == metrics["ndcg_at_10"]
    assert night["facts"]["events.view"] > 0 and night["facts"]["stale_ratio"] is None
    trend = {a.path for a in registry.list_artifacts(run.info.run_id, "monitor")}
    assert trend == {"monitor/report.json", "monitor/trend.png"}
    # Make that night "yesterday", so the rerun below has a trailing night to be compared with.
    (lake / f"_runs/dt={HISTORY}/monitor.json").write_text(json.dumps(night))

    # Rerun the date with a deliberately bad model: gated, champion kept, same lists republished.
    bad = "train:\n  regularization: 1000000.0\ntune:\n  trials: 0\n"
    bad_cfg = load_config(write_overlay(s3_endpoint, BUCKET, bad), environ={})
    second = _night(bad_cfg, spark, "night-2", spark_stages=False)
    assert second["gate"]["decision"] == "gated" and not second["gate"]["promote"]
    assert any("< champion" in r for r in second["gate"]["reasons"])
    # The degraded model moves the night-over-night facts: the monitor names NDCG@10.
    assert [a.split(" ")[0] for a in second["monitor"]["alerts"]] == ["ndcg_at_10"]
    assert (
        str(registry.get_model_version_by_alias(cfg.mlflow.model_name, "champion").version) == "1"
    )
    challenger = registry.get_model_version(cfg.mlflow.model_name, "2")
    assert challenger.tags["gate.decision"] == "gated"
    latest2 = _get_json(client, "nightly/recommendations/latest.json")
    assert latest2["run_id"] == "night-2" != latest["run_id"]
    manifest2 = _get_json(client, latest2["manifest"].removeprefix(f"s3://{BUCKET}/"))
    assert [f["sha256"] for f in manifest2["files"]] == [f["sha256"] for f in manifest["files"]]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert not [k for k in keys if f"run={latest['run_id']}/" in k]  # the old run is gone
    # The gated challenger's lists went to shadow/, with a manifest and no latest.json.
    shadow_keys = [k for k in keys if k.startswith("nightly/shadow/recommendations/")]
    shadow = _get_json(client, next(k for k in shadow_keys if k.endswith("_manifest.json")))
    assert shadow["model_version"] == "2" and shadow["champion_version"] == "1"
    assert shadow["users"] == min(cfg.export.shadow_visitors, manifest["users"])
    assert shadow["rows"] == shadow["users"] * cfg.export.top_n
    assert not [k for k in shadow_keys if k.endswith("latest.json")]

    # Night one elsewhere: a fresh registry and bucket, item-kNN among the baselines, the bad
    # model. The gate publishes the best baseline rather than nothing.
    extra = f"{bad}evaluate:\n  baselines: [popularity, recent_popularity, item_knn, user_knn]\n"
    # Its own registry: an overlay on the overlay (a second mlflow: key in one file is an error).
    fresh_overlay = tmp_path / "fresh.yaml"
    fresh_overlay.write_text(
        f"extends: {write_overlay(s3_endpoint, 'fresh', extra)}\n"
        f"mlflow:\n  tracking_uri: sqlite:///{tmp_path / 'fresh.db'}\n"
        f"  artifact_root: {tmp_path / 'fresh-artifacts'}\n"
    )
    fresh_cfg = load_config(fresh_overlay, environ={})
    client.create_bucket(Bucket="fresh")
    fresh = _night(fresh_cfg, spark, "night-one", spark_stages=False)
    assert fresh["gate"]["decision"] == "baseline_promoted"
    best = fresh["evaluate"]["best_baseline"]
    assert best["name"] == "item_knn" and best["ndcg_at_10"] > fresh["evaluate"]["challenger"][
        "ndcg_at_10"
    ] * (1 + fresh_cfg.gate.min_lift_over_baseline)
    published = json.loads(
        client.get_object(Bucket="fresh", Key="nightly/recommendations/latest.json")["Body"].read()
    )
    one = json.loads(
        client.get_object(Bucket="fresh", Key=published["manifest"].removeprefix("s3://fresh/"))[
            "Body"
        ].read()
    )
    assert one["model_family"] == "item_knn" and one["model_version"] == "2"
    assert one["rows"] == one["users"] * cfg.export.top_n
    assert "item_knn_cosine" in one["rows_by_source"]
