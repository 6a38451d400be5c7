"""One typed, frozen configuration for every stage.

A config file is YAML; an environment overlay names its base in `extends` (resolved beside it) and
overrides what differs, merged key by key. Environment variables override both:
``RECS__<SECTION>__<KEY>=<yaml value>`` (for example ``RECS__EXPORT__TOP_N=20``). Unknown keys are
errors, so a misspelt setting fails loudly instead of being silently ignored.

    from jobs.infra.config import load_config
    cfg = load_config("configs/local.yaml")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jobs.infra.schemas import EVENT_TYPES, MONITOR_FACTS

ENV_PREFIX = "RECS__"


class ConfigError(ValueError):
    """The configuration cannot be loaded or is invalid; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsConfig(_Section):
    lake: Path
    landing: Path
    raw: Path
    reports: Path
    suites: Path


class SparkConfig(_Section):
    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)


# Bronze columns a source can map; event_ts, visitor_id, item_id and event_type are required.
MAPPABLE_COLUMNS = (
    "event_ts",
    "visitor_id",
    "item_id",
    "event_type",
    "session_id",
    "price",
    "quantity",
    "transaction_id",
    "category_id",
)
REQUIRED_COLUMNS = ("event_ts", "visitor_id", "item_id", "event_type")


class SourceConfig(_Section):
    """One shop feed. Its files land in ``<paths.landing>/<name>/dt=YYYY-MM-DD/``.

    layout `retailrocket` and `rees46` are built in; `generic` maps a shop's own export: which
    source column holds each bronze column, how its timestamps read, which of its event names
    mean view, cart and purchase, and which it sends that we do not use. Files ending in .gz are
    read through gzip. Every file in the folder that no pattern matches is listed in the ingest
    report as skipped, with a warning.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    layout: Literal["retailrocket", "rees46", "generic"]
    # generic only: file format and the file names (globs, any case) of events in a dt= folder.
    format: Literal["csv", "parquet"] = "csv"
    events_glob: tuple[str, ...] = ("*.csv", "*.csv.gz")
    # generic CSV only: the field separator ("\t" for TSV) and whether line 1 is a header; a
    # headerless file names its columns, in order, in column_names.
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = True
    column_names: tuple[str, ...] = ()
    # generic only: bronze column -> the source's column name.
    columns: dict[str, str] = Field(default_factory=dict)
    # generic only: epoch_ms, epoch_s, or a Spark datetime pattern such as
    # "yyyy-MM-dd HH:mm:ss" (read as UTC unless the pattern has a zone).
    timestamp_format: str = "epoch_ms"
    # generic only: our event type -> the source's names for it; or, for a feed with one kind
    # of event and no event-type column (a purchase-only feed), event_type: purchase.
    event_types: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    event_type: Literal["view", "cart", "purchase"] | None = None
    # Event names the source sends that are not interactions we learn from; counted, not kept.
    ignore_event_types: tuple[str, ...] = ()
    # generic only: id columns the shop writes as text (SKUs like 85123A): hashed to stable
    # integers at ingest; the export gives the shop's own text back.
    text_ids: tuple[Literal["visitor_id", "item_id"], ...] = ()

    @field_validator("events_glob", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _mapping_fits_layout(self) -> SourceConfig:
        if self.layout != "generic":
            generic = [
                key
                for key in ("columns", "event_types", "event_type", "column_names", "text_ids")
                if getattr(self, key)
            ]
            generic += [k for k in ("delimiter", "header") if k in self.model_fields_set]
            if generic:
                raise ValueError(
                    f"source {self.name!r}: layout {self.layout!r} is built in; "
                    f"{generic} are for layout 'generic'"
                )
            return self
        required = [c for c in REQUIRED_COLUMNS if c != "event_type" or self.event_type is None]
        unknown = sorted(set(self.columns) - set(MAPPABLE_COLUMNS))
        missing = [c for c in required if c not in self.columns]
        if unknown or missing:
            raise ValueError(
                f"source {self.name!r}: columns must map {required} "
                f"(optional: {list(MAPPABLE_COLUMNS[4:])}); missing {missing}, unknown {unknown}"
            )
        if self.event_type is not None:
            if self.event_types or "event_type" in self.columns:
                raise ValueError(
                    f"source {self.name!r}: event_type {self.event_type!r} is every row's type; "
                    "drop event_types and the event_type column, or drop event_type"
                )
        else:
            bad_types = sorted(set(self.event_types) - set(EVENT_TYPES))
            if bad_types or not self.event_types:
                raise ValueError(
                    f"source {self.name!r}: event_types must map some of {list(EVENT_TYPES)} "
                    f"to the source's names; unknown {bad_types}"
                )
        if not self.header:
            if self.format != "csv" or not self.column_names:
                raise ValueError(
                    f"source {self.name!r}: header: false needs format csv and column_names, "
                    "the file's columns in order"
                )
            absent = sorted(set(self.columns.values()) - set(self.column_names))
            if absent:
                raise ValueError(
                    f"source {self.name!r}: columns map {absent}, which column_names lacks"
                )
        elif self.column_names:
            raise ValueError(
                f"source {self.name!r}: column_names is for header: false (the header names them)"
            )
        return self


class PseudonymizeConfig(_Section):
    """Replace visitor ids at ingest by a keyed hash (HMAC-SHA256, 63 bits).

    The key is read from the environment variable `key_env`, never from a file here.
    """

    enabled: bool = False
    key_env: str = "RECS_VISITOR_ID_KEY"


class IngestConfig(_Section):
    sources: tuple[SourceConfig, ...] = Field(min_length=1)
    # Quarantined share of a file's rows above which the run fails, in [0, 1].
    max_quarantine_rate: float = Field(0.01, ge=0, le=1)
    # Events stamped before this day are impossible for the shop and quarantined.
    min_event_date: date = date(1971, 1, 1)
    pseudonymize_visitor_ids: PseudonymizeConfig = Field(default_factory=PseudonymizeConfig)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: tuple[SourceConfig, ...]) -> tuple[SourceConfig, ...]:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return sources


class CleanConfig(_Section):
    """Rules of jobs/clean.py. A visitor breaking any visitor rule loses all their events.

    Timing rules count a visitor's distinct event instants (a checkout writes one purchase row
    per item at one instant), volume per day counts rows.
    """

    # View and cart rows of one visitor on one UTC calendar day; more is a bot. Purchase rows
    # do not count: a wholesale checkout writes one per line. The cap rises to
    # `day_cap_multiple` x the shop's own 99th percentile of those rows per buyer and day, so a
    # shop of heavy users keeps them; 0 keeps the cap fixed.
    max_events_per_day: int = Field(200, gt=0)
    day_cap_multiple: float = Field(10.0, ge=0)
    # Distinct instants of one visitor in any 60-second window [t, t + 60 s); more is a bot.
    max_events_per_minute: int = Field(30, gt=0)
    # Median seconds between a visitor's consecutive distinct instants; below it is a bot, once
    # the visitor has at least `min_events_for_gaps` instants.
    min_median_gap_seconds: float = Field(5.0, gt=0)
    min_events_for_gaps: int = Field(20, ge=3)
    # Share in (0.5, 1] of a visitor's consecutive view pairs whose item id is higher than the
    # one before; above it is a catalog sweep, once the visitor has at least
    # `min_views_for_sweep` views. Random browsing gives about 0.5; 1 turns the rule off.
    max_ascending_view_share: float = Field(0.8, gt=0.5, le=1)
    min_views_for_sweep: int = Field(30, ge=3)
    # Views of a visitor with no cart or purchase at all; this many or more is a bot.
    max_views_without_conversion: int = Field(300, gt=0)
    # Distinct items a visitor carted without ever buying; this many or more is a bot (a cart
    # bot reserving stock calls add-to-cart without the views a person makes first).
    max_carts_without_purchase: int = Field(100, gt=0)
    # Known QA accounts (all their events go) and test SKUs (their rows go, the visitors stay).
    test_visitor_ids: tuple[int, ...] = ()
    test_item_ids: tuple[int, ...] = ()


class VolumeCheckConfig(_Section):
    """The day's volume check: silver events dated on the logical date D, against the mean per
    day of the `trailing_days` days before D, must lie in [min_ratio, max_ratio] x that mean.

    Skipped (and noted in the stage report) when silver has no events before D. An empty day
    fails unless min_ratio is 0: after days of traffic, a day without any is a broken feed.
    """

    trailing_days: int = Field(7, gt=0)  # days before D the mean is taken over
    min_ratio: float = Field(0.5, ge=0)  # fewest events on D, as a multiple of the mean
    max_ratio: float = Field(2.0, gt=0)  # most events on D, as a multiple of the mean

    @model_validator(mode="after")
    def _ordered(self) -> VolumeCheckConfig:
        if self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio {self.min_ratio} is above max_ratio {self.max_ratio}")
        return self


class ValidateConfig(_Section):
    """Thresholds of the validate stage's suites (great_expectations/README.md)."""

    # Fewest rows silver events (the whole cleaned history up to D) may hold, >= 0.
    min_events: int = Field(100, ge=0)
    # Highest plausible unit price, in the shop's currency, in events and the catalog (>= 0);
    # a higher one is a unit or parsing error (cents read as units, a SKU in the price field).
    max_price: float = Field(100_000.0, ge=0)
    # Least share of silver events whose item_id is in the day's catalog snapshot, in [0, 1].
    catalog_coverage: float = Field(0.95, ge=0, le=1)
    volume: VolumeCheckConfig = Field(default_factory=VolumeCheckConfig)


class ScheduleConfig(_Section):
    """When the DAG runs. Airflow reads these through RECS_SCHEDULE_* environment variables that
    the local stack and the demo export (jobs/tools/demo.py), so the DAG file reads no file."""

    cron: str = "@daily"
    timezone: str = "UTC"
    start_date: date = date(2015, 5, 3)
    # No scheduled runs after this date (null: none); trigger and backfill still work up to it.
    end_date: date | None = None

    def environ(self) -> dict[str, str]:
        return {
            "RECS_SCHEDULE_CRON": self.cron,
            "RECS_SCHEDULE_TIMEZONE": self.timezone,
            "RECS_SCHEDULE_START_DATE": self.start_date.isoformat(),
            "RECS_SCHEDULE_END_DATE": self.end_date.isoformat() if self.end_date else "",
        }


class SplitConfig(_Section):
    """Where the chronological cutoffs fall (jobs/split.py)."""

    # The test window: the last `test_days` days up to and including the logical date ...
    test_days: int = Field(14, gt=0)
    # ... or, when set, every event at or after this quantile of event time (0.9: the last 10 %).
    test_quantile: float | None = Field(None, gt=0, lt=1)
    # The validation window for tuning: the last `validation_days` days before the test cutoff.
    # The model is tuned on it and then refitted on all training data; the test window is never
    # used for tuning.
    validation_days: int = Field(7, gt=0)
    # When the training history is shorter than that window, the validation window is every
    # training event at or after this quantile of training event time instead.
    validation_quantile: float = Field(0.8, gt=0, lt=1)


class TrainConfig(_Section):
    factors: int = Field(128, gt=0)
    regularization: float = Field(2.0, ge=0)
    alpha: float = Field(20.0, gt=0)
    iterations: int = Field(10, gt=0)
    random_state: int = 42
    num_threads: int = Field(2, ge=0)
    # implicit's CUDA ALS instead of the CPU one; fails clearly where CUDA is missing.
    use_gpu: bool = False
    # "spark_mllib": Spark MLlib's ALS on the job's Spark (local or a cluster) for matrices beyond
    # one machine; same matrix and parameters, no tuning (recommenders/mllib.py). `mllib_blocks`:
    # its user and item blocks (parallelism of the fit).
    engine: Literal["implicit", "spark_mllib"] = "implicit"
    mllib_blocks: int = Field(10, gt=0)
    # Lists are drawn from the `candidate_items` most popular items of the training window
    # (None: every item the model knows). A fixed pool keeps scoring (export, evaluate, tuning)
    # linear in visitors as the catalog grows; evaluate measures what the pool costs in quality.
    candidate_items: int | None = Field(None, gt=0)
    # ... unless the model knows at most this many items: then it ranks every one (a pool that
    # drops a small catalog's long tail costs quality and saves little). null: always the pool.
    rank_every_item_below: int | None = Field(None, gt=0)
    event_weights: dict[str, float]
    # Interactions: each event's weight halves every `half_life_days` before the cutoff (None: no
    # decay), and repeated events saturate at about `saturation` (None: plain sum).
    half_life_days: float | None = Field(None, gt=0)
    saturation: float | None = Field(None, gt=0)
    # Reweighting of the confidence matrix before ALS: "bm25" damps heavy visitors and very
    # popular items (implicit's bm25_weight with k1, b); "none" keeps the summed weights.
    weighting: Literal["none", "bm25"] = "bm25"
    bm25_k1: float = Field(100.0, gt=0)
    bm25_b: float = Field(0.8, ge=0, le=1)

    @field_validator("event_weights")
    @classmethod
    def _known_event_types(cls, weights: dict[str, float]) -> dict[str, float]:
        return _check_event_weights(weights)

    @model_validator(mode="after")
    def _gpu_is_implicit(self) -> TrainConfig:
        if self.use_gpu and self.engine != "implicit":
            raise ValueError("train.use_gpu applies to the implicit engine only")
        return self


def _check_event_weights(weights: dict) -> dict:
    unknown = sorted(set(weights) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; expected a subset of {EVENT_TYPES}")
    if any(
        w < 0
        for value in weights.values()
        for w in (value if isinstance(value, tuple) else (value,))
    ):
        raise ValueError("event weights must be >= 0")
    return weights


class TuneSpace(_Section):
    """The values a trial draws from, each uniformly (seeded)."""

    factors: tuple[int, ...] = Field((64, 128), min_length=1)
    regularization: tuple[float, ...] = Field((0.5, 1.0, 2.0, 5.0), min_length=1)
    alpha: tuple[float, ...] = Field((5.0, 10.0, 20.0, 40.0), min_length=1)
    # Upper bounds: early stopping on validation NDCG picks the iteration count.
    iterations: tuple[int, ...] = Field((10, 15), min_length=1)
    weighting: tuple[Literal["none", "bm25"], ...] = Field(("bm25",), min_length=1)
    # Per event type, the weights to draw from; types not listed keep train.event_weights.
    event_weights: dict[str, tuple[float, ...]] = Field(default_factory=dict)

    @field_validator("event_weights")
    @classmethod
    def _known_event_types(cls, weights: dict) -> dict:
        return _check_event_weights(weights)


class TuneConfig(_Section):
    """Seeded random search for ALS (recommenders/tuning.py), scored on the validation window."""

    # Trials, the first being train.* as configured; 0 or 1 turns tuning off.
    trials: int = Field(8, ge=0)
    # Stop starting trials after this many seconds; a running trial finishes.
    max_seconds: float = Field(900, gt=0)
    seed: int = 42
    # Score validation NDCG@k every `eval_every` iterations; stop a trial after `patience`
    # scores without improvement.
    eval_every: int = Field(2, gt=0)
    patience: int = Field(2, gt=0)
    k: int = Field(10, gt=0)
    # Validation visitors scored per evaluation (an evenly spaced sample; 0 = all).
    max_validation_visitors: int = Field(5000, ge=0)
    # Search at most once in this many logical days: a night within `every_days` of the last
    # search (same config fingerprint, train report in the lake) refits that search's
    # parameters. 1: search every night (a rerun of a date still reuses that date's search).
    every_days: int = Field(1, ge=1)
    space: TuneSpace = Field(default_factory=TuneSpace)


class AuditConfig(_Section):
    """The bias and segment audit in evaluate (recommenders/audit.py) and its warning thresholds."""

    # Tenure segments: under the first number of days since a visitor's first event, between,
    # over the second; visitors new in the test window are `unseen`.
    tenure_days: tuple[int, int] = (7, 30)
    # A Parquet or CSV file: visitor_id plus attribute columns (age band, region, ...); each
    # column is a segment dimension. A relative path is under the project root. null: none.
    visitor_attributes: Path | None = None
    # Warn when the challenger's exposure Gini over the catalog exceeds this, in [0, 1] ...
    max_exposure_gini: float = Field(0.99, ge=0, le=1)
    # ... when the most popular tenth of items takes more than this share of top-10 slots ...
    max_top_decile_share: float = Field(0.95, ge=0, le=1)
    # ... or when a segment's NDCG@10 is below this share of the best segment's (same dimension).
    min_segment_ndcg_ratio: float = Field(0.05, ge=0, le=1)

    @field_validator("tenure_days")
    @classmethod
    def _ordered(cls, days: tuple[int, int]) -> tuple[int, int]:
        if not 0 < days[0] <= days[1]:
            raise ValueError(f"tenure_days {days}: need 0 < first <= second")
        return days


class EvaluateConfig(_Section):
    """Offline evaluation (jobs/evaluate.py): cut-offs, baselines, segments and the oracle."""

    k: tuple[int, ...] = (10, 20)
    # Baselines scored beside the challenger on the same visitors, with the same rules.
    baselines: tuple[
        Literal["popularity", "recent_popularity", "repeat", "item_knn", "user_knn", "ease"], ...
    ] = ("popularity", "recent_popularity", "repeat", "item_knn", "user_knn", "ease")
    # recent_popularity: event weights halve every this many days before the cutoff.
    recent_half_life_days: float = Field(7.0, gt=0)
    # repeat (a visitor's own items again): their weights halve every this many days.
    repeat_half_life_days: float = Field(1.0, gt=0)
    # Neighbours kept per item (item_knn) and per visitor (user_knn); item_knn's similarity.
    neighbours: int = Field(100, gt=0)
    item_knn_similarity: Literal["cosine", "bm25"] = "cosine"
    # EASE: its L2 penalty and the most popular items it models (B is items x items, dense).
    ease_l2: float = Field(500.0, gt=0)
    ease_max_items: int = Field(5000, gt=0)
    # Activity segments by training interactions: new < first, power > second, casual between.
    segment_thresholds: tuple[int, int] = (5, 20)
    # The generator's ground_truth/ folder (a relative path is under paths.raw): scores the
    # oracle, the best achievable NDCG. null for real data; a missing folder skips the oracle.
    ground_truth: Path | None = Path("ground_truth")
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @field_validator("k")
    @classmethod
    def _includes_ten(cls, k: tuple[int, ...]) -> tuple[int, ...]:
        if 10 not in k or any(v <= 0 for v in k):
            raise ValueError("k must be positive and include 10 (the gate reads NDCG@10)")
        return tuple(sorted(set(k)))


class GateConfig(_Section):
    min_lift_over_baseline: float = Field(0.10, ge=0)
    max_regression_vs_champion: float = Field(0.02, ge=0, le=1)


class ExportConfig(_Section):
    top_n: int = Field(50, gt=0)
    # Bounds each exported file, and the memory of scoring: this many visitors' lists per file.
    visitors_per_file: int = Field(100_000, gt=0)
    similar_items: int = Field(20, gt=0)
    # Never recommended nor listed as similar (discontinued products, gift cards, ...).
    deny_item_ids: tuple[int, ...] = ()
    # Whole categories never recommended nor listed as similar (adult, tobacco, ...).
    exclude_category_ids: tuple[int, ...] = ()
    # Fallback popularity halves every this many days; lists use the visitor's top categories.
    popularity_half_life_days: float = Field(7.0, gt=0)
    fallback_categories: int = Field(3, ge=0)
    # Publications of the last this many logical dates are kept; older ones are deleted after a
    # new publication succeeded.
    retention_days: int = Field(7, gt=0)
    exclude_seen_event_types: tuple[str, ...] = ("purchase",)
    # When the gate keeps the champion, the challenger's lists for this many visitors (chosen by
    # a hash of visitor and date) go to shadow/recommendations/, never to latest.json. 0: off.
    shadow_visitors: int = Field(1000, ge=0)

    @field_validator("exclude_seen_event_types")
    @classmethod
    def _known_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(types) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; expected a subset of {EVENT_TYPES}")
        return types


class RerankWeights(_Section):
    """How the final lists weigh business goals against the model's order (recommenders/rerank.py).
    Every weight is per unit of a signal in [0, 1]; 0 everywhere keeps the model's order."""

    relevance: float = Field(1.0, ge=0)
    # Subtracted from a candidate whose category is already in the list (maximal marginal
    # relevance over categories); and a hard cap of items per category per list (null: none).
    diversity: float = Field(0.0, ge=0)
    max_per_category: int | None = Field(None, gt=0)
    # Added for a newly launched item (catalog first_seen_ts), halving every half-life.
    freshness: float = Field(0.0, ge=0)
    freshness_half_life_days: float = Field(30.0, gt=0)
    # Numeric catalog column -> weight, the column min-max scaled to [0, 1]; negative demotes.
    boosts: dict[str, float] = Field(default_factory=dict)
    # Lists of visitors the model does not know (fallback only): random order by this much,
    # seeded by visitor, item and logical date.
    cold_start_shuffle: float = Field(0.0, ge=0)

    @property
    def is_identity(self) -> bool:
        """True when these weights cannot change the model's order."""
        return (
            not self.diversity
            and self.max_per_category is None
            and not self.freshness
            and not any(self.boosts.values())
            and not self.cold_start_shuffle
        )


class RerankConfig(RerankWeights):
    """The weights the export uses, and others the evaluation scores beside them."""

    # Candidates per visitor the re-ranking chooses from (the model's top this many); at least
    # export.top_n and the evaluation's largest k (checked by Config).
    candidates: int = Field(100, gt=0)
    # name -> weights that differ from the ones above; evaluate reports each side by side.
    compare: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _compare_is_valid(self) -> RerankConfig:
        self.variants()  # a misspelt or out-of-range weight fails here, at load
        return self

    def weights(self) -> RerankWeights:
        return RerankWeights(**{k: getattr(self, k) for k in RerankWeights.model_fields})

    def variants(self) -> dict[str, RerankWeights]:
        """`configured` (the export's weights) and every `compare` entry, by name."""
        if "configured" in self.compare:
            raise ValueError("'configured' names the weights above; pick another compare name")
        own = self.weights().model_dump()
        named = {name: RerankWeights(**{**own, **change}) for name, change in self.compare.items()}
        return {"configured": self.weights(), **named}


class MonitorBounds(_Section):
    """When a night's value of a fact alerts: against the trailing nights' median (relative)
    or on its own (absolute). Unset bounds are not checked."""

    max_drop: float | None = Field(None, gt=0, le=1)  # below (1 - max_drop) x median
    max_rise: float | None = Field(None, gt=0)  # above (1 + max_rise) x median
    min: float | None = None
    max: float | None = None


class MonitorConfig(_Section):
    """Night-over-night monitoring (jobs/monitor.py): what alerts, compared with what."""

    # The nights compared against: those of the last `trailing_days` days with a monitor record;
    # relative bounds need at least `min_nights` of them.
    trailing_days: int = Field(7, gt=0)
    min_nights: int = Field(3, gt=0)
    # Visitors (a hash of visitor and date picks them) whose lists are compared with yesterday's.
    overlap_visitors: int = Field(10_000, gt=0)
    checks: dict[str, MonitorBounds] = Field(default_factory=dict)

    @field_validator("checks")
    @classmethod
    def _known_facts(cls, checks: dict[str, MonitorBounds]) -> dict[str, MonitorBounds]:
        unknown = sorted(set(checks) - set(MONITOR_FACTS))
        if unknown:
            raise ValueError(f"unknown facts {unknown}; the monitor records {MONITOR_FACTS}")
        return checks


class MlflowConfig(_Section):
    tracking_uri: str
    artifact_root: Path
    experiment: str
    model_name: str


class StorageConfig(_Section):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str
    prefix: str = ""


class Config(_Section):
    paths: PathsConfig
    spark: SparkConfig
    ingest: IngestConfig
    clean: CleanConfig
    validate_: ValidateConfig = Field(alias="validate")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    split: SplitConfig
    train: TrainConfig
    tune: TuneConfig = Field(default_factory=TuneConfig)
    evaluate: EvaluateConfig
    gate: GateConfig
    export: ExportConfig
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    mlflow: MlflowConfig
    storage: StorageConfig
    source_file: Path = Field(exclude=True)

    @model_validator(mode="after")
    def _enough_candidates(self) -> Config:
        needed = max(self.export.top_n, *self.evaluate.k)
        if self.rerank.candidates < needed:
            raise ValueError(
                f"rerank.candidates ({self.rerank.candidates}) must be at least export.top_n and "
                f"the largest evaluate.k ({needed}): re-ranking picks the lists from them"
            )
        return self

    def fingerprint(self) -> str:
        """Short sha256 of the resolved settings, for tagging runs and manifests."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (and the bases it extends), apply ``RECS__`` overrides, validate, resolve.

    Raises ConfigError naming the file and the offending key.
    """
    path = Path(path).resolve()
    raw, base_file = _read_with_bases(path, seen=())
    raw = _apply_env_overrides(raw, os.environ if environ is None else environ)
    # Relative paths are relative to the project root: the folder holding the configs/ folder
    # of the root-most base, wherever the overlay itself lives.
    root = base_file.parent.parent
    try:
        cfg = Config.model_validate({**raw, "source_file": path})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid config {path}: {problems}") from None
    return _resolve_paths(cfg, root)


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], Path]:
    """The merged settings of `path` and its bases, and the root-most base file."""
    if path in seen:
        raise ConfigError(f"config {path} extends itself through {[str(p) for p in seen]}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, path
    base, base_file = _read_with_bases((path.parent / base_name).resolve(), seen + (path,))
    return _deep_merge(base, data), base_file


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    result = raw
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if len(keys) < 2 or not all(keys):
            raise ConfigError(f"environment override {name} must look like RECS__SECTION__KEY")
        value = yaml.safe_load(environ[name])
        patch: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            patch = {key: patch}
        result = _deep_merge(result, patch)
    return result


def _resolve_paths(cfg: Config, root: Path) -> Config:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (root / p).resolve()

    paths = cfg.paths.model_copy(
        update={name: absolute(getattr(cfg.paths, name)) for name in PathsConfig.model_fields}
    )
    mlflow_cfg = cfg.mlflow.model_copy(
        update={
            "artifact_root": absolute(cfg.mlflow.artifact_root),
            "tracking_uri": _absolute_sqlite_uri(cfg.mlflow.tracking_uri, root),
        }
    )
    evaluate = cfg.evaluate
    if evaluate.ground_truth is not None and not evaluate.ground_truth.is_absolute():
        evaluate = evaluate.model_copy(
            update={"ground_truth": (paths.raw / evaluate.ground_truth).resolve()}
        )
    attributes = evaluate.audit.visitor_attributes
    if attributes is not None:
        audit = evaluate.audit.model_copy(update={"visitor_attributes": absolute(attributes)})
        evaluate = evaluate.model_copy(update={"audit": audit})
    return cfg.model_copy(update={"paths": paths, "mlflow": mlflow_cfg, "evaluate": evaluate})


def _absolute_sqlite_uri(uri: str, root: Path) -> str:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    return prefix + str((root / uri[len(prefix) :]).resolve())
