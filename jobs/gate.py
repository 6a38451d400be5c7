"""Gate: promote the challenger to `champion` only if it is better than what we have.

The challenger passes when its NDCG@10 beats popularity by `gate.min_lift_over_popularity`
(relative) AND trails the current champion, re-evaluated on the same test window, by no more than
`gate.max_regression_vs_champion` (relative). The decision and its reasons are written to the
stage report and to MLflow tags of the challenger's run and model version.

Exit codes: 0 promoted; 99 gated (Airflow marks the task skipped, so the run shows it was
gated and the export publishes the existing champion).

Run alone:
    python -m jobs.gate --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config, GateConfig
from jobs.infra.paths import Lake

log = logging.getLogger("gate")

GATED_EXIT_CODE = 99
METRIC = "ndcg_at_10"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]


def decide(
    challenger: dict, popularity: dict, champion: dict | None, rules: GateConfig
) -> GateDecision:
    """Compare NDCG@10 of the challenger with the baseline and the champion; explain the result."""
    score = challenger[METRIC]
    reasons = []
    promote = True
    floor = popularity[METRIC] * (1 + rules.min_lift_over_popularity)
    if score >= floor and score > 0:
        reasons.append(
            f"{METRIC} {score:.4f} >= popularity {popularity[METRIC]:.4f} "
            f"x {1 + rules.min_lift_over_popularity:.2f}"
        )
    else:
        promote = False
        reasons.append(
            f"{METRIC} {score:.4f} < popularity {popularity[METRIC]:.4f} "
            f"x {1 + rules.min_lift_over_popularity:.2f}"
        )
    if champion is None:
        reasons.append("no champion yet")
    else:
        bar = champion[METRIC] * (1 - rules.max_regression_vs_champion)
        ok = score >= bar
        promote = promote and ok
        reasons.append(
            f"{METRIC} {score:.4f} {'>=' if ok else '<'} champion "
            f"{champion[METRIC]:.4f} x {1 - rules.max_regression_vs_champion:.2f}"
        )
    return GateDecision(promote=promote, reasons=tuple(reasons))


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    report = run(args.cfg, args.run_date)
    return 0 if report["promote"] else GATED_EXIT_CODE


def run(cfg: Config, run_date: date) -> dict:
    """The gate stage for `run_date`; returns the stage report it wrote."""
    import mlflow

    from jobs.infra.tracking import CHAMPION, init_tracking

    lake = Lake(cfg.paths.lake)
    evaluation = lake.read_stage_report(run_date, "evaluate")
    trained = lake.read_stage_report(run_date, "train")
    decision = decide(
        evaluation["challenger"], evaluation["popularity"], evaluation["champion"], cfg.gate
    )
    verdict = "promoted" if decision.promote else "gated"

    init_tracking(cfg)
    client = mlflow.MlflowClient()
    name, version = cfg.mlflow.model_name, trained["model_version"]
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    tags = {"gate.decision": verdict, "gate.reasons": "; ".join(decision.reasons)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(trained["run_id"], key, value)
    report = {
        **asdict(decision),
        "decision": verdict,
        "model_version": version,
        "previous_champion_version": evaluation["champion_version"],
    }
    lake.write_stage_report(run_date, "gate", report)
    log.info("gate %s: %s version %s: %s", run_date, verdict, version, "; ".join(decision.reasons))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
