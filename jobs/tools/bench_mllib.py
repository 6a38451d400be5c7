"""Benchmark of the two train engines on one split: implicit ALS vs Spark MLlib ALS, side by side.

Reads the training and test splits of D from a lake (a `make bench` workspace), builds the
confidence matrix once with the parameters the train stage chose for D (train.json; config's
`train.*` with `--params config`), then fits it with each engine in the same process:

- implicit: `fit_als`, what the train stage runs by default;
- spark_mllib: `fit_mllib_als` on a Spark session from the config (local[*] by default), timed
  from the pandas matrix to factors back in numpy (the DataFrame build and the collect included);
  the session start is timed apart.

Both models are then scored by the same code as evaluate's main metrics: `AlsRecommender`
recommends for the warm test visitors (purchases before the cutoff excluded) and NDCG@10 and
recall@20 are computed on the warm visitors x warm items of the test window.

End to end (train, then lists of export.top_n for every visitor in the matrix, written as
Parquet), each engine the way it would naturally be run:

- this pipeline: the implicit fit, then export's `write_recommendations` (candidate pool,
  purchased items excluded, fallback, Parquet and JSON Lines, in batches);
- the all-Spark alternative: the MLlib fit, then `ALSModel.recommendForAllUsers` written with
  `DataFrame.write.parquet` (every item ranked, nothing excluded).

    python -m jobs.tools.bench_mllib --config configs/local.yaml --run-date 2015-09-18 \
        --lake .local/bench/scale-1/lake --out docs/benchmarks/mllib-scale1.json
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.evaluate import truth_sets
from jobs.export import write_recommendations
from jobs.infra.cli import parse_stage_args
from jobs.infra.paths import Lake, read_partition, write_json_atomic
from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.base import Fallback
from jobs.recommenders.interactions import candidate_pool, rank_by_popularity
from jobs.recommenders.metrics import ranking_metrics
from jobs.recommenders.tuning import confidence_matrix, fit_als, interactions_for
from jobs.tools.bench import PROJECT, machine
from jobs.tools.bench_train import blas_threads, load_params, matrix_shape

KS = (10, 20)


def score(recommender, truth: pd.DataFrame, exclude: pd.DataFrame) -> dict:
    """NDCG@10, recall@20 (and the rest at 10 and 20) of `recommender` on `truth`, as evaluate
    does."""
    started = time.perf_counter()
    lists = recommender.recommend(truth[VISITOR_ID].unique(), max(KS), exclude=exclude)
    seconds = time.perf_counter() - started
    metrics = ranking_metrics(lists, truth, KS)
    return {"recommend_s": round(seconds, 3), **{k: round(v, 6) for k, v in metrics.items()}}


def jvm_linear_algebra(spark) -> dict:
    """The BLAS and LAPACK MLlib uses in the JVM: native (JNI*, a system libblas.so.3 such as
    OpenBLAS) or pure Java (VectorBLAS / F2j*), which decides much of its speed."""
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib
    return {
        "jvm_blas": netlib.blas.BLAS.getInstance().getClass().getSimpleName(),
        "jvm_lapack": netlib.lapack.LAPACK.getInstance().getClass().getSimpleName(),
    }


def render(result: dict) -> str:
    m, p = result["matrix"], result["params"]
    rows = [
        f"{m['visitors']:,} visitors x {m['items']:,} items, nnz {m['nnz']:,}; factors "
        f"{p['factors']}, {p['iterations']} iterations, regularization {p['regularization']}, "
        f"alpha {p['alpha']}; scored on {result['test_visitors']:,} warm test visitors.",
        "",
        "| engine | fit (s) | s/iteration | lists for everyone (s) | NDCG@10 | recall@20 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figure in result["engines"].items():
        rows.append(
            f"| {name} | {figure['fit_s']:.1f} | {figure['fit_s'] / p['iterations']:.2f} | "
            f"{figure.get('recommend_all_s', '')} | "
            f"{figure['ndcg_at_10']:.4f} | {figure['recall_at_20']:.4f} |"
        )
    if result.get("end_to_end_ratio"):
        rows += [
            "",
            f"End to end (fit + top {result['top_n']} for every visitor, written), all-Spark / "
            f"this pipeline: **{result['end_to_end_ratio']:.1f}x**.",
        ]
    rows += [
        "",
        f"Spark MLlib fit / implicit fit: **{result['fit_ratio']:.1f}x**; Spark session start "
        f"{result['spark_start_s']:.1f} s (not in the fit); JVM BLAS "
        f"{result['spark']['jvm_blas']}, LAPACK {result['spark']['jvm_lapack']}.",
    ]
    return "\n".join(rows)


def _end_to_end_ratio(engines: dict) -> float | None:
    """All-Spark seconds (fit + lists for everyone) over this pipeline's."""
    if "recommend_all_s" not in engines["implicit"]:
        return None
    total = {name: e["fit_s"] + e["recommend_all_s"] for name, e in engines.items()}
    return round(total["spark_mllib"] / total["implicit"], 2)


def _add_arguments(parser) -> None:
    parser.add_argument("--lake", type=Path, default=None, help="lake root (default: config's)")
    parser.add_argument("--params", choices=("train", "config"), default="train")
    parser.add_argument(
        "--fit-only",
        dest="end_to_end",
        action="store_false",
        help="skip the lists for every visitor (the end-to-end comparison)",
    )
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "benchmarks" / "mllib.json")


def main(argv: list[str] | None = None) -> int:
    from jobs.infra.spark import get_spark
    from jobs.recommenders.mllib import as_implicit, fit_mllib

    args = parse_stage_args(argv, __doc__, _add_arguments)
    cfg, opts, run_date = args.cfg, args.extras, args.run_date
    lake = Lake(opts["lake"]) if opts["lake"] else args.lake
    params, params_source = load_params(lake, run_date, cfg.train, opts["params"])
    cutoff = pd.Timestamp(lake.read_stage_report(run_date, "split")["cutoff"])
    columns = [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    train = read_partition(lake, "splits", "train", run_date, columns)
    test = read_partition(lake, "splits", "test", run_date, columns)
    interactions = interactions_for(train, params, as_of=cutoff)
    data = confidence_matrix(interactions, params)
    truth = truth_sets(train, test)["main"]
    exclude_types = cfg.export.exclude_seen_event_types
    exclude = train.loc[train[EVENT_TYPE].isin(exclude_types), [VISITOR_ID, ITEM_ID]]

    popular = rank_by_popularity(interactions)
    candidates = candidate_pool(popular, params)
    n, out = cfg.export.top_n, Path(tempfile.mkdtemp(prefix="bench-mllib-"))

    started = time.perf_counter()
    implicit_model = fit_als(data, params)
    engines = {"implicit": {"fit_s": round(time.perf_counter() - started, 2)}}
    recommender = AlsRecommender(implicit_model, data.visitor_ids, data.item_ids, [], candidates)
    engines["implicit"].update(score(recommender, truth, exclude))
    if opts["end_to_end"]:
        started = time.perf_counter()
        write_recommendations(
            recommender,
            data.visitor_ids,
            n,
            exclude,
            np.array([], dtype=np.int64),
            Fallback(popular[:10_000]),
            "bench",
            out / "implicit",
            cfg.export.visitors_per_file,
        )
        engines["implicit"]["recommend_all_s"] = round(time.perf_counter() - started, 2)
    del implicit_model, recommender

    started = time.perf_counter()
    spark = get_spark("bench-mllib", cfg)
    spark_start = time.perf_counter() - started
    started = time.perf_counter()
    fitted = fit_mllib(data, params, spark)
    mllib_model = as_implicit(fitted, data, params)
    engines["spark_mllib"] = {"fit_s": round(time.perf_counter() - started, 2)}
    recommender = AlsRecommender(mllib_model, data.visitor_ids, data.item_ids, [])
    engines["spark_mllib"].update(score(recommender, truth, exclude))
    if opts["end_to_end"]:
        started = time.perf_counter()
        fitted.recommendForAllUsers(n).write.parquet(str(out / "spark_mllib"))
        engines["spark_mllib"]["recommend_all_s"] = round(time.perf_counter() - started, 2)
    shutil.rmtree(out)
    spark_conf = {key: spark.conf.get(key, None) for key in ("spark.master", "spark.driver.memory")}
    spark_conf.update(jvm_linear_algebra(spark))
    spark.stop()

    result = {
        "command": "python -m jobs.tools.bench_mllib " + " ".join(argv or sys.argv[1:]),
        "run_date": run_date.isoformat(),
        "lake": str(lake.root),
        "params_source": params_source,
        "params": params.model_dump(mode="json"),
        "matrix": matrix_shape(data.matrix),
        "test_visitors": int(truth[VISITOR_ID].nunique()),
        "spark": spark_conf,
        "spark_start_s": round(spark_start, 2),
        "blas_threads": blas_threads(),
        "engines": engines,
        "fit_ratio": round(engines["spark_mllib"]["fit_s"] / engines["implicit"]["fit_s"], 2),
        "end_to_end_ratio": _end_to_end_ratio(engines),
        "top_n": n,
        "candidate_items": params.candidate_items,
        "machine": machine(),
    }
    write_json_atomic(opts["out"], result)
    print(render(result))
    print(f"\nwritten to {opts['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
