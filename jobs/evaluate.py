"""Evaluate: the challenger vs baselines, the current champion and the oracle, on the test window.

Every model recommends for the same test visitors with the same rules as the export (nothing
the visitor already bought), and is scored against what those visitors did in the test window:

- main metrics (the ones the gate reads): warm visitors (seen in training) on warm items (seen
  in training), the part of the test window a collaborative model can be asked about;
- groups: all test visitors, warm and cold (unseen in training), on every test item;
- segments by training activity: new (< 5 interactions, cold ones included), casual, power (> 20);
- beyond accuracy on the main visitors: catalog coverage, intra-list diversity by category (the
  catalog as of the cutoff, from the split), novelty, popularity bias, and serendipity against
  the popularity list.

Re-ranking: the challenger's top `rerank.candidates` per visitor are re-ranked with the
configured weights and with every `rerank.compare` entry, and each is scored the same way
(NDCG, coverage, diversity, novelty, ...), so a weight's trade-off is seen before it is changed.

Audit (recommenders/audit.py): the challenger's NDCG by activity, tenure and any configured visitor
attribute; for every model, the exposure Gini over the catalog, the share of top-10 slots by
popularity decile and by category. Findings past `evaluate.audit` thresholds are logged as
warnings, listed in the report and tagged on the MLflow run (`audit_warnings`).

Baselines: global popularity, recent popularity (decayed), item-item and user-user neighbours.
On a generated shop the oracle (the generator's true preferences) gives the best achievable
NDCG@10, so the challenger's figure can be read as a share of it. Everything goes to the
challenger's MLflow run (metrics, a comparison table, plots by segment and of popularity bias)
and to the stage report the gate reads.

Full set and sample: the gate's figures (the main metrics of the challenger, the champion, every
servable baseline, and the oracle's) are on every main visitor. The diagnostics (groups and
segments, user-kNN, the challenger ranking every item, the re-ranking table, the audit) are on
`evaluate.diagnostics_visitors` test visitors drawn by a hash of visitor and logical date: the
report's `diagnostics` says how many and of how many, and in MLflow their metrics are named
`sample.*` (tags `evaluate.sample_visitors`, `evaluate.sample_seed`).

Run alone:
    python -m jobs.evaluate --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import AuditConfig, Config
from jobs.infra.paths import Lake, read_partition
from jobs.infra.schemas import CATEGORY_ID, EVENT_TS, EVENT_TYPE, ITEM_ID, RANK, VISITOR_ID
from jobs.infra.tracking import pyplot
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.audit import (
    AuditInputError,
    audit_warnings,
    exposure_by_category,
    exposure_gini,
    segment_by_attribute,
    segment_tenure,
)
from jobs.recommenders.interactions import build_interactions, rank_by_popularity
from jobs.recommenders.metrics import (
    ItemContext,
    flatten_metrics,
    metrics_by_segment,
    offline_metrics,
    ranking_metrics,
    segment_visitors,
)
from jobs.recommenders.popularity import PopularityRecommender
from jobs.recommenders.rerank import Reranker, sample_visitors

log = logging.getLogger("evaluate")

GROUPS = ("all", "warm", "cold")
# The challenger ranking every item it knows, scored beside it when it ranks a candidate pool.
ALL_ITEMS = "challenger_every_item"
# Models no gate reads, scored on the diagnostics sample only: user-kNN's and every-item
# ranking's cost per visitor grow with the visitors and the catalog (quadratic in the shop).
DIAGNOSTIC_MODELS = ("user_knn", ALL_ITEMS)
# Prefix of the MLflow metrics computed on the diagnostics sample.
SAMPLE = "sample"
# The report's figures computed on the diagnostics sample (the rest are on every main visitor).
ON_THE_SAMPLE = (
    "<model>.groups",
    "<model>.segments",
    "baselines.user_knn",
    "candidate_pool.challenger_ranking_every_item",
    "reranking",
    "exposure_by_popularity_decile",
    "audit",
)
# Visitors whose deep lists (rerank.candidates each) are re-ranked at once.
RERANK_BATCH = 20_000
# The top slots of a list the audit's exposure figures count.
SHOWN = 10
# The depth of the re-ranking table's figure over every test visitor (`all_visitors_ndcg_at_10`).
ALL_VISITORS_K = 10


def truth_sets(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Relevant (visitor_id, item_id) pairs of the test window: `main` (warm visitors, warm
    items), and per group `all`, `warm`, `cold` (every test item)."""
    pairs = test[[VISITOR_ID, ITEM_ID]].drop_duplicates()
    warm = pairs[VISITOR_ID].isin(train[VISITOR_ID].unique())
    warm_items = pairs[ITEM_ID].isin(train[ITEM_ID].unique())
    return {
        "main": pairs[warm & warm_items].reset_index(drop=True),
        "all": pairs.reset_index(drop=True),
        "warm": pairs[warm].reset_index(drop=True),
        "cold": pairs[~warm].reset_index(drop=True),
    }


# Above this share of test purchases being rebuys, hiding bought items hides what sells.
REBUY_WARNING = 0.2


def repeat_shares(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float | None]:
    """How much of the test window visitors had already touched, each a share in [0, 1]:
    `pairs` of test (visitor, item) pairs seen in training (any event), `purchases` of test
    purchases of an item the visitor had bought in training (None without test purchases)."""
    key = [VISITOR_ID, ITEM_ID]
    pairs = test[key].drop_duplicates()
    seen = pairs.merge(train[key].drop_duplicates(), on=key)
    bought = test.loc[test[EVENT_TYPE] == "purchase", key].drop_duplicates()
    before = train.loc[train[EVENT_TYPE] == "purchase", key].drop_duplicates()
    return {
        "pairs": round(len(seen) / len(pairs), 4) if len(pairs) else None,
        "purchases": round(len(bought.merge(before, on=key)) / len(bought), 4)
        if len(bought)
        else None,
    }


def diagnostics_sample(
    visitors: np.ndarray, main_visitors: np.ndarray, size: int, run_date: date
) -> np.ndarray:
    """The test visitors the diagnostics are scored on, sorted: `size` of `visitors` (all of
    them when size is 0), chosen by a hash of visitor and date, so the same ones on a rerun of
    the date. Main visitors (a subset) take their share of it, rounded up: the sample holds
    one whenever there is one, and the main metrics of the diagnostic models need it."""
    if not size or size >= len(visitors):
        return np.sort(visitors)
    from_main = math.ceil(size * len(main_visitors) / len(visitors))
    others = np.setdiff1d(visitors, main_visitors)
    return np.union1d(
        sample_visitors(main_visitors, from_main, run_date),
        sample_visitors(others, size - from_main, run_date),
    )


def restrict(truths: dict[str, pd.DataFrame], visitors: np.ndarray) -> dict[str, pd.DataFrame]:
    """Each truth set cut to `visitors`."""
    return {
        name: truth[truth[VISITOR_ID].isin(visitors)].reset_index(drop=True)
        for name, truth in truths.items()
    }


def score_model(
    recs: pd.DataFrame,
    main: pd.DataFrame,
    sampled: dict[str, pd.DataFrame],
    ks: tuple[int, ...],
    context: ItemContext,
    segments: pd.Series,
    expected: pd.DataFrame | None,
) -> dict:
    """Main metrics on `main` (flat, the gate reads them), plus `groups` and `segments`
    (nested) on the diagnostics sample's truth sets `sampled`."""
    result = offline_metrics(recs, main, ks, context=context, expected=expected)
    result["groups"] = {
        group: ranking_metrics(recs, sampled[group], ks)
        for group in GROUPS
        if not sampled[group].empty
    }
    result["segments"] = metrics_by_segment(recs, sampled["all"], ks, segments)
    return _finite(result)


def exposure_by_popularity_decile(recs: pd.DataFrame, popularity: pd.Series, k: int) -> list[float]:
    """Share of top-k recommendations going to each decile of items by training popularity
    (decile 0: the least popular tenth of the items seen in training; unseen items count in 0).
    A list flat at 0.1 means exposure follows no popularity; the popularity baseline piles up
    at decile 9."""
    ranked = popularity.rank(method="first")
    decile = np.floor((ranked - 1) / len(ranked) * 10).clip(0, 9).astype(int)
    top = recs[recs[RANK] <= k]
    counts = top[ITEM_ID].map(decile).fillna(0).astype(int).value_counts()
    shares = counts.reindex(range(10), fill_value=0) / max(len(top), 1)
    return [round(float(s), 6) for s in shares]


def compare_reranking(
    candidates: Iterable[pd.DataFrame],
    rerankers: dict[str, Reranker],
    truths: dict[str, pd.DataFrame],
    ks: tuple[int, ...],
    context: ItemContext,
    expected: pd.DataFrame | None,
) -> dict[str, dict]:
    """Per re-ranking configuration: the main metrics of its lists (cut to the largest k), and
    NDCG@10 over every test visitor (`all_visitors_ndcg_at_10`, where the cold-start shuffle
    shows). candidates: the challenger's deep lists (visitor_id, rank, item_id, score, source),
    in batches of visitors, so only the short lists are ever held for everyone."""
    # Kept per configuration: the main visitors' lists in full (every metric describes them)
    # and the others' top ALL_VISITORS_K (only NDCG over all visitors reads them), without scores.
    main_visitors = truths["main"][VISITOR_ID].unique()
    short: dict[str, list[pd.DataFrame]] = {name: [] for name in rerankers}
    for batch in candidates:
        for name, reranker in rerankers.items():
            lists = reranker.apply(batch, max(ks))[[VISITOR_ID, RANK, ITEM_ID]]
            main = lists[VISITOR_ID].isin(main_visitors).to_numpy()
            kept = main | (lists[RANK] <= ALL_VISITORS_K).to_numpy()
            short[name].append(lists[kept])
    table = {}
    for name, parts in short.items():
        lists = pd.concat(parts, ignore_index=True)
        metrics = offline_metrics(lists, truths["main"], ks, context=context, expected=expected)
        every = ranking_metrics(lists, truths["all"], (ALL_VISITORS_K,))
        metrics["all_visitors_ndcg_at_10"] = every[f"ndcg_at_{ALL_VISITORS_K}"]
        table[name] = _finite(metrics)
    return table


def audit_lists(
    lists: dict[str, pd.DataFrame],
    activity: dict[str, dict],
    truths: dict[str, pd.DataFrame],
    ks: tuple[int, ...],
    context: ItemContext,
    train: pd.DataFrame,
    as_of: pd.Timestamp,
    settings: AuditConfig,
    attributes: pd.DataFrame | None = None,
) -> dict:
    """The audit: challenger metrics per segment dimension (activity as given, tenure, each
    attribute column), exposure per model, and the warnings past `settings`' thresholds."""
    challenger, everyone = lists["challenger"], truths["all"]
    visitors = everyone[VISITOR_ID].unique()
    first_seen = train.groupby(VISITOR_ID)[EVENT_TS].min()
    dimensions = {"tenure": segment_tenure(first_seen, visitors, as_of, settings.tenure_days)}
    if attributes is not None:
        for column in attributes.columns.drop(VISITOR_ID):
            dimensions[column] = segment_by_attribute(attributes, column, visitors)
    segments = {"activity": activity}
    for name, labels in dimensions.items():
        segments[name] = _finite(metrics_by_segment(challenger, everyone, ks, labels))
    audit = {
        "segments": segments,
        "exposure_gini": {
            name: _finite(round(exposure_gini(recs, SHOWN, context.catalog_size), 6))
            for name, recs in lists.items()
        },
        "exposure_by_popularity_decile": {
            name: exposure_by_popularity_decile(recs, context.popularity, SHOWN)
            for name, recs in lists.items()
        },
        "exposure_by_category": {
            name: exposure_by_category(recs, context.categories, SHOWN)
            for name, recs in lists.items()
        },
    }
    audit["warnings"] = audit_warnings(audit, settings)
    return audit


def read_visitor_attributes(path) -> pd.DataFrame | None:
    """evaluate.audit.visitor_attributes as a frame (Parquet, else CSV), or None if unset."""
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(
            f"evaluate.audit.visitor_attributes: {path} does not exist (set it to null for none)"
        )
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    clash = {"activity", "tenure"} & set(frame.columns)
    if VISITOR_ID not in frame.columns or clash:
        raise AuditInputError(
            f"evaluate.audit.visitor_attributes {path}: needs a {VISITOR_ID!r} column and no "
            f"column named like a built-in dimension ({sorted(clash)}); "
            f"it has {list(frame.columns)}"
        )
    return frame


def baseline_models(cfg: Config, train: pd.DataFrame, cutoff: pd.Timestamp) -> dict[str, object]:
    """The configured baselines, fitted on the training split; popularity always (the gate's)."""
    from jobs.recommenders.ease import EaseRecommender
    from jobs.recommenders.neighbours import ItemKnnRecommender, UserKnnRecommender
    from jobs.recommenders.popularity import RecentPopularityRecommender
    from jobs.recommenders.repeat import RepeatRecommender

    weights = cfg.train.event_weights
    interactions = build_interactions(train, weights)
    builders = {
        "popularity": lambda: PopularityRecommender(rank_by_popularity(interactions)),
        "recent_popularity": lambda: RecentPopularityRecommender.from_events(
            train, weights, as_of=cutoff, half_life_days=cfg.evaluate.recent_half_life_days
        ),
        "repeat": lambda: RepeatRecommender.from_events(
            train, weights, as_of=cutoff, half_life_days=cfg.evaluate.repeat_half_life_days
        ),
        "item_knn": lambda: ItemKnnRecommender.fit(
            interactions,
            similarity=cfg.evaluate.item_knn_similarity,
            neighbours=cfg.evaluate.neighbours,
            num_threads=cfg.train.num_threads,
        ),
        "user_knn": lambda: UserKnnRecommender.fit(
            interactions, neighbours=cfg.evaluate.neighbours
        ),
        "ease": lambda: EaseRecommender.fit(
            interactions, l2=cfg.evaluate.ease_l2, max_items=cfg.evaluate.ease_max_items
        ),
    }
    names = dict.fromkeys(("popularity", *cfg.evaluate.baselines))
    return {name: builders[name]() for name in names}


def load_oracle(cfg: Config, cutoff: pd.Timestamp):
    """The generator's oracle, or None (with the reason logged) where there is no ground truth."""
    from jobs.shop.oracle import OracleRecommender

    folder = cfg.evaluate.ground_truth
    if folder is None:
        return None
    if not folder.is_dir():
        log.warning("no oracle: %s does not exist (set evaluate.ground_truth: null)", folder)
        return None
    return OracleRecommender.from_ground_truth(folder, as_of=cutoff)


# Baselines the registry can hold as champion (recommenders/pyfunc.py FAMILIES); user-kNN
# keeps every visitor's neighbours and is scored as a diagnostic only.
SERVABLE_BASELINES = ("popularity", "recent_popularity", "repeat", "item_knn", "ease")


def best_baseline(results: dict[str, dict]) -> str:
    """The servable baseline with the highest NDCG@10 (ties: the order above, simplest first)."""
    scored = [name for name in SERVABLE_BASELINES if name in results]
    return max(scored, key=lambda name: (results[name]["ndcg_at_10"], -scored.index(name)))


def stage_baseline(model, folder: Path) -> None:
    """Save the night's best baseline where the gate registers it from, if it wins."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save(folder)


def load_models(
    cfg: Config, challenger_uri: str, train: pd.DataFrame, cutoff: pd.Timestamp, visitors
) -> tuple[dict[str, object], object | None]:
    """Every model to score by name (challenger first), and the champion's registry version."""
    import mlflow

    from jobs.infra.tracking import CHAMPION, init_tracking, version_by_alias
    from jobs.recommenders.pyfunc import load_recommender

    init_tracking(cfg)
    # Only the test visitors' factors are kept: every visitor's are 7 GB a model at scale 10.
    challenger = load_recommender(challenger_uri).for_visitors(visitors)
    models: dict[str, object] = {"challenger": challenger}
    if challenger.candidates is not None:  # what ranking only the candidate pool costs
        models[ALL_ITEMS] = AlsRecommender(
            challenger.model, challenger.visitor_ids, challenger.item_ids, challenger.popular_items
        )
    models.update(baseline_models(cfg, train, cutoff))
    champion = version_by_alias(mlflow.MlflowClient(), cfg.mlflow.model_name, CHAMPION)
    if champion is not None:
        uri = f"models:/{cfg.mlflow.model_name}/{champion.version}"
        models["champion"] = load_recommender(uri).for_visitors(visitors)
    oracle = load_oracle(cfg, cutoff)
    if oracle is not None:
        models["oracle"] = oracle
    return models, champion


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    run(args.cfg, args.run_date)
    return 0


def run(cfg: Config, run_date: date) -> dict:
    """The evaluate stage for `run_date`; returns the stage report it wrote."""
    import mlflow

    lake = Lake(cfg.paths.lake)
    columns = [VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]
    train = read_partition(lake, "splits", "train", run_date, columns, producer="split")
    test = read_partition(lake, "splits", "test", run_date, columns, producer="split")
    catalog = read_partition(lake, "splits", "catalog", run_date, producer="split")
    cutoff = pd.Timestamp(lake.read_stage_report(run_date, "split")["cutoff"])
    trained = lake.read_stage_report(run_date, "train")
    ks, n = cfg.evaluate.k, max(cfg.evaluate.k)
    exclude_types = cfg.export.exclude_seen_event_types
    exclude = train.loc[train[EVENT_TYPE].isin(exclude_types), [VISITOR_ID, ITEM_ID]]

    truths = truth_sets(train, test)
    repeats = repeat_shares(train, test)
    if "purchase" in exclude_types and (repeats["purchases"] or 0) > REBUY_WARNING:
        log.warning(
            "evaluate %s: %.0f%% of test purchases are rebuys of an item bought before, and "
            "export.exclude_seen_event_types never recommends a bought item again: consider "
            "dropping purchase from it",
            run_date,
            100 * repeats["purchases"],
        )
    visitors = truths["all"][VISITOR_ID].unique()
    main_visitors = truths["main"][VISITOR_ID].unique()
    sample = diagnostics_sample(
        visitors, main_visitors, cfg.evaluate.diagnostics_visitors, run_date
    )
    sampled = restrict(truths, sample)
    # Who the gate's models are asked about: every main visitor, and the sample's others.
    asked = np.union1d(main_visitors, sample)
    counts = train.groupby(VISITOR_ID).size()
    segments = segment_visitors(counts, sample, thresholds=cfg.evaluate.segment_thresholds)
    context = ItemContext.from_training(
        train,
        catalog.set_index(ITEM_ID)[CATEGORY_ID],
        # What lists can draw from: the catalog as of the cutoff and every item trained on.
        catalog_size=max(len(np.union1d(catalog[ITEM_ID], train[ITEM_ID])), 1),
    )
    log.info(
        "evaluate %s: the gate's figures on %d main visitors, the diagnostics on %d of %d "
        "test visitors (%d of them main)",
        run_date,
        len(main_visitors),
        len(sample),
        len(visitors),
        sampled["main"][VISITOR_ID].nunique(),
    )

    models, champion = load_models(cfg, trained["model_uri"], train, cutoff, asked)
    challenger = models["challenger"]
    pooled = challenger.candidates

    lists: dict[str, pd.DataFrame] = {}
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    order = ["popularity"] + [m for m in models if m != "popularity"]
    for done, name in enumerate(order, start=1):
        diagnostic = name in DIAGNOSTIC_MODELS
        started = time.perf_counter()
        who = main_visitors if name == "oracle" else sample if diagnostic else asked
        lists[name] = models[name].recommend(who, n, exclude=exclude)
        seconds[name] = round(time.perf_counter() - started, 3)
        expected = lists.get("popularity") if name != "popularity" else None
        main = sampled["main"] if diagnostic else truths["main"]
        if name == "oracle":
            results[name] = _finite(offline_metrics(lists[name], main, ks, context, expected))
        else:
            results[name] = score_model(lists[name], main, sampled, ks, context, segments, expected)
        log.info(
            "evaluate: %s scored (%d of %d models), ndcg@10 %.4f on %d visitors in %.1f s",
            name,
            done,
            len(order),
            results[name]["ndcg_at_10"],
            results[name]["users"],
            seconds[name],
        )
        if name not in ("popularity", "challenger"):  # the audit reads the sample's top slots
            shown = lists[name][VISITOR_ID].isin(sample) & (lists[name][RANK] <= SHOWN)
            lists[name] = lists[name][shown].reset_index(drop=True)

    # The challenger on the sample's main visitors: what the diagnostic models' main metrics
    # compare with: beside the full set's figures, the sampling alone would move them.
    on_the_sample = _finite(
        offline_metrics(lists["challenger"], sampled["main"], ks, context, lists["popularity"])
    )
    best = best_baseline(results)
    stage_baseline(models[best], lake.partition("models", "best_baseline", run_date))
    # Past scoring only the challenger is needed: the neighbour models and the champion are
    # gigabytes at scale 10, and the re-ranking table is evaluate's peak.
    del models
    started = time.perf_counter()
    rerankers = {
        name: Reranker.from_catalog(weights, catalog, cutoff, run_date, cfg.rerank.candidates)
        for name, weights in cfg.rerank.variants().items()
    }
    # Deep lists (rerank.candidates each) for the sample only, in batches so they never all
    # exist together (every test visitor's at once took 8.3 GB at scale 1).
    deep = (
        challenger.recommend(batch, cfg.rerank.candidates, exclude=exclude)
        for batch in np.array_split(sample, -(-len(sample) // RERANK_BATCH))
    )
    reranking = compare_reranking(deep, rerankers, sampled, ks, context, lists["popularity"])
    seconds["reranking"] = round(time.perf_counter() - started, 3)
    log.info("evaluate reranking: %s", _rerank_table(reranking).to_string())

    audit = audit_lists(
        {name: recs[recs[VISITOR_ID].isin(sample)] for name, recs in lists.items()},
        results["challenger"]["segments"],
        sampled,
        ks,
        context,
        train,
        cutoff,
        cfg.evaluate.audit,
        read_visitor_attributes(cfg.evaluate.audit.visitor_attributes),
    )
    for warning in audit["warnings"]:
        log.warning("audit: %s", warning)
    report = {
        "challenger": results["challenger"],
        "popularity": results["popularity"],
        "champion": results.get("champion"),
        "baselines": {m: results[m] for m in ("popularity", *cfg.evaluate.baselines)},
        # The one the gate holds the challenger against, and publishes when it is better.
        "best_baseline": {
            "name": best,
            "path": str(lake.partition("models", "best_baseline", run_date)),
            **results[best],
        },
        "oracle": results.get("oracle"),
        "share_of_oracle_ndcg_at_10": _share(results, "challenger", "oracle"),
        "candidate_pool": None
        if pooled is None
        else {"items": len(pooled), "challenger_ranking_every_item": results[ALL_ITEMS]},
        "reranking": {
            name: {"weights": cfg.rerank.variants()[name].model_dump(), "metrics": metrics}
            for name, metrics in reranking.items()
        },
        "exposure_by_popularity_decile": audit["exposure_by_popularity_decile"],
        "audit": audit,
        "diagnostics": {
            "visitors": len(sample),
            "of": len(visitors),
            "seed": run_date.isoformat(),
            "by_group": {g: int(t[VISITOR_ID].nunique()) for g, t in sampled.items()},
            "challenger": on_the_sample,
            "on_the_sample": list(ON_THE_SAMPLE),
        },
        "recommend_seconds": seconds,
        "visitors": {g: int(t[VISITOR_ID].nunique()) for g, t in truths.items()},
        "repeat_shares": repeats,
        "challenger_version": trained["model_version"],
        "champion_version": None if champion is None else champion.version,
    }
    with mlflow.start_run(run_id=trained["run_id"]):
        _log_to_mlflow(results, report, ks)
    lake.write_stage_report(run_date, "evaluate", report)
    log.info("evaluate %s: %s", run_date, _comparison_table(results, ks).to_string())
    return report


def _share(results: dict, part: str, whole: str) -> float | None:
    if whole not in results or not results[whole]["ndcg_at_10"]:
        return None
    return round(results[part]["ndcg_at_10"] / results[whole]["ndcg_at_10"], 4)


def _finite(metrics):
    """NaN (a metric with no list to describe) becomes None, so the report is valid JSON."""
    if isinstance(metrics, dict):
        return {k: _finite(v) for k, v in metrics.items()}
    if isinstance(metrics, float) and math.isnan(metrics):
        return None
    return metrics


def _without_none(metrics: dict) -> dict:
    """The nested metrics without the ones that have no value (None), for flatten_metrics."""
    return {
        k: _without_none(v) if isinstance(v, dict) else v
        for k, v in metrics.items()
        if v is not None
    }


def split_by_scope(results: dict[str, dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each model's metrics as (full, sample): the main metrics of every model but the
    diagnostic ones, which are on every main visitor; and the rest (groups, segments, the
    diagnostic models' main metrics), on the diagnostics sample."""
    full, sample = {}, {}
    for name, metrics in results.items():
        nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
        if name in DIAGNOSTIC_MODELS:
            sample[name] = metrics
            continue
        full[name] = {k: v for k, v in metrics.items() if k not in nested}
        if nested:
            sample[name] = nested
    return full, sample


def _comparison_table(results: dict, ks: tuple[int, ...]) -> pd.DataFrame:
    """One row per model, the main metrics as columns, and whether they are on every main
    visitor (`full`) or on the diagnostics sample (for the log and MLflow)."""
    rows = {
        name: {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        | {"scope": SAMPLE if name in DIAGNOSTIC_MODELS else "full"}
        for name, metrics in results.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    keys = [f"{m}_at_{k}" for k in ks for m in ("ndcg", "recall", "precision", "map", "mrr")]
    first = [c for c in ["scope", "users", *keys] if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


RERANK_COLUMNS = (
    "ndcg_at_10",
    "all_visitors_ndcg_at_10",
    "coverage_at_10",
    "diversity_at_10",
    "novelty_at_10",
    "popularity_bias_at_10",
)


def _rerank_table(reranking: dict[str, dict]) -> pd.DataFrame:
    """One row per re-ranking configuration: accuracy beside what the lists look like."""
    table = pd.DataFrame.from_dict(reranking, orient="index")
    return table[[c for c in RERANK_COLUMNS if c in table.columns]]


def _log_to_mlflow(results: dict, report: dict, ks: tuple[int, ...]) -> None:
    import mlflow

    full, sample = split_by_scope(_without_none(results))
    # The challenger's main metrics also without a prefix: what the gate and the monitor read.
    metrics = dict(full["challenger"])
    metrics.update(flatten_metrics(full))
    if report["share_of_oracle_ndcg_at_10"] is not None:
        metrics["share_of_oracle_ndcg_at_10"] = report["share_of_oracle_ndcg_at_10"]
    table = _comparison_table(results, ks).reset_index(names="model")
    mlflow.log_table(table, "evaluation/models.json")
    reranking = {name: entry["metrics"] for name, entry in report["reranking"].items()}
    mlflow.log_table(
        _rerank_table(reranking).reset_index(names="weights"), "evaluation/rerank.json"
    )
    audit = report["audit"]
    gini = {m: g for m, g in audit["exposure_gini"].items() if g is not None}
    sample |= {"rerank": _without_none(reranking), "audit": {"exposure_gini": gini}}
    sample["challenger"] |= _without_none(report["diagnostics"]["challenger"])
    metrics.update(flatten_metrics({SAMPLE: sample}))
    mlflow.log_metrics(metrics)
    diagnostics = report["diagnostics"]
    mlflow.set_tags(
        {
            "evaluate.sample_visitors": f"{diagnostics['visitors']} of {diagnostics['of']}",
            "evaluate.sample_seed": diagnostics["seed"],
        }
    )
    mlflow.log_dict(report, "evaluation/report.json")
    mlflow.log_figure(_segment_plot(results, diagnostics["visitors"]), "plots/ndcg_by_segment.png")
    mlflow.log_figure(
        _exposure_plot(report["exposure_by_popularity_decile"]), "plots/popularity_bias.png"
    )
    mlflow.log_table(_audit_segment_table(audit), "evaluation/audit_segments.json")
    mlflow.log_table(_audit_exposure_table(audit), "evaluation/audit_exposure.json")
    mlflow.log_figure(_audit_plot(audit), "plots/audit.png")
    mlflow.set_tag("audit_warnings", len(audit["warnings"]))
    if audit["warnings"]:
        mlflow.set_tag("audit_warning_text", " | ".join(audit["warnings"])[:5000])


def _audit_segment_table(audit: dict) -> pd.DataFrame:
    """One row per (dimension, segment) of the challenger's lists."""
    rows = [
        {"dimension": dimension, "segment": label, **metrics}
        for dimension, segments in audit["segments"].items()
        for label, metrics in segments.items()
    ]
    table = pd.DataFrame(rows)
    first = ["dimension", "segment", "users", "ndcg_at_10", "recall_at_10", "hit_rate_at_10"]
    return table[[c for c in first if c in table.columns]]


def _audit_exposure_table(audit: dict) -> pd.DataFrame:
    """One row per model: exposure Gini, top popularity decile's share, largest category's."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "exposure_gini": gini,
                "top_decile_share": audit["exposure_by_popularity_decile"][name][-1],
                "largest_category_share": max(
                    (v for c, v in audit["exposure_by_category"][name].items() if c != "other"),
                    default=None,
                ),
            }
            for name, gini in audit["exposure_gini"].items()
        ]
    )


def _segment_plot(results: dict, sampled: int):
    plt = pyplot()
    names = [m for m in results if "segments" in results[m]]
    labels = sorted({s for m in names for s in results[m]["segments"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [results[name]["segments"].get(s, {}).get("ndcg_at_10") or 0 for s in labels]
        ax.bar(np.arange(len(labels)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"NDCG@10 by visitor segment ({sampled:,} test visitors, every test item)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _exposure_plot(exposure: dict[str, list[float]]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, shares in exposure.items():
        ax.plot(range(1, 11), shares, marker="o", label=name)
    ax.axhline(0.1, color="grey", linestyle=":", label="no popularity bias")
    ax.set_xlabel("item popularity decile in training (10 = most popular)")
    ax.set_ylabel("share of top-10 recommendations")
    ax.set_title("Popularity bias")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _audit_plot(audit: dict):
    plt = pyplot()
    dimensions = list(audit["segments"])
    fig, axes = plt.subplots(1, len(dimensions) + 1, figsize=(4 * (len(dimensions) + 1), 4))
    for ax, dimension in zip(axes, dimensions, strict=False):
        segments = audit["segments"][dimension]
        labels = list(segments)
        ax.bar(range(len(labels)), [segments[s].get("ndcg_at_10") or 0 for s in labels])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"challenger NDCG@10 by {dimension}", fontsize=9)
    gini = audit["exposure_gini"]
    axes[-1].barh(list(gini), [v or 0 for v in gini.values()])
    axes[-1].set_xlim(0, 1)
    axes[-1].set_title("exposure Gini over the catalog (top 10)", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
