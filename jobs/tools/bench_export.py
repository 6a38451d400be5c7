"""Benchmark of the export step against bare `implicit`, side by side in one run.

Needs a lake and a champion for the date (run `make demo SCALE=1` first). Measures, with the
same users (those the model knows), the same N, the same purchased-item exclusions and the same
unavailable items:

- bare: implicit's ``recommend`` on a CSR of purchases, nothing else (no fallback, no files);
- pipeline: jobs.export.write_recommendations, i.e. score + filter + fallback + Parquet/JSONL.

The throughput ratio is pipeline users/s over bare users/s (goal >= 0.8). Then the whole export
stage (`python -m jobs.export`, all visitors plus similar items, published to a local S3
endpoint) runs in a child process for its wall time and peak memory (max RSS).

    python -m jobs.tools.bench_export --config configs/local.yaml --date 2015-09-18 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jobs.core.config import load_config
from jobs.core.paths import Lake
from jobs.export import load_inputs, write_recommendations
from jobs.tools.s3_server import LOCAL_CREDENTIALS


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
    started = time.perf_counter()
    recommender.model.recommend(
        rows, csr, N=n, filter_already_liked_items=True, filter_items=filter_items
    )
    return time.perf_counter() - started


def export_stage(config: Path, run_date: date, endpoint: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of `python -m jobs.export` in a child process."""
    env = {**os.environ, "RECS__STORAGE__ENDPOINT_URL": endpoint, **LOCAL_CREDENTIALS}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.export",
            "--run-date",
            run_date.isoformat(),
            "--config",
            str(config),
            "--run-id",
            "bench",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far; this is the only child that large.
    return wall, max(peak_kb, before) / 1024**2


def _run_stage(cfg, config: Path, run_date: date) -> tuple[float, float]:
    """The export stage against a throwaway local S3 endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name=cfg.storage.region).create_bucket(
            Bucket=cfg.storage.bucket
        )
        return export_stage(config, run_date, endpoint)
    finally:
        server.stop()


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
    parser.add_argument(
        "--skip-stage",
        action="store_true",
        help="skip the full export stage run (wall time and peak memory)",
    )
    parser.add_argument("--out", default="docs/benchmarks/export.json")
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

    stage_wall, stage_peak_gb = (
        (None, None) if args.skip_stage else _run_stage(cfg, config, args.date)
    )
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
        "export_stage_wall_s": stage_wall and round(stage_wall, 1),
        "export_stage_peak_rss_gb": stage_peak_gb and round(stage_peak_gb, 2),
        "export_stage_cpu_note": "all visitors + similar items for every catalog item + upload",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
