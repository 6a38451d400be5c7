"""Train: the training split -> an implicit ALS model, logged and registered in MLflow.

Events become a visitor x item confidence matrix (weights per event type from config), ALS is
fitted on it, and the run logs params, data sizes, fit time and the model as a pyfunc (ALS + id
mappings + popularity fallback). The new version is registered and takes the alias
`challenger`; the gate decides whether it becomes `champion`.

Run alone:
    python -m jobs.train --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import date
from pathlib import Path

from jobs.core.cli import parse_stage_args
from jobs.core.config import TrainConfig
from jobs.core.model import (
    AlsRecommender,
    InteractionMatrix,
    build_interactions,
    rank_by_popularity,
    to_matrix,
)
from jobs.core.paths import Lake, read_partition, trace_lineage
from jobs.core.schemas import EVENT_TYPE, ITEM_ID, VISITOR_ID

log = logging.getLogger("train")


class EmptyTrainingSetError(ValueError):
    """There are no interactions to train on."""


class UnvalidatedDataError(RuntimeError):
    """The logical date's data did not pass validation, or was never validated: no model."""


def require_validated(lake: Lake, run_date: date) -> None:
    """Raise UnvalidatedDataError unless validate.json of run_date says success true.

    The DAG already stops before train when validate fails; this guard also holds when train is
    run alone, cleared by hand, or after validate was marked success without running.
    """
    path = lake.stage_report(run_date, "validate")
    if not path.is_file():
        raise UnvalidatedDataError(
            f"no validation report for {run_date} at {path}: run the validate stage first"
        )
    report = json.loads(path.read_text())
    if report.get("run_date") != run_date.isoformat():
        raise UnvalidatedDataError(
            f"{path} is the validation of {report.get('run_date')!r}, not of {run_date}"
        )
    if report.get("success") is not True:
        failed = {
            suite: outcome.get("failed_expectations")
            for suite, outcome in report.get("suites", {}).items()
            if not outcome.get("success")
        }
        raise UnvalidatedDataError(
            f"validation of {run_date} did not pass ({failed}); refusing to train. "
            f"Data Docs: {report.get('data_docs_index')}"
        )


def fit_als(data: InteractionMatrix, params: TrainConfig):
    """Fit implicit's CPU ALS on the confidence matrix; returns the fitted model."""
    from implicit.cpu.als import AlternatingLeastSquares

    if data.matrix.nnz == 0:
        raise EmptyTrainingSetError("the interaction matrix is empty")
    model = AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.random_state,
        num_threads=params.num_threads,
    )
    model.fit(data.matrix, show_progress=False)
    return model


def main(argv: list[str] | None = None) -> int:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from jobs.core.model import RecommenderPyfunc
    from jobs.core.tracking import CHALLENGER, init_tracking

    args = parse_stage_args(argv, __doc__)
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    require_validated(lake, run_date)
    train_path = lake.partition("splits", "train", run_date)
    events = read_partition(lake, "splits", "train", run_date, [VISITOR_ID, ITEM_ID, EVENT_TYPE])
    interactions = build_interactions(events, cfg.train.event_weights)
    if interactions.empty:
        raise EmptyTrainingSetError(f"no training interactions in {train_path}")
    data = to_matrix(interactions)

    started = time.perf_counter()
    als = fit_als(data, cfg.train)
    fit_seconds = time.perf_counter() - started
    recommender = AlsRecommender(
        als, data.visitor_ids, data.item_ids, rank_by_popularity(interactions)[:10_000]
    )

    init_tracking(cfg)
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name=f"als-{run_date}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "logical_date": run_date.isoformat(),
                "config_hash": cfg.fingerprint(),
                "stage": "train",
            }
        )
        mlflow.log_params(
            {
                **cfg.train.model_dump(exclude={"event_weights"}),
                **{f"weight_{k}": v for k, v in cfg.train.event_weights.items()},
            }
        )
        mlflow.log_metrics(
            {
                "train_events": len(events),
                "train_visitors": len(data.visitor_ids),
                "train_items": len(data.item_ids),
                "train_nnz": data.matrix.nnz,
                "fit_seconds": fit_seconds,
            }
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                interactions, source=str(train_path), name="train_interactions"
            ),
            context="training",
        )
        # "Which raw files fed this model?": the chain of partitions back to the landed files.
        lineage = trace_lineage(train_path)
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.set_tag("lineage.raw_files", len(lineage["files"]))
        model_dir = Path(tmp) / "recommender"
        recommender.save(model_dir)
        example = pd.DataFrame({VISITOR_ID: data.visitor_ids[:2]})
        signature = infer_signature(
            example, recommender.recommend(example[VISITOR_ID], 3), params={"n": 10}
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RecommenderPyfunc(),
            artifacts={"recommender": str(model_dir)},
            signature=signature,
            registered_model_name=cfg.mlflow.model_name,
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(cfg.mlflow.model_name, CHALLENGER, version)
        report = {
            "run_id": run.info.run_id,
            "model_name": cfg.mlflow.model_name,
            "model_version": version,
            "model_uri": f"models:/{cfg.mlflow.model_name}/{version}",
            "events": len(events),
            "visitors": len(data.visitor_ids),
            "items": len(data.item_ids),
            "nnz": int(data.matrix.nnz),
            "fit_seconds": round(fit_seconds, 3),
        }
    lake.write_stage_report(run_date, "train", report)
    log.info("train %s: %s", run_date, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
