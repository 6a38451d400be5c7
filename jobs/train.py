"""Train: the training split -> a tuned implicit ALS model, logged and registered in MLflow.

Events become a visitor x item confidence matrix (weights per event type, optional time decay
and saturation, from config). A seeded random search (`tune.*`, jobs/recommenders/tuning.py) scores
candidate parameters on the validation window at the end of the training period, each trial a
nested MLflow run with its learning curve; the best one is refitted on all training data. The
search runs at most once in `tune.every_days` logical days (or when --retune): the nights in
between refit the last search's parameters on their own data (the `tuned_on` tag says which). The
run logs tags (logical date, git commit, config hash), the input with path, rows and checksum,
params, the learning curves, the resolved config and the model as a pyfunc (ALS + id mappings +
popularity fallback). The new version is registered and takes the alias `challenger`; the gate
decides whether it becomes `champion`.

Run alone:
    python -m jobs.train --run-date 2015-09-18 --config configs/local.yaml [--retune]
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, TrainConfig
from jobs.infra.paths import Lake, partition_digest, read_partition, trace_lineage
from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.interactions import candidate_pool, rank_by_popularity
from jobs.recommenders.pyfunc import log_model
from jobs.recommenders.tuning import (
    EmptyTrainingSetError,
    TrialResult,
    confidence_matrix,
    fit_als,
    interactions_for,
    search,
    tuning_note,
)

__all__ = ["EmptyTrainingSetError", "UnvalidatedDataError", "fit_als", "require_validated"]

log = logging.getLogger("train")


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


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(
        argv,
        __doc__,
        lambda p: p.add_argument(
            "--retune",
            action="store_true",
            help="search tonight even if a search within tune.every_days could be reused",
        ),
    )
    run(args.cfg, args.run_date, retune=args.extras["retune"])
    return 0


def run(cfg: Config, run_date: date, retune: bool = False) -> dict:
    """The train stage for `run_date`; returns the stage report it wrote."""
    import mlflow

    from jobs.infra.tracking import CHALLENGER, git_commit, init_tracking

    lake = Lake(cfg.paths.lake)
    require_validated(lake, run_date)
    events, split = training_split(lake, run_date)
    cutoff = pd.Timestamp(split["cutoff"])
    train_path = lake.partition("splits", "train", run_date)

    init_tracking(cfg)
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name=f"als-{run_date}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "logical_date": run_date.isoformat(),
                "git_commit": git_commit(),
                "config_hash": cfg.fingerprint(),
                "stage": "train",
                "engine": cfg.train.engine,
            }
        )
        mlflow.log_dict(cfg.model_dump(mode="json", by_alias=True), "config.json")
        validation_cutoff = pd.Timestamp(split["validation_cutoff"])
        params, trials, tuned_on, note = _tuned_params(
            cfg, lake, run_date, events, validation_cutoff, retune
        )
        mlflow.set_tag("tuned_on", tuned_on.isoformat() if tuned_on else "never")
        interactions = interactions_for(events, params, as_of=cutoff)
        if interactions.empty:
            raise EmptyTrainingSetError(f"no training interactions in {train_path}")
        data = confidence_matrix(interactions, params)
        started = time.perf_counter()
        als = _fit(data, params, cfg)
        fit_seconds = time.perf_counter() - started
        popular = rank_by_popularity(interactions)
        recommender = AlsRecommender(
            als, data.visitor_ids, data.item_ids, popular[:10_000], candidate_pool(popular, params)
        )
        mlflow.log_params(
            {
                **params.model_dump(exclude={"event_weights"}),
                **{f"weight_{k}": v for k, v in params.event_weights.items()},
                "tuning_trials": len(trials),
            }
        )
        mlflow.log_metrics(
            {
                "train_events": len(events),
                "train_visitors": len(data.visitor_ids),
                "train_items": len(data.item_ids),
                "train_nnz": data.matrix.nnz,
                "fit_seconds": fit_seconds,
                "seconds_per_iteration": fit_seconds / params.iterations,
                **({"validation_ndcg_best": max(t.best_score for t in trials)} if trials else {}),
            }
        )
        if trials:
            mlflow.log_figure(_learning_curves(trials, cfg.tune.k), "plots/learning_curves.png")
        mlflow.log_input(
            mlflow.data.from_pandas(
                interactions,
                source=str(train_path),
                name="train_interactions",
                digest=partition_digest(train_path)[:36],
            ),
            context="training",
        )
        # "Which raw files fed this model?": the chain of partitions back to the landed files.
        lineage = trace_lineage(train_path)
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.set_tag("lineage.raw_files", len(lineage["files"]))
        info = log_model(recommender, Path(tmp) / "recommender", cfg.mlflow.model_name)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(cfg.mlflow.model_name, CHALLENGER, version)
        client.set_model_version_tag(cfg.mlflow.model_name, version, "family", recommender.family)
        report = {
            "run_id": run.info.run_id,
            "model_name": cfg.mlflow.model_name,
            "model_version": version,
            "model_uri": f"models:/{cfg.mlflow.model_name}/{version}",
            "engine": params.engine,
            "events": len(events),
            "visitors": len(data.visitor_ids),
            "items": len(data.item_ids),
            "nnz": int(data.matrix.nnz),
            "fit_seconds": round(fit_seconds, 3),
            "params": params.model_dump(mode="json"),
            "config_hash": cfg.fingerprint(),
            "tuned_on": tuned_on.isoformat() if tuned_on else None,
            "tuning_note": note,
            "tuning": [
                {
                    "trial": t.number,
                    "validation_ndcg": round(t.best_score, 6),
                    "best_iterations": t.best_iterations,
                    "seconds": t.seconds,
                    "fit_visitors": t.fit_visitors,
                }
                for t in trials
            ],
        }
    lake.write_stage_report(run_date, "train", report)
    log.info("train %s: %s", run_date, json.dumps(report, default=str))
    return report


def training_split(lake: Lake, run_date: date) -> tuple[pd.DataFrame, dict]:
    """The events train fits on (visitor, item, type, time) and the split's report; an
    EmptyTrainingSetError naming the partition when it holds none."""
    split = lake.read_stage_report(run_date, "split")
    columns = [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    events = read_partition(lake, "splits", "train", run_date, columns, producer="split")
    if events.empty:
        path = lake.partition("splits", "train", run_date)
        raise EmptyTrainingSetError(f"no training events in {path}")
    return events, split


def _tuned_params(
    cfg,
    lake: Lake,
    run_date: date,
    events: pd.DataFrame,
    validation_cutoff: pd.Timestamp,
    retune: bool = False,
) -> tuple[TrainConfig, list[TrialResult], date | None, str | None]:
    """The parameters to fit, the tuning trials run tonight, the logical date of the search
    that chose the parameters (None: train.* as configured, no search), and a note when
    tonight's search was skipped or weak (logged, and tagged `tuning_note` in MLflow).

    Searches when `retune`, or when no search within `tune.every_days` can be reused
    (`earlier_search`). The spark_mllib engine fits the configured parameters as they are: a
    search of Spark fits would cost a full fit per trial.
    """
    if cfg.train.engine == "spark_mllib":
        if cfg.tune.trials > 1:
            log.info("train.engine spark_mllib: no tuning, fitting train.* as configured")
        return cfg.train, [], None, None
    if cfg.tune.trials < 2:
        return cfg.train, [], None, None
    earlier = None
    if not retune:
        earlier = earlier_search(lake, run_date, cfg.tune.every_days, cfg.fingerprint())
    if earlier is not None:
        tuned_on = date.fromisoformat(earlier["tuned_on"])
        log.info("tuning: reusing the parameters of the search of %s", tuned_on)
        return TrainConfig.model_validate(earlier["params"]), [], tuned_on, None
    note = tuning_note(events, validation_cutoff, cfg.tune)
    if note is not None:
        import mlflow

        log.warning("train %s: %s", run_date, note)
        mlflow.set_tag("tuning_note", note)
    params, trials = search(
        events,
        validation_cutoff,
        cfg.train,
        cfg.tune,
        cfg.export.exclude_seen_event_types,
        on_trial=_log_trial,
    )
    return params, trials, run_date if trials else None, note


def earlier_search(lake: Lake, run_date: date, every_days: int, fingerprint: str) -> dict | None:
    """The latest train report, from `run_date` back over `every_days` logical days, whose
    parameters come from a search in that window under the same config fingerprint; or None
    when tonight must search."""
    oldest = run_date - timedelta(days=every_days - 1)
    for back in range(every_days):
        day = run_date - timedelta(days=back)
        if not lake.stage_report(day, "train").is_file():
            continue
        report = lake.read_stage_report(day, "train")
        tuned_on = report.get("tuned_on")
        if (
            report.get("config_hash") == fingerprint
            and tuned_on is not None
            and oldest <= date.fromisoformat(tuned_on) <= run_date
        ):
            return report
    return None


def _fit(data, params: TrainConfig, cfg):
    """ALS on the configured engine: implicit in this process, or MLlib on the job's Spark."""
    if params.engine == "implicit":
        return fit_als(data, params)
    from jobs.infra.spark import get_spark
    from jobs.recommenders.mllib import fit_mllib_als

    return fit_mllib_als(data, params, get_spark("train-mllib", cfg))


def _log_trial(trial: TrialResult) -> None:
    """One tuning trial as a nested MLflow run: its parameters and validation learning curve."""
    import mlflow

    params = trial.params
    log.info(
        "tuning trial %d: factors %d, regularization %g, alpha %g, weights %s -> validation "
        "NDCG %.4f at %d iterations%s (%.1fs, fitted on %d visitors)",
        trial.number,
        params.factors,
        params.regularization,
        params.alpha,
        params.event_weights,
        trial.best_score,
        trial.best_iterations,
        ", stopped early" if trial.stopped_early else "",
        trial.seconds,
        trial.fit_visitors,
    )
    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
        mlflow.set_tag("stage", "tuning")
        mlflow.log_params(
            {
                "factors": params.factors,
                "regularization": params.regularization,
                "alpha": params.alpha,
                "max_iterations": params.iterations,
                **{f"weight_{k}": v for k, v in params.event_weights.items()},
            }
        )
        for iteration, value in trial.curve:
            mlflow.log_metric("validation_ndcg", value, step=iteration)
        mlflow.log_metrics(
            {
                "best_validation_ndcg": trial.best_score,
                "best_iterations": trial.best_iterations,
                "trial_seconds": trial.seconds,
                "fit_visitors": trial.fit_visitors,
                "stopped_early": float(trial.stopped_early),
            }
        )


def _learning_curves(trials: list[TrialResult], k: int):
    from jobs.infra.tracking import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in trials:
        p = t.params
        label = f"#{t.number}: f={p.factors} reg={p.regularization} a={p.alpha}"
        ax.plot(*zip(*t.curve, strict=True), marker="o", label=label)
    ax.set_xlabel("ALS iteration")
    ax.set_ylabel(f"validation NDCG@{k}")
    ax.set_title("Tuning trials (validation window)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
