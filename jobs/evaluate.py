"""Evaluate: challenger vs popularity baseline vs current champion on the test window.

Every model is scored on the same visitors (those seen in training with at least one test
interaction: the warm visitors) with the same rules as the export (nothing the visitor already
bought). Metrics go to the challenger's MLflow run and to the stage report the gate reads.

Run alone:
    python -m jobs.evaluate --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging

from jobs.core.cli import parse_stage_args
from jobs.core.metrics import ranking_metrics
from jobs.core.model import (
    PopularityRecommender,
    build_interactions,
    rank_by_popularity,
)
from jobs.core.paths import read_partition
from jobs.core.schemas import EVENT_TYPE, ITEM_ID, VISITOR_ID

log = logging.getLogger("evaluate")


def evaluate_model(
    model, train_events, test_events, ks: tuple[int, ...], exclude_types: tuple[str, ...]
) -> dict:
    """Ranking metrics of `model` on the warm visitors of the test window."""
    warm = test_events[test_events[VISITOR_ID].isin(train_events[VISITOR_ID].unique())]
    exclude = train_events[train_events[EVENT_TYPE].isin(exclude_types)][[VISITOR_ID, ITEM_ID]]
    recs = model.recommend(warm[VISITOR_ID].unique(), max(ks), exclude=exclude)
    return ranking_metrics(recs, warm[[VISITOR_ID, ITEM_ID]], ks)


def main(argv: list[str] | None = None) -> int:
    import mlflow

    from jobs.core.tracking import CHAMPION, init_tracking, load_recommender, version_by_alias

    args = parse_stage_args(argv, __doc__)
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    columns = [VISITOR_ID, ITEM_ID, EVENT_TYPE]
    train = read_partition(lake, "splits", "train", run_date, columns)
    test = read_partition(lake, "splits", "test", run_date, columns)
    trained = lake.read_stage_report(run_date, "train")
    ks, excl = cfg.evaluate.k, cfg.export.exclude_seen_event_types

    init_tracking(cfg)
    popular = PopularityRecommender(
        rank_by_popularity(build_interactions(train, cfg.train.event_weights))
    )
    results = {
        "challenger": evaluate_model(load_recommender(trained["model_uri"]), train, test, ks, excl),
        "popularity": evaluate_model(popular, train, test, ks, excl),
        "champion": None,
    }
    champion = version_by_alias(mlflow.MlflowClient(), cfg.mlflow.model_name, CHAMPION)
    if champion is not None:
        uri = f"models:/{cfg.mlflow.model_name}/{champion.version}"
        results["champion"] = evaluate_model(load_recommender(uri), train, test, ks, excl)
    with mlflow.start_run(run_id=trained["run_id"]):
        for name, metrics in results.items():
            if metrics is None:
                continue
            prefix = "" if name == "challenger" else f"{name}_"
            mlflow.log_metrics({f"{prefix}{k}": v for k, v in metrics.items()})
    report = {
        **results,
        "challenger_version": trained["model_version"],
        "champion_version": None if champion is None else champion.version,
    }
    lake.write_stage_report(run_date, "evaluate", report)
    log.info("evaluate %s: %s", run_date, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
