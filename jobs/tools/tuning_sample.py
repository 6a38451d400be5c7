"""Does a visitor sample rank the tuning trials as every visitor does, on this shop?

Runs a date's search (the train split in the lake, `tune.*` as configured) twice: the trials
fitted on every visitor, then on `tune.max_fit_visitors` of them (jobs/recommenders/tuning.py).
Prints each trial's validation NDCG and seconds both ways, and whether both pick the same
winner; --out keeps the figures as JSON. Nothing is logged to MLflow and the lake is only read.

    python -m jobs.tools.tuning_sample --run-date 2015-09-18 --config configs/local.yaml \
        --lake .local/bench/scale-1/lake --out docs/benchmarks/tuning-sample-scale1.json
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jobs.infra.cli import parse_stage_args
from jobs.infra.paths import Lake
from jobs.recommenders.tuning import search
from jobs.train import training_split


def compared(cfg, run_date, lake_root: Path | None = None) -> dict:
    """Each trial's validation NDCG and seconds fitted on every visitor and on the sample, on
    the lake at `lake_root` (default: the config's)."""
    events, split = training_split(Lake(lake_root or cfg.paths.lake), run_date)
    cutoff = pd.Timestamp(split["validation_cutoff"])
    runs = {}
    for name, visitors in (("every_visitor", 0), ("sample", cfg.tune.max_fit_visitors)):
        # No time cap: both sides run every trial.
        tune = cfg.tune.model_copy(update={"max_fit_visitors": visitors, "max_seconds": 1e9})
        best, trials = search(events, cutoff, cfg.train, tune, cfg.export.exclude_seen_event_types)
        runs[name] = {"best": best.model_dump(mode="json"), "trials": trials}
    return {
        "run_date": run_date.isoformat(),
        "max_fit_visitors": cfg.tune.max_fit_visitors,
        "same_winner": runs["every_visitor"]["best"] == runs["sample"]["best"],
        "trials": [
            {
                "trial": whole.number,
                "factors": whole.params.factors,
                "regularization": whole.params.regularization,
                "alpha": whole.params.alpha,
                **{
                    f"{name}_{key}": value
                    for name, trial in (("every_visitor", whole), ("sample", part))
                    for key, value in (
                        ("ndcg", round(trial.best_score, 4)),
                        ("seconds", trial.seconds),
                        ("fit_visitors", trial.fit_visitors),
                    )
                },
            }
            for whole, part in zip(
                runs["every_visitor"]["trials"], runs["sample"]["trials"], strict=True
            )
        ],
    }


def table(figures: dict) -> str:
    """The Markdown table for docs/benchmarks.md."""
    k = "validation NDCG@10"
    lines = [
        f"| trial | factors, regularization, alpha | {k}: every visitor | {k}: sample | "
        "seconds: every visitor | seconds: sample |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for t in figures["trials"]:
        lines.append(
            f"| {t['trial']} | {t['factors']}, {t['regularization']:g}, {t['alpha']:g} | "
            f"{t['every_visitor_ndcg']:.4f} | {t['sample_ndcg']:.4f} | "
            f"{t['every_visitor_seconds']:.1f} | {t['sample_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def add_arguments(parser):
        parser.add_argument("--out", type=Path, help="JSON file for the figures")
        parser.add_argument("--lake", type=Path, help="lake root (default: the config's)")

    args = parse_stage_args(argv, __doc__, add_arguments)
    figures = compared(args.cfg, args.run_date, args.extras["lake"])
    if args.extras["out"]:
        args.extras["out"].write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    trials = figures["trials"]
    print(
        f"\nvisitors fitted: {trials[0]['every_visitor_fit_visitors']} every visitor, "
        f"{trials[0]['sample_fit_visitors']} sample; same winner: {figures['same_winner']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
