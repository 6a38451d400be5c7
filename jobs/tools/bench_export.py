"""Benchmark of the export step against bare `implicit`, side by side in one run.

Needs a lake and a champion for the date (run `make demo SCALE=1` first). Measures, with the
same users (those the model knows), the same N, the same purchased-item exclusions and the same
unavailable items:

- bare: implicit's ``recommend`` on a CSR of purchases, nothing else (no fallback, no files);
- pipeline: jobs.export.write_recommendations, i.e. score + filter + fallback + Parquet/JSONL.

Both rank the model's candidate pool (`train.candidate_items`) when it has one. The throughput
ratio is pipeline users/s over bare users/s (goal >= 0.8). `make bench` runs it after the export
stage, on the bench's own lake and MLflow (python -m jobs.tools.bench times the whole stage).

    python -m jobs.tools.bench_export --config configs/local.yaml --date 2015-09-18 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jobs.export import load_inputs, write_recommendations
from jobs.infra.config import load_config
from jobs.infra.paths import Lake


def bare_implicit(recommender, users: np.ndarray, n: int, exclude, blocked: np.ndarray) -> float:
    """Seconds for implicit's own recommend on `users` with the same filters."""
    rows = np.searchsorted(recommender.visitor_ids, users)
    known_items = recommender.item_ids
    pairs = exclude[exclude["visitor_id"].isin(users) & exclude["item_id"].isin(known_items)]
    csr = sp.csr_matrix(
        (
            np.ones(len(pairs), dtype=np.float32),
            (
                np.searchsorted(users, pairs["visitor_id"]),
                np.searchsorted(known_items, pairs["item_id"]),
            ),
        ),
        shape=(len(users), len(known_items)),
    )
    filter_items = np.searchsorted(known_items, blocked[np.isin(blocked, known_items)])
    if recommender.candidates is None:
        pool = {"filter_items": filter_items}
    else:
        pool = {"items": np.setdiff1d(recommender.candidates, filter_items)}
    started = time.perf_counter()
    recommender.model.recommend(rows, csr, N=n, filter_already_liked_items=True, **pool)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description="Export step vs bare implicit recommend.")
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2015, 9, 18))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="side by side on an evenly spaced sample of this many known users",
    )
    parser.add_argument("--out", default=".local/bench/vs_bare_export.json")
    args = parser.parse_args(argv)
    config = Path(args.config).resolve()
    cfg = load_config(config)
    lake = Lake(cfg.paths.lake)
    inputs = load_inputs(cfg, lake, args.date)
    rec, n = inputs.recommender, cfg.export.top_n
    warm = inputs.visitors[np.isin(inputs.visitors, rec.visitor_ids)]
    if args.users and args.users < len(warm):
        warm = warm[np.linspace(0, len(warm) - 1, args.users).astype(np.int64)]

    bare, pipeline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            bare.append(bare_implicit(rec, warm, n, inputs.exclude, inputs.blocked))
            started = time.perf_counter()
            write_recommendations(
                rec,
                warm,
                n,
                inputs.exclude,
                inputs.blocked,
                inputs.fallback,
                inputs.model_version,
                Path(tmp) / "recs",
                cfg.export.visitors_per_file,
            )
            pipeline.append(time.perf_counter() - started)

    bare_s, pipe_s = statistics.median(bare), statistics.median(pipeline)
    result = {
        "date": args.date.isoformat(),
        "repeat": args.repeat,
        "warm_users": len(warm),
        "all_users": len(inputs.visitors),
        "items_in_model": len(rec.item_ids),
        "n": n,
        "factors": int(rec.model.factors),
        "bare_implicit_s": round(bare_s, 2),
        "bare_users_per_s": round(len(warm) / bare_s),
        "pipeline_s": round(pipe_s, 2),
        "pipeline_users_per_s": round(len(warm) / pipe_s),
        "throughput_ratio": round(bare_s / pipe_s, 3),
        "bare_runs_s": [round(x, 2) for x in bare],
        "pipeline_runs_s": [round(x, 2) for x in pipeline],
        "candidate_items": None if rec.candidates is None else len(rec.candidates),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
