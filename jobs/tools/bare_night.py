"""The bare baseline `make bench` holds a night against: the script a user would write instead.

It reads the cleaned events the train stage fits on (`splits/train/dt=D`), builds the weighted
visitor x item matrix (event weights summed, bm25 when the parameters say so), fits implicit's
ALS with the parameters train chose for D, ranks the same candidate pool (the most interacted
items) for every visitor the model knows, N = export.top_n, and writes one Parquet file. No
validation, no MLflow, no gate, no fallback and no publication: the checks the pipeline adds are
what the ratio prices.

It deliberately uses only pandas, scipy, implicit and pyarrow, and none of the pipeline's
modules but the config loader, so that its time is that of the plain libraries.

    python -m jobs.tools.bare_night --config configs/local.yaml --run-date 2015-09-18 \
        --out recs.parquet
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from jobs.infra.config import load_config

# Visitors scored per call: implicit's batch recommend holds batch x pool scores in memory.
BATCH = 20_000


def weighted_matrix(events: pd.DataFrame, weights: dict[str, float]):
    """(CSR visitors x items of summed event weights, visitor ids, item ids)."""
    events = events[events["event_type"].isin(list(weights))]
    visitors, v = np.unique(events["visitor_id"].to_numpy(), return_inverse=True)
    items, i = np.unique(events["item_id"].to_numpy(), return_inverse=True)
    w = events["event_type"].map(weights).to_numpy(dtype=np.float32)
    matrix = sp.csr_matrix((w, (v, i)), shape=(len(visitors), len(items)), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix, visitors, items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run-date", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lake", type=Path, default=None, help="lake root (default: config's)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cfg = load_config(args.config)
    lake = args.lake or Path(cfg.paths.lake)
    report = lake / "_runs" / f"dt={args.run_date}" / "train.json"
    params = json.loads(report.read_text())["params"] if report.is_file() else {}
    train = {**cfg.train.model_dump(), **params}

    events = pd.read_parquet(
        lake / "splits" / "train" / f"dt={args.run_date}",
        columns=["visitor_id", "item_id", "event_type"],
    )
    matrix, visitors, items = weighted_matrix(events, train["event_weights"])
    if train["weighting"] == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        matrix = bm25_weight(matrix, K1=train["bm25_k1"], B=train["bm25_b"]).tocsr()
        matrix = matrix.astype(np.float32)
    loaded = time.perf_counter()

    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=train["factors"],
        regularization=train["regularization"],
        alpha=train["alpha"],
        iterations=train["iterations"],
        random_state=train["random_state"],
        num_threads=train["num_threads"],
    )
    model.fit(matrix, show_progress=False)
    fitted = time.perf_counter()

    # The pool: the items with the most interactions, as train's candidate_items.
    popularity = np.diff(sp.csc_matrix(matrix > 0).indptr)
    pool = None
    if train["candidate_items"] and len(items) > (train["rank_every_item_below"] or 0):
        pool = np.sort(np.argsort(-popularity, kind="stable")[: train["candidate_items"]])
    n = cfg.export.top_n
    writer = None
    for start in range(0, len(visitors), BATCH):
        rows = np.arange(start, min(start + BATCH, len(visitors)))
        ids, scores = model.recommend(rows, None, N=n, filter_already_liked_items=False, items=pool)
        table = pa.table(
            {
                "user_id": np.repeat(visitors[rows], ids.shape[1]),
                "rank": np.tile(np.arange(1, ids.shape[1] + 1, dtype=np.int32), len(rows)),
                "item_id": items[ids.ravel()],
                "score": scores.ravel(),
            }
        )
        writer = writer or pq.ParquetWriter(args.out, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "visitors": len(visitors),
                "items": len(items),
                "nnz": int(matrix.nnz),
                "pool": None if pool is None else len(pool),
                "top_n": n,
                "load_s": round(loaded - started, 1),
                "fit_s": round(fitted - loaded, 1),
                "score_and_write_s": round(done - fitted, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
