"""Benchmark of the train step's ALS fit against a bare `implicit` fit, side by side in one run.

Reads the training split of D (`splits/train/dt=D`, cutoff from `_runs/dt=D/split.json`) and the
parameters the train stage chose for D (`params` in `_runs/dt=D/train.json`; `cfg.train` when
there is no train report or with `--params config`). Each repetition runs both, in alternating
order so neither always goes first:

- pipeline: what jobs/train.py does from events to a fitted model, `interactions_for` ->
  `confidence_matrix` -> `fit_als`; timed as the fit alone and as the whole path with the
  matrix build;
- bare: `implicit.cpu.als.AlternatingLeastSquares(...)` with the same parameters, `.fit` on the
  same CSR matrix (built once, before the runs).

Both timings include constructing the model (implicit checks the BLAS setup there). The ratio is
median pipeline fit / median bare fit (goal <= 1.15). OPENBLAS_NUM_THREADS is 1 unless set:
`jobs/__init__.py` sets it before numpy loads, and the BLAS threads actually in use are reported.
Figures go to --out as JSON and to stdout as a Markdown table for docs/benchmarks.md.

    python -m jobs.tools.bench_train --config configs/local.yaml --run-date 2015-09-18 --repeat 3
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import TrainConfig
from jobs.infra.paths import Lake, read_partition, write_json_atomic
from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
from jobs.recommenders.interactions import InteractionMatrix
from jobs.recommenders.tuning import (
    EmptyTrainingSetError,
    confidence_matrix,
    fit_als,
    interactions_for,
)
from jobs.tools.bench import PROJECT, machine

GOAL_RATIO = 1.15


def load_params(lake: Lake, run_date, fallback: TrainConfig, source: str) -> tuple:
    """(params, where they came from): train.json's tuned params, or `fallback` (cfg.train)."""
    report = lake.stage_report(run_date, "train")
    if source == "train" and report.is_file():
        params = TrainConfig.model_validate(lake.read_stage_report(run_date, "train")["params"])
        return params, str(report)
    return fallback, "config train.*" + (" (no train report)" if source == "train" else "")


def pipeline_fit(events: pd.DataFrame, params: TrainConfig, cutoff) -> dict:
    """jobs/train.py's path from events to a fitted model: seconds of the fit and of it all."""
    started = time.perf_counter()
    data = confidence_matrix(interactions_for(events, params, as_of=cutoff), params)
    fit_started = time.perf_counter()
    fit_als(data, params)
    done = time.perf_counter()
    return {"fit_s": done - fit_started, "path_s": done - started, "matrix": data.matrix}


def bare_fit(data: InteractionMatrix, params: TrainConfig) -> float:
    """Seconds for implicit's own ALS on the same matrix with the same parameters."""
    from implicit.cpu.als import AlternatingLeastSquares

    started = time.perf_counter()
    AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.random_state,
        num_threads=params.num_threads,
    ).fit(data.matrix, show_progress=False)
    return time.perf_counter() - started


def matrix_shape(matrix) -> dict:
    """Visitors, items and non-zeros of a confidence matrix, for the figures."""
    return {"visitors": matrix.shape[0], "items": matrix.shape[1], "nnz": int(matrix.nnz)}


def blas_threads() -> list[dict]:
    """The BLAS libraries loaded in this process and the threads each will use."""
    from threadpoolctl import threadpool_info

    return [
        {"library": i["prefix"], "num_threads": i["num_threads"]}
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]


def render(result: dict) -> str:
    runs, iterations = result["runs"], result["params"]["iterations"]
    m = result["matrix"]

    def row(what: str, key: str) -> str:
        median = result["median_s"][key]
        every = ", ".join(f"{s:.3f}" for s in runs[key])
        return f"| {what} | {median:.3f} | {median / iterations:.4f} | {every} |"

    return "\n".join(
        [
            f"{m['visitors']:,} visitors x {m['items']:,} items, nnz {m['nnz']:,}; "
            f"{iterations} iterations, factors {result['params']['factors']}; "
            f"num_threads {result['num_threads']}, "
            f"OPENBLAS_NUM_THREADS={result['openblas_num_threads']}; "
            f"params from {result['params_source']}; medians of {result['repeat']}.",
            "",
            "| what | seconds | s/iteration | every run (s) |",
            "|---|---|---|---|",
            row("bare `implicit` ALS fit (same CSR, same params)", "bare_fit"),
            row("pipeline `fit_als`", "pipeline_fit"),
            row("pipeline path (events -> matrix -> `fit_als`)", "pipeline_path"),
            f"| **ratio** pipeline fit / bare fit (goal <= {GOAL_RATIO}) | | | "
            f"**{result['ratio']:.3f}** |",
        ]
    )


def _add_arguments(parser) -> None:
    parser.add_argument("--lake", type=Path, default=None, help="lake root (default: config's)")
    parser.add_argument(
        "--params",
        choices=("train", "config"),
        default="train",
        help="train: the params in train.json for the date (config's if absent); config: train.*",
    )
    parser.add_argument("--repeat", type=int, default=3)
    default_out = PROJECT / ".local" / "bench" / "vs_bare_train.json"
    parser.add_argument("--out", type=Path, default=default_out)


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__, _add_arguments)
    opts, run_date = args.extras, args.run_date
    if opts["repeat"] < 1:
        raise ValueError(f"--repeat must be at least 1, got {opts['repeat']}")
    lake = Lake(opts["lake"]) if opts["lake"] else args.lake
    params, params_source = load_params(lake, run_date, args.cfg.train, opts["params"])
    if params.use_gpu:
        raise ValueError("the params ask for the GPU; this benchmark compares CPU fits")
    cutoff = pd.Timestamp(lake.read_stage_report(run_date, "split")["cutoff"])
    columns = [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    events = read_partition(lake, "splits", "train", run_date, columns)
    if events.empty:
        train_path = lake.partition("splits", "train", run_date)
        raise EmptyTrainingSetError(f"no training events in {train_path}")
    data = confidence_matrix(interactions_for(events, params, as_of=cutoff), params)

    runs: dict[str, list[float]] = {"bare_fit": [], "pipeline_fit": [], "pipeline_path": []}
    for rep in range(opts["repeat"]):
        for which in ("pipeline", "bare") if rep % 2 == 0 else ("bare", "pipeline"):
            if which == "bare":
                runs["bare_fit"].append(bare_fit(data, params))
                continue
            pipe = pipeline_fit(events, params, cutoff)
            if (pipe["matrix"] != data.matrix).nnz:
                raise RuntimeError("the pipeline built a different matrix from the same events")
            runs["pipeline_fit"].append(pipe["fit_s"])
            runs["pipeline_path"].append(pipe["path_s"])

    median = {key: statistics.median(values) for key, values in runs.items()}
    ratio = median["pipeline_fit"] / median["bare_fit"]
    result = {
        "command": "python -m jobs.tools.bench_train " + " ".join(argv or sys.argv[1:]),
        "run_date": run_date.isoformat(),
        "lake": str(lake.root),
        "params_source": params_source,
        "params": params.model_dump(mode="json"),
        "repeat": opts["repeat"],
        "events": len(events),
        "matrix": matrix_shape(data.matrix),
        "num_threads": params.num_threads or os.cpu_count(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "blas_threads": blas_threads(),
        "runs": {key: [round(s, 4) for s in values] for key, values in runs.items()},
        "median_s": {key: round(s, 4) for key, s in median.items()},
        "seconds_per_iteration": {
            key: round(s / params.iterations, 5) for key, s in median.items()
        },
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "within_goal": ratio <= GOAL_RATIO,
        "machine": machine(),
    }
    write_json_atomic(opts["out"], result)
    print(render(result))
    print(f"\nwritten to {opts['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
