"""A real shop's export through one night, as a user would load it: the files as delivered, one
config overlay, every stage in order on one Spark session, a private lake, MLflow store and local
S3 endpoint. Prints and writes the model table: every model's NDCG@10 on the same split, what the
gate decided, and what was published with its NDCG@10 against the best baseline.

    python -m jobs.tools.bench_real --data ../shared/data/real/taobao_userbehavior \
        --config configs/examples/taobao.yaml --date 2017-11-26 --out real-taobao.json

The export's files are landed (hard-linked or copied) into the workspace, never into the repo.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from jobs.infra.config import load_config

PROJECT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "clean", "validate", "split", "train", "evaluate", "gate", "export")
SPARK_STAGES = STAGES[:4]
# The models a shop could run instead: the published lists must hold up against the best.
BASELINES = ("popularity", "recent_popularity", "repeat", "item_knn", "user_knn", "ease")
# EASE is scored at each of these L2 penalties beside the night, for the best-lambda bar.
EASE_L2 = (1.0, 10.0, 50.0, 200.0, 500.0)
# The bar the published lists are held to: what a shop would otherwise run.
BAR = ("popularity", "recent_popularity", "repeat", "item_knn", "ease", "ease (best l2)")
log = logging.getLogger("bench_real")


def _overlay(workdir: Path, config: Path, endpoint: str) -> Path:
    path = workdir / "overlay.yaml"
    path.write_text(
        f"extends: {config.resolve()}\n"
        f"paths: {{lake: {workdir / 'lake'}, raw: {workdir / 'raw'}, "
        f"landing: {workdir / 'landing'}, reports: {workdir / 'reports'}}}\n"
        f"mlflow: {{tracking_uri: 'sqlite:///{workdir / 'mlflow.db'}', "
        f"artifact_root: {workdir / 'artifacts'}}}\n"
        f"storage: {{endpoint_url: '{endpoint}', bucket: bench-real, prefix: nightly}}\n"
    )
    return path


def _land(data: Path, landing: Path) -> list[str]:
    """Every file of the export folder but its notes, as delivered, into the day's folder."""
    landing.mkdir(parents=True, exist_ok=True)
    landed = []
    for path in sorted(p for p in data.iterdir() if p.is_file() and p.suffix != ".md"):
        target = landing / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        landed.append(path.name)
    return landed


def model_table(evaluation: dict, gate: dict) -> dict:
    """NDCG@10 of every model scored, the best baseline, and the published model's share of it."""
    scores = {"challenger (als)": evaluation["challenger"]["ndcg_at_10"]}
    for name, metrics in evaluation.get("baselines", {}).items():
        scores[name] = metrics["ndcg_at_10"]
    baselines = {k: v for k, v in scores.items() if k in BASELINES}
    best = max(baselines, key=baselines.get) if baselines else None
    # The gate names the family it published: ALS is the challenger; a gated night, the champion.
    published = "challenger (als)" if gate.get("promote") else gate.get("published_family")
    published_ndcg = scores.get(published) if published else None
    return {
        "ndcg_at_10": scores,
        "best_baseline": best,
        "published": published,
        "published_ndcg_at_10": published_ndcg,
        "published_vs_best_baseline": (
            round(published_ndcg / baselines[best], 4)
            if best and baselines[best] and published_ndcg is not None
            else None
        ),
    }


def ease_grid(cfg, run_date: date, l2s: tuple[float, ...]) -> dict[str, float]:
    """EASE's NDCG@10 for each L2 penalty, scored as evaluate scores every model (the same
    split, visitors, exclusions and truth): the issue's 'EASE at its best lambda' bar."""
    from jobs.evaluate import truth_sets
    from jobs.infra.paths import Lake, read_partition
    from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
    from jobs.recommenders.ease import EaseRecommender
    from jobs.recommenders.interactions import build_interactions
    from jobs.recommenders.metrics import ranking_metrics

    lake, columns = Lake(cfg.paths.lake), [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    train = read_partition(lake, "splits", "train", run_date, columns)
    test = read_partition(lake, "splits", "test", run_date, columns)
    truth = truth_sets(train, test)["main"]
    seen = train[EVENT_TYPE].isin(cfg.export.exclude_seen_event_types)
    exclude = train.loc[seen, [VISITOR_ID, ITEM_ID]]
    interactions = build_interactions(train, cfg.train.event_weights)
    scores = {}
    for l2 in l2s:
        model = EaseRecommender.fit(interactions, l2=l2, max_items=cfg.evaluate.ease_max_items)
        lists = model.recommend(truth[VISITOR_ID].unique(), 10, exclude=exclude)
        scores[str(l2)] = ranking_metrics(lists, truth, (10,))["ndcg_at_10"]
    return scores


def run(data: Path, config: Path, run_date: date, workdir: Path) -> dict:
    from moto.server import ThreadedMotoServer

    from jobs import clean, evaluate, export, gate, ingest, split, train, validate
    from jobs.infra.spark import get_spark
    from jobs.infra.storage import s3_client
    from jobs.tools.processes import free_port

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    result: dict = {"data": str(data), "config": str(config), "run_date": run_date.isoformat()}
    spark = None
    try:
        cfg = load_config(_overlay(workdir, config, f"http://127.0.0.1:{port}"), environ={})
        s3_client(cfg.storage).create_bucket(Bucket=cfg.storage.bucket)
        source = cfg.ingest.sources[0].name
        result["landed"] = _land(data, cfg.paths.landing / source / f"dt={run_date}")
        spark = get_spark("bench-real", cfg)
        stages = (ingest, clean, validate, split, train, evaluate, gate, export)
        modules = dict(zip(STAGES, stages, strict=True))
        reports, seconds = {}, {}
        for name, module in modules.items():
            started = time.perf_counter()
            args = (cfg, run_date, spark) if name in SPARK_STAGES else (cfg, run_date)
            try:
                reports[name] = module.run(*args)
            except Exception as err:  # the table records where a night stops, then goes on
                log.exception("%s failed", name)
                result["failed"] = {"stage": name, "error": f"{type(err).__name__}: {err}"}
                break
            finally:
                seconds[name] = round(time.perf_counter() - started, 1)
        result["seconds"] = seconds
        ingested = reports.get("ingest", {})
        result["rows"] = {
            "raw": ingested.get("raw_rows"),
            "accepted": ingested.get("accepted"),
            "quarantined": ingested.get("quarantined"),
            "skipped_files": ingested.get("skipped_files"),
            "after_clean": reports.get("clean", {}).get("rows_out"),
        }
        if "split" in reports:
            result["split"] = {k: reports["split"][k] for k in ("cutoff", "cutoff_rule")}
            result["split"]["test_visitors"] = reports["split"]["test"]["visitors"]
        if "evaluate" in reports and "gate" in reports:
            result["models"] = model_table(reports["evaluate"], reports["gate"])
            result["gate"] = {k: reports["gate"].get(k) for k in ("decision", "reasons")}
        if "split" in reports:
            grid = ease_grid(cfg, run_date, EASE_L2)
            best = max(grid, key=grid.get)
            result["ease_by_l2"] = grid
            if "models" in result:
                models = result["models"]
                models["ndcg_at_10"]["ease (best l2)"] = grid[best]
                bar = max(v for k, v in models["ndcg_at_10"].items() if k in BAR)
                models["best_baseline_or_ease"] = bar
                models["published_vs_best"] = (
                    round(models["published_ndcg_at_10"] / bar, 4) if bar else None
                )
        if "export" in reports:
            recs = reports["export"]["recommendations"]
            result["published"] = {"users": recs["users"], "latest": recs["latest"]}
        result["train"] = {
            k: reports.get("train", {}).get(k) for k in ("tuned_on", "tuning_note", "params")
        }
    finally:
        if spark is not None:
            spark.stop()
        server.stop()
    return result


def export_arguments(parser: argparse.ArgumentParser, workdir: str, argv) -> argparse.Namespace:
    """--data, --config, --date, --out and --workdir (under .local/), parsed; logging on.
    The tools that run a real export as delivered share them."""
    parser.add_argument("--data", required=True, type=Path, help="the export's folder")
    parser.add_argument("--config", required=True, type=Path, help="the overlay for this export")
    parser.add_argument("--date", required=True, type=date.fromisoformat, help="logical date")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument("--workdir", type=Path, default=PROJECT / ".local" / workdir)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder")
    args.workdir = args.workdir / args.data.name
    return args


def write_result(result: dict, out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = export_arguments(parser, "bench-real", argv)
    result = run(args.data, args.config, args.date, args.workdir)
    print(json.dumps(result, indent=2, default=str))
    write_result(result, args.out)
    return 1 if "failed" in result else 0


if __name__ == "__main__":
    raise SystemExit(main())
