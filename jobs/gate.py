"""Gate: which model's lists the shop gets, from the first night on.

The challenger (ALS) is promoted to `champion` when its NDCG@10 beats the night's best baseline
(the best of popularity, recent popularity, item-kNN and EASE on the same split) by
`gate.min_lift_over_baseline` (relative) AND trails the current champion, re-evaluated on the
same test window, by no more than `gate.max_regression_vs_champion`. When the challenger fails,
the best baseline is registered and promoted instead if there is no champion yet (night one:
never publish nothing) or if it holds up against the champion by the same rule; otherwise the
champion stays. The decision and its reasons go to the stage report and to MLflow tags.

Exit codes: 0 a model was promoted (`promoted`: the challenger; `baseline_promoted`); 99 gated,
the champion stays (Airflow marks the task skipped; the export republishes the champion).

Run alone:
    python -m jobs.gate --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, GateConfig
from jobs.infra.paths import Lake

log = logging.getLogger("gate")

GATED_EXIT_CODE = 99
METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class GateDecision:
    promote: bool  # the challenger becomes champion
    reasons: tuple[str, ...]
    promote_baseline: bool = False  # the best baseline becomes champion instead

    @property
    def verdict(self) -> str:
        if self.promote:
            return "promoted"
        return "baseline_promoted" if self.promote_baseline else "gated"


def decide(
    challenger: dict, baseline: dict, champion: dict | None, rules: GateConfig
) -> GateDecision:
    """Compare NDCG@10 of the challenger with the best baseline and the champion; explain it.

    baseline: the night's best baseline's metrics, with its `name`.
    """
    score, best = challenger[METRIC], baseline[METRIC]
    name = baseline.get("name", "baseline")
    lift = 1 + rules.min_lift_over_baseline
    beats_baseline = score >= best * lift and score > 0
    reasons = [
        f"{METRIC} {score:.4f} {'>=' if beats_baseline else '<'} best baseline {name} "
        f"{best:.4f} x {lift:.2f}"
    ]
    keep = 1 - rules.max_regression_vs_champion

    def holds_up(value: float) -> bool:
        return champion is None or value >= champion[METRIC] * keep

    if beats_baseline:
        promote = holds_up(score)
        reasons.append(
            "no champion yet"
            if champion is None
            else f"{METRIC} {score:.4f} {'>=' if promote else '<'} champion "
            f"{champion[METRIC]:.4f} x {keep:.2f}"
        )
        return GateDecision(promote=promote, reasons=tuple(reasons))
    if champion is None:
        reasons.append(f"no champion yet: the best baseline {name} is published")
        return GateDecision(promote=False, reasons=tuple(reasons), promote_baseline=True)
    swap = holds_up(best)
    reasons.append(
        f"best baseline {name} {best:.4f} {'>=' if swap else '<'} champion "
        f"{champion[METRIC]:.4f} x {keep:.2f}"
        + (": the baseline replaces it" if swap else ": the champion stays")
    )
    return GateDecision(promote=False, reasons=tuple(reasons), promote_baseline=swap)


def register_baseline(folder: Path, model_name: str, run_id: str) -> str:
    """Log the staged best baseline to the night's MLflow run as a new model version."""
    import mlflow

    from jobs.recommenders.pyfunc import load_saved, log_model

    recommender = load_saved(folder)
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        info = log_model(recommender, Path(tmp) / "recommender", model_name)
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_model_version_tag(model_name, version, "family", recommender.family)
    return version


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    report = run(args.cfg, args.run_date)
    return GATED_EXIT_CODE if report["decision"] == "gated" else 0


def run(cfg: Config, run_date: date) -> dict:
    """The gate stage for `run_date`; returns the stage report it wrote."""
    import mlflow

    from jobs.infra.tracking import CHAMPION, init_tracking

    lake = Lake(cfg.paths.lake)
    evaluation = lake.read_stage_report(run_date, "evaluate")
    trained = lake.read_stage_report(run_date, "train")
    best = evaluation["best_baseline"]
    decision = decide(evaluation["challenger"], best, evaluation["champion"], cfg.gate)
    verdict = decision.verdict

    init_tracking(cfg)
    client = mlflow.MlflowClient()
    name, version = cfg.mlflow.model_name, trained["model_version"]
    champion = None
    if decision.promote:
        champion = version
    elif decision.promote_baseline:
        champion = register_baseline(Path(best["path"]), name, trained["run_id"])
    if champion is not None:
        client.set_registered_model_alias(name, CHAMPION, champion)
    tags = {"gate.decision": verdict, "gate.reasons": "; ".join(decision.reasons)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(trained["run_id"], key, value)
        if decision.promote_baseline:
            client.set_model_version_tag(name, champion, key, value)
    report = {
        **asdict(decision),
        "decision": verdict,
        "model_version": version,
        "champion_version": champion or evaluation["champion_version"],
        "published_family": "als" if decision.promote else best["name"] if champion else None,
        "previous_champion_version": evaluation["champion_version"],
    }
    lake.write_stage_report(run_date, "gate", report)
    log.info(
        "gate %s: %s (champion %s): %s", run_date, verdict, champion, "; ".join(decision.reasons)
    )
    return report


if __name__ == "__main__":
    raise SystemExit(main())
