"""Export: the champion's top-N for every visitor and similar items for every catalog item,
published atomically to object storage.

Every visitor with history up to the logical date gets `export.top_n` items from the model that
holds the `champion` alias, never an item the visitor already bought
(`export.exclude_seen_event_types`), nor one unavailable in the catalog as of the logical date,
nor a deny-listed one. Lists the model cannot fill (visitors it has never seen, short lists) are
filled with popular items of the visitor's top categories, then with recent popularity
(decayed). Every catalog item gets `export.similar_items` neighbours by cosine of the ALS item
factors; items without interactions get their category's popular items. Each row says where it
came from (`als`, `category_popular`, `popular`).

With `rerank` weights other than the defaults, each visitor's top `rerank.candidates` are
re-ranked (diversity, freshness, catalog boosts, cold-start shuffle; recommenders/rerank.py) before
the top N is kept; `exclude_category_ids` removes whole categories from every list.

Visitors are scored in batches of `export.visitors_per_file`, one Parquet and one JSON Lines
file (Amazon Personalize batch output shape) per batch, so memory stays bounded. Files are
staged in the lake in a folder of this attempt's own (`exports/_staging/run=RUN_ID/`), then
published under the date's lock (jobs.infra.storage.DateWriter): both datasets uploaded and
verified against the store's checksums, then the release pointer `latest.json` names the two
runs together, then each dataset's own `latest.json` follows. The pointers move only forward in
logical date: a backfill publishes its dated runs and leaves them where they are, unless
`--force-latest`. Once published, the staged files replace the lake's
`exports/<dataset>/dt=D/` (monitor and erase read them there); older dates beyond
`export.retention_days` are deleted afterwards, never a run a pointer names.

When the gate kept the champion (the challenger was gated), the challenger's lists for
`export.shadow_visitors` visitors are also published under `shadow/recommendations/`, with a
manifest but never a latest.json, so the team can see what it would have shown; a rerun whose
challenger is promoted deletes that date's shadow.

Run alone (credentials from the environment):
    python -m jobs.export --run-date 2015-09-18 --config configs/local.yaml [--run-id ID] \
        [--force-latest]
Under Airflow the DAG runs it in the task process (jobs.infra.tasks.export), with the S3 client
built from the Airflow connection `storage.aws_conn_id` (jobs.infra.storage.s3_client).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jobs.feeds.sources import ID_COLUMN, RAW_ID
from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config
from jobs.infra.paths import Lake, end_of_day, read_partition
from jobs.infra.progress import Progress
from jobs.infra.schemas import (
    AVAILABLE,
    CATEGORY_ID,
    EVENT_TS,
    EVENT_TYPE,
    ITEM_ID,
    MODEL_VERSION,
    RANK,
    SCORE,
    SOURCE,
    VISITOR_ID,
)
from jobs.recommenders.base import (
    SIMILAR_ITEM_ID,
    Fallback,
    Recommender,
    build_fallback,
    sort_lists,
    visitor_range,
)
from jobs.recommenders.rerank import Reranker, sample_visitors

log = logging.getLogger("export")

RECS_DATASET = "recommendations"
SIMILAR_DATASET = "similar_items"
SHADOW_DATASET = "shadow/recommendations"
EXPORT_COLUMNS = ["user_id", RANK, ITEM_ID, SCORE, SOURCE, MODEL_VERSION]
SIMILAR_COLUMNS = [ITEM_ID, RANK, SIMILAR_ITEM_ID, SCORE, SOURCE, MODEL_VERSION]


class NoChampionError(RuntimeError):
    """No model holds the champion alias, so there is nothing safe to publish."""


@dataclass(frozen=True)
class IdNames:
    """The shop's own text for the ids it writes as text (bronze/id_dictionary up to the
    logical date): the export gives them back, so the shop's services look up their own ids."""

    by_column: dict[str, pd.Series]  # visitor_id / item_id -> text, indexed by integer id

    @classmethod
    def read(cls, lake: Lake, run_date: date) -> IdNames:
        dates = lake.dates_until("bronze", "id_dictionary", run_date)
        parts = [pd.read_parquet(lake.partition("bronze", "id_dictionary", d)) for d in dates]
        known = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if known.empty:
            return cls({})
        known = known.drop_duplicates([ID_COLUMN, "id"])
        return cls(
            {
                column: group.set_index("id")[RAW_ID]
                for column, group in known.groupby(ID_COLUMN, sort=True)
            }
        )

    def restore(self, rows: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
        """`rows` with each output column (-> the id column it holds) back in the shop's text;
        an id the dictionary lacks (an integer-id source beside a text one) as its digits."""
        for out, id_column in columns.items():
            names = self.by_column.get(id_column)
            if names is not None and not names.empty:
                text = rows[out].map(names)
                rows[out] = text.where(text.notna(), rows[out].astype(str))
        return rows


def to_export_rows(recs: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """The published Parquet columns: user_id, rank, item_id, score, source, model_version."""
    out = recs.rename(columns={VISITOR_ID: "user_id"})
    out[MODEL_VERSION] = model_version
    return sort_lists(out[EXPORT_COLUMNS], "user_id")


def to_personalize_lines(
    rows: pd.DataFrame, key: str = "user_id", input_name: str = "userId", item_column: str = ITEM_ID
) -> list[str]:
    """One JSON line per key, shaped like Amazon Personalize batch inference output.

    `rows` must be sorted by key, then rank. Built column-wise with Arrow's string kernels
    (ids and names are plain digits and letters, so nothing needs escaping); scores are rounded
    to 6 decimals and written in their shortest form.
    """
    keys = rows[key].to_numpy()
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], int)
    offsets = pa.array(np.r_[starts, len(keys)].astype(np.int32))

    def joined(values: pa.Array, quote: str) -> pa.Array:
        text = _json_text(values)
        if quote:
            text = pc.binary_join_element_wise(quote, text, quote, "")
        return pc.binary_join(pa.ListArray.from_arrays(offsets, text), ",")

    items = joined(rows[item_column].to_numpy(), '"')
    scores = joined(np.round(rows[SCORE].to_numpy(dtype=np.float64), 6), "")
    users = _json_text(keys[starts])
    lines = pc.binary_join_element_wise(
        f'{{"input":{{"{input_name}":"',
        users,
        '"},"output":{"recommendedItems":[',
        items,
        '],"scores":[',
        scores,
        ']},"error":null}',
        "",
    )
    return lines.to_pylist()


def _json_text(values: np.ndarray) -> pa.Array:
    """Values as JSON string contents: numbers as Arrow writes them, text escaped."""
    if values.dtype.kind in "iuf":
        return pc.cast(pa.array(values), pa.string())
    return pa.array([json.dumps(str(v))[1:-1] for v in values], pa.string())


def write_part(
    rows: pd.DataFrame, out_dir: Path, part: int, key: str, input_name: str, item_column: str
) -> list[Path]:
    """Write one Parquet and one JSON Lines file for a batch of lists."""
    parquet = out_dir / f"part-{part:05d}.parquet"
    rows.to_parquet(parquet, index=False)
    jsonl = out_dir / f"part-{part:05d}.jsonl"
    lines = to_personalize_lines(rows, key, input_name, item_column)
    jsonl.write_text("".join(line + "\n" for line in lines))
    return [parquet, jsonl]


def _staging(lake: Lake, run_id: str) -> Path:
    # One folder per attempt (two may share a run id): exports never write into each other's.
    return lake.root / "exports" / "_staging" / f"run={run_id}-{uuid.uuid4().hex[:8]}"


def _install(staged: Path, partition: Path) -> None:
    """Replace the lake's copy of a published dataset with the staged files, by renames."""
    partition.parent.mkdir(parents=True, exist_ok=True)
    old = partition.with_name(f"{partition.name}.replaced-{uuid.uuid4().hex}")
    if partition.exists():
        os.replace(partition, old)
    os.replace(staged, partition)
    shutil.rmtree(old, ignore_errors=True)


def _reset(out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def write_recommendations(
    recommender,
    visitors: np.ndarray,
    n: int,
    exclude: pd.DataFrame,
    unavailable: np.ndarray,
    fallback: Fallback,
    model_version: str,
    out_dir: Path,
    per_file: int,
    reranker: Reranker | None = None,
    names: IdNames | None = None,
) -> tuple[list[Path], dict]:
    """Score `visitors` (sorted) batch by batch and write each batch's files; returns the files
    and counts (users, rows, rows by source). With a `reranker`, its `candidates` per visitor
    are scored and re-ranked down to `n`."""
    _reset(out_dir)
    exclude = exclude.sort_values(VISITOR_ID)
    excluded_visitors = exclude[VISITOR_ID].to_numpy()
    files, counts = [], {"users": 0, "rows": 0, "rows_by_source": {}}
    progress = Progress(log, "recommendations", len(visitors), "visitors")
    for part, start in enumerate(range(0, len(visitors), per_file)):
        batch = visitors[start : start + per_file]
        recs = recommender.recommend(
            batch,
            n if reranker is None else reranker.candidates,
            exclude=exclude.iloc[visitor_range(excluded_visitors, batch)],
            unavailable=unavailable,
            fallback=fallback,
        )
        if reranker is not None:
            recs = reranker.apply(recs, n)
        rows = to_export_rows(recs, model_version)
        if names is not None:
            rows = names.restore(rows, {"user_id": VISITOR_ID, ITEM_ID: ITEM_ID})
        files += write_part(rows, out_dir, part, "user_id", "userId", ITEM_ID)
        _count(counts, rows, "user_id")
        progress.advance(len(batch))
    return files, counts


def write_similar_items(
    recommender,
    items: np.ndarray,
    m: int,
    fallback: Fallback,
    catalog: pd.DataFrame,
    unavailable: np.ndarray,
    model_version: str,
    out_dir: Path,
    per_file: int,
    names: IdNames | None = None,
) -> tuple[list[Path], dict]:
    """Similar items for `items` (sorted), batch by batch; returns the files and counts."""
    _reset(out_dir)
    files, counts = [], {"items": 0, "rows": 0, "rows_by_source": {}}
    progress = Progress(log, "similar items", len(items), "items")
    for part, start in enumerate(range(0, len(items), per_file)):
        sims = recommender.similar_items(
            items[start : start + per_file], m, fallback, catalog, unavailable
        )
        sims[MODEL_VERSION] = model_version
        rows = sort_lists(sims[SIMILAR_COLUMNS], ITEM_ID)
        if names is not None:
            rows = names.restore(rows, {ITEM_ID: ITEM_ID, SIMILAR_ITEM_ID: ITEM_ID})
        files += write_part(rows, out_dir, part, ITEM_ID, "itemId", SIMILAR_ITEM_ID)
        _count(counts, rows, ITEM_ID)
        progress.advance(len(items[start : start + per_file]))
    return files, counts


def _count(counts: dict, rows: pd.DataFrame, key: str) -> None:
    counts["users" if key == "user_id" else "items"] += int(rows[key].nunique())
    counts["rows"] += len(rows)
    for source, k in rows[SOURCE].value_counts().items():
        counts["rows_by_source"][source] = counts["rows_by_source"].get(source, 0) + int(k)


def was_gated(lake: Lake, run_date: date) -> bool:
    """True when the date's gate report says the challenger was not promoted."""
    path = lake.stage_report(run_date, "gate")
    return path.is_file() and json.loads(path.read_text())["decision"] != "promoted"


def _default_run_id() -> str:
    # Names this attempt only; no data depends on it.
    # Random suffix: two manual attempts in one second must not share a folder.
    return f"manual-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ExportInputs:
    recommender: Recommender  # the champion, any family (recommenders/pyfunc.py FAMILIES)
    model_version: str
    visitors: np.ndarray  # everyone with history up to the logical date, sorted
    exclude: pd.DataFrame  # visitor_id, item_id never to recommend back
    blocked: np.ndarray  # item ids unavailable, deny-listed or in an excluded category
    fallback: Fallback
    catalog: pd.DataFrame  # item_id, category_id, available, first_seen_ts, ...
    reranker: Reranker | None  # None: the configured weights keep the model's order
    names: IdNames  # the shop's text for text ids


def load_inputs(cfg: Config, lake: Lake, run_date: date) -> ExportInputs:
    """The champion and everything the export filters by, as of the logical date."""
    import mlflow

    from jobs.infra.tracking import CHAMPION, init_tracking, version_by_alias
    from jobs.recommenders.pyfunc import load_recommender

    ex = cfg.export
    init_tracking(cfg)
    champion = version_by_alias(mlflow.MlflowClient(), cfg.mlflow.model_name, CHAMPION)
    if champion is None:
        raise NoChampionError(
            f"no version of {cfg.mlflow.model_name} holds the '{CHAMPION}' alias: the gate has "
            f"not promoted any model yet (see {lake.stage_report(run_date, 'gate')}); "
            "nothing was published"
        )
    version = str(champion.version)
    recommender = load_recommender(f"models:/{cfg.mlflow.model_name}/{version}")
    events = read_partition(
        lake, "silver", "events", run_date, [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    )
    catalog = read_partition(lake, "bronze", "catalog", run_date)
    excluded = catalog[CATEGORY_ID].isin(ex.exclude_category_ids)
    blocked = catalog.loc[~catalog[AVAILABLE] | excluded, ITEM_ID].to_numpy(dtype=np.int64)
    blocked = np.union1d(blocked, np.asarray(ex.deny_item_ids, dtype=np.int64))
    as_of = pd.Timestamp(end_of_day(run_date))
    weights = cfg.rerank.weights()
    reranker = None
    if not weights.is_identity:
        reranker = Reranker.from_catalog(weights, catalog, as_of, run_date, cfg.rerank.candidates)
    fallback = build_fallback(
        events,
        catalog,
        cfg.train.event_weights,
        as_of,
        ex.popularity_half_life_days,
        ex.fallback_categories,
        depth=max(ex.top_n * 2, ex.similar_items * 2, cfg.rerank.candidates),
    ).without(blocked)
    exclude = events.loc[
        events[EVENT_TYPE].isin(ex.exclude_seen_event_types), [VISITOR_ID, ITEM_ID]
    ].drop_duplicates()
    return ExportInputs(
        recommender,
        version,
        np.sort(events[VISITOR_ID].unique()),
        exclude,
        blocked,
        fallback,
        catalog,
        reranker,
        IdNames.read(lake, run_date),
    )


def publish_shadow(
    cfg: Config,
    lake: Lake,
    run_date: date,
    run_id: str,
    inputs: ExportInputs,
    client,
    facts,
    staging: Path,
) -> dict | None:
    """The gated challenger's lists for a sample of visitors, under shadow/ (no pointer);
    None, and the date's shadow deleted, when the challenger was promoted or shadows are off."""
    from jobs.infra.storage import apply_retention, publish, remove_date
    from jobs.recommenders.pyfunc import load_recommender

    ex = cfg.export
    if not ex.shadow_visitors or not was_gated(lake, run_date):
        remove_date(client, cfg.storage, SHADOW_DATASET, run_date)
        # Older shadows age out on promoted nights too.
        apply_retention(client, cfg.storage, SHADOW_DATASET, run_date, ex.retention_days)
        return None
    trained = lake.read_stage_report(run_date, "train")
    sample = sample_visitors(inputs.visitors, ex.shadow_visitors, run_date)
    staged = staging / "shadow_recommendations"
    files, counts = write_recommendations(
        load_recommender(trained["model_uri"]),
        sample,
        ex.top_n,
        inputs.exclude,
        inputs.blocked,
        inputs.fallback,
        str(trained["model_version"]),
        staged,
        ex.visitors_per_file,
        inputs.reranker,
        inputs.names,
    )
    shadow_facts = {
        **facts,
        "model_version": str(trained["model_version"]),
        "champion_version": inputs.model_version,
        "shadow": True,
    }
    pub = publish(
        client,
        cfg.storage,
        SHADOW_DATASET,
        run_date,
        run_id,
        files,
        {**counts, "list_length": ex.top_n, **shadow_facts},
        move_latest=False,
    )
    _install(staged, lake.partition("exports", "shadow_recommendations", run_date))
    deleted = apply_retention(client, cfg.storage, SHADOW_DATASET, run_date, ex.retention_days)
    log.info(
        "shadow: challenger %s for %d visitors at %s",
        trained["model_version"],
        len(sample),
        pub.uri,
    )
    return {
        **counts,
        "model_version": str(trained["model_version"]),
        "uri": pub.uri,
        "files": [f["key"] for f in pub.manifest["files"]],
        "retention_deleted": deleted,
    }


def _add_flags(parser) -> None:
    parser.add_argument(
        "--run-id",
        default=None,
        help="names this attempt's folder (default: manual-<UTC time>-<random>)",
    )
    parser.add_argument(
        "--force-latest",
        action="store_true",
        help="move latest.json to this date even if it names a newer one (logged)",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__, _add_flags)
    run(
        args.cfg,
        args.run_date,
        run_id=args.extras["run_id"],
        force_latest=args.extras["force_latest"],
    )
    return 0


def run(
    cfg: Config,
    run_date: date,
    run_id: str | None = None,
    force_latest: bool = False,
    client=None,
) -> dict:
    """The export stage for `run_date`; returns the stage report it wrote.

    `force_latest`: move the pointers to this date even when they name a newer one.
    `client`: the boto3 S3 client to publish with (default: jobs.infra.storage.s3_client's).
    """
    lake = Lake(cfg.paths.lake)
    run_id = run_id or _default_run_id()
    if force_latest:
        log.warning(
            "export %s (run %s): --force-latest, latest.json may move back", run_date, run_id
        )
    staging = _staging(lake, run_id)
    try:
        return _export(cfg, lake, run_date, run_id, force_latest, staging, client)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export(
    cfg: Config,
    lake: Lake,
    run_date: date,
    run_id: str,
    force_latest: bool,
    staging: Path,
    client=None,
) -> dict:
    from jobs.infra.storage import DateWriter, apply_retention, s3_client

    ex = cfg.export
    inputs = load_inputs(cfg, lake, run_date)
    version = inputs.model_version
    rec_files, rec_counts = write_recommendations(
        inputs.recommender,
        inputs.visitors,
        ex.top_n,
        inputs.exclude,
        inputs.blocked,
        inputs.fallback,
        version,
        staging / RECS_DATASET,
        ex.visitors_per_file,
        inputs.reranker,
        inputs.names,
    )
    items = np.sort(inputs.catalog[ITEM_ID].unique())
    sim_files, sim_counts = write_similar_items(
        inputs.recommender,
        items,
        ex.similar_items,
        inputs.fallback,
        inputs.catalog,
        inputs.blocked,
        version,
        staging / SIMILAR_DATASET,
        ex.visitors_per_file,
        inputs.names,
    )

    client = client or s3_client(cfg.storage)
    facts = {
        "model_name": cfg.mlflow.model_name,
        "model_version": version,
        "model_family": inputs.recommender.family,
        "config_hash": cfg.fingerprint(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report = {
        "model_version": version,
        "users_in_scope": len(inputs.visitors),
        "catalog_items": len(items),
        "rerank": None if inputs.reranker is None else cfg.rerank.weights().model_dump(),
    }
    outputs = (
        (RECS_DATASET, rec_files, rec_counts, ex.top_n),
        (SIMILAR_DATASET, sim_files, sim_counts, ex.similar_items),
    )
    datasets = [dataset for dataset, *_ in outputs]
    with DateWriter(client, cfg.storage, datasets, run_date, run_id) as writer:
        pubs = [
            writer.upload(dataset, files, {**counts, "list_length": size, **facts})
            for dataset, files, counts, size in outputs
        ]
        # One move names both runs: a consumer never pairs two nights' lists.
        pubs = writer.move_latest(pubs, release=True, force=force_latest)
        for dataset in datasets:
            writer.remove_other_runs(dataset)
            _install(staging / dataset, lake.partition("exports", dataset, run_date))
    moved = all(pub.latest is not None for pub in pubs)
    if not moved:
        log.warning(
            "export %s: published under dt=%s, but latest.json names a newer date and was not "
            "moved (--force-latest moves it)",
            run_date,
            run_date,
        )
    report["latest_moved"] = moved
    for (dataset, _, counts, size), pub in zip(outputs, pubs, strict=True):
        deleted = apply_retention(client, cfg.storage, dataset, run_date, ex.retention_days)
        report[dataset] = {
            **counts,
            "list_length": size,
            "uri": pub.uri,
            "latest": pub.latest,
            "files": [f["key"] for f in pub.manifest["files"]],
            "retention_deleted": deleted,
        }
    report["shadow"] = publish_shadow(cfg, lake, run_date, run_id, inputs, client, facts, staging)
    lake.write_stage_report(run_date, "export", report)
    log.info("export %s: %s", run_date, report)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
