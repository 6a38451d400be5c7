"""Export: the champion's top-N for every visitor, published atomically to object storage.

Every visitor with history up to the logical date gets `export.top_n` items from the model that
holds the `champion` alias (its own fallback fills lists the model cannot: cold visitors,
short lists), never an item the visitor already bought (`export.exclude_seen_event_types`) nor
one unavailable in the catalog as of the logical date. Files (Parquet, and JSON Lines in the
shape of Amazon Personalize batch output) are staged in the lake, then published with
jobs.core.storage.publish: files, manifest, verification, and only then latest.json.

Run alone:
    python -m jobs.export --run-date 2015-09-18 --config configs/local.yaml [--run-id ID]
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.core.cli import parse_stage_args
from jobs.core.paths import read_partition
from jobs.core.schemas import (
    AVAILABLE,
    EVENT_TYPE,
    ITEM_ID,
    MODEL_VERSION,
    RANK,
    SCORE,
    SOURCE,
    VISITOR_ID,
)

log = logging.getLogger("export")

DATASET = "recommendations"
EXPORT_COLUMNS = ["user_id", RANK, ITEM_ID, SCORE, SOURCE, MODEL_VERSION]


class NoChampionError(RuntimeError):
    """No model holds the champion alias, so there is nothing safe to publish."""


def to_export_rows(recs: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """The published Parquet columns: user_id, rank, item_id, score, source, model_version."""
    out = recs.rename(columns={VISITOR_ID: "user_id"})
    out[MODEL_VERSION] = model_version
    return out[EXPORT_COLUMNS].sort_values(["user_id", RANK]).reset_index(drop=True)


def to_personalize_lines(rows: pd.DataFrame) -> list[str]:
    """One JSON line per user, shaped like Amazon Personalize batch inference output."""
    lines = []
    for user_id, group in rows.groupby("user_id", sort=True):
        lines.append(
            json.dumps(
                {
                    "input": {"userId": str(user_id)},
                    "output": {
                        "recommendedItems": [str(i) for i in group[ITEM_ID]],
                        "scores": [round(float(s), 6) for s in group[SCORE]],
                    },
                    "error": None,
                },
                separators=(",", ":"),
            )
        )
    return lines


def write_files(rows: pd.DataFrame, out_dir: Path, visitors_per_file: int) -> list[Path]:
    """Write Parquet and JSON Lines parts of at most `visitors_per_file` users each."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    users = rows["user_id"].unique()
    files = []
    for part, start in enumerate(range(0, max(len(users), 1), visitors_per_file)):
        chunk = rows[rows["user_id"].isin(users[start : start + visitors_per_file])]
        parquet = out_dir / f"part-{part:05d}.parquet"
        chunk.to_parquet(parquet, index=False)
        jsonl = out_dir / f"part-{part:05d}.jsonl"
        jsonl.write_text("".join(line + "\n" for line in to_personalize_lines(chunk)))
        files += [parquet, jsonl]
    return files


def _default_run_id() -> str:
    # Names this attempt only; no data depends on it.
    return "manual-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def main(argv: list[str] | None = None) -> int:
    import mlflow
    import mlflow.pyfunc

    from jobs.core.storage import publish, s3_client
    from jobs.core.tracking import CHAMPION, init_tracking, version_by_alias

    args = parse_stage_args(
        argv,
        __doc__,
        lambda p: p.add_argument(
            "--run-id",
            default=None,
            help="names this attempt's folder (default: manual-<UTC time>)",
        ),
    )
    cfg, lake, run_date = args.cfg, args.lake, args.run_date
    run_id = args.extras["run_id"] or _default_run_id()

    init_tracking(cfg)
    champion = version_by_alias(mlflow.MlflowClient(), cfg.mlflow.model_name, CHAMPION)
    if champion is None:
        raise NoChampionError(
            f"no version of {cfg.mlflow.model_name} holds the '{CHAMPION}' alias: the gate has "
            f"not promoted any model yet (see {lake.stage_report(run_date, 'gate')}); "
            "nothing was published"
        )
    uri = f"models:/{cfg.mlflow.model_name}/{champion.version}"
    recommender = mlflow.pyfunc.load_model(uri).unwrap_python_model().recommender

    events = read_partition(lake, "silver", "events", run_date, [VISITOR_ID, ITEM_ID, EVENT_TYPE])
    catalog = read_partition(lake, "bronze", "catalog", run_date, [ITEM_ID, AVAILABLE])
    exclude = events[events[EVENT_TYPE].isin(cfg.export.exclude_seen_event_types)]
    unavailable = catalog.loc[~catalog[AVAILABLE], ITEM_ID].to_numpy(dtype=np.int64)
    visitors = np.sort(events[VISITOR_ID].unique())
    recs = recommender.recommend(
        visitors, cfg.export.top_n, exclude=exclude[[VISITOR_ID, ITEM_ID]], unavailable=unavailable
    )
    rows = to_export_rows(recs, str(champion.version))
    staged = write_files(
        rows, lake.partition("exports", DATASET, run_date), cfg.export.visitors_per_file
    )

    counts = {
        "users": int(rows["user_id"].nunique()),
        "rows": len(rows),
        "rows_by_source": {k: int(v) for k, v in rows[SOURCE].value_counts().items()},
        "users_in_scope": len(visitors),
    }
    facts = {
        **counts,
        "model_name": cfg.mlflow.model_name,
        "model_version": str(champion.version),
        "config_hash": cfg.fingerprint(),
        "top_n": cfg.export.top_n,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    pub = publish(s3_client(cfg.storage), cfg.storage, DATASET, run_date, run_id, staged, facts)
    report = {
        **counts,
        "model_version": str(champion.version),
        "uri": pub.uri,
        "latest": pub.latest,
        "files": [f["key"] for f in pub.manifest["files"]],
    }
    lake.write_stage_report(run_date, "export", report)
    log.info("export %s: %s", run_date, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
