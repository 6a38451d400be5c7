"""One typed, frozen configuration for every stage.

A config file is YAML; an environment overlay names its base in `extends` (resolved beside it) and
overrides what differs, merged key by key. Environment variables override both:
``RECS__<SECTION>__<KEY>=<yaml value>`` (for example ``RECS__EXPORT__TOP_N=20``), upper case as
written here. Unknown keys, duplicate keys, a variable whose name starts with ``recs__`` in another
case or names no setting are errors naming the key and the file (or the variable), so a misspelt
setting fails loudly instead of being silently ignored.

    from jobs.infra.config import load_config
    cfg = load_config("configs/local.yaml")
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
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


# sc://<host>:<port> and nothing else (a host name or IPv4 address): parameters after ";" carry
# the token or session ids, neither of which belongs in a config file.
_CONNECT_URL = re.compile(
    r"^sc://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})$"
)


class SparkConfig(_Section):
    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)
    # Where the driver listens, and the address it gives executors (spark.driver.bindAddress
    # and spark.driver.host). null: 127.0.0.1 on a local master, whose ports (unauthenticated)
    # then face no network; Spark's own choice (SPARK_LOCAL_IP, else the host's name) on a
    # cluster, whose executors must reach the driver. Set it where that choice is wrong.
    bind_address: str | None = None
    # A Spark Connect server ("sc://localhost:15002") the Spark stages attach to, so a night's
    # stages share one driver instead of starting one each (python -m jobs.tools.spark_connect
    # start runs one from this config). null: each stage its own session, as spark-submit or
    # `master` gives it. The token comes from SPARK_CONNECT_AUTHENTICATE_TOKEN, never from here.
    remote: str | None = None

    @field_validator("remote")
    @classmethod
    def _connect_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        match = _CONNECT_URL.match(url)
        if match is None:
            extra = " (a ;token= belongs in SPARK_CONNECT_AUTHENTICATE_TOKEN)" if ";" in url else ""
            raise ValueError(f"{url!r} is not sc://<host>:<port>{extra}")
        host, port = match["host"], int(match["port"])
        if not 0 < port < 65536:
            raise ValueError(f"{url!r}: port {port} is not in 1..65535")
        address = ipaddress.ip_address(host) if _is_ip_address(host) else None
        if address is not None and address.is_unspecified:
            raise ValueError(f"{url!r}: {host} names no server to connect to")
        if address is not None and address.is_loopback:
            # With a token the client sends it over plain gRPC only to the name localhost; to a
            # loopback address it would try TLS, which the local server does not speak.
            raise ValueError(f"{url!r}: write sc://localhost:{port} for this machine")
        return url

    @field_validator("bind_address")
    @classmethod
    def _one_address(cls, address: str | None) -> str | None:
        if address is not None and (not address or address in ("0.0.0.0", "::")):
            raise ValueError(
                f"{address!r}: executors connect to this address, so it must name one interface"
            )
        return address

    @field_validator("conf")
    @classmethod
    def _bind_is_one_setting(cls, conf: dict[str, str]) -> dict[str, str]:
        # Any case: keys set through RECS__ variables arrive lower-cased.
        bind_keys = {"spark.driver.host", "spark.driver.bindaddress"}
        clash = sorted(k for k in conf if k.lower() in bind_keys)
        if clash:
            raise ValueError(f"{clash}: set spark.bind_address instead (one place decides)")
        return conf


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

    @field_validator("min_event_date")
    @classmethod
    def _not_in_the_future(cls, day: date) -> date:
        # Checked against the clock at load, not the run's logical date: a day no event can be
        # stamped before yet would quarantine every row of every run.
        today = datetime.now(UTC).date()
        if day > today:
            raise ValueError(f"{day} is in the future (today is {today} UTC)")
        return day

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
    """When the DAG runs. dags/nightly_recs.py reads this section at parse time from the config
    the RECS_CONFIG variable names, in every deployment (make up, the demo, compose)."""

    cron: str = "@daily"
    timezone: str = "UTC"
    start_date: date = date(2015, 5, 3)
    # No scheduled runs after this date (null: none); trigger and backfill still work up to it.
    end_date: date | None = None
    # Whether the scheduler creates the runs missed since start_date (or since the last run).
    catchup: bool = False

    @field_validator("cron")
    @classmethod
    def _a_schedule_airflow_reads(cls, cron: str) -> str:
        # Airflow's own rule for a string schedule: its two special presets, or what croniter
        # parses (croniter is Airflow's cron library; its presets such as @daily included).
        from croniter import CroniterBadDateError, croniter

        if cron in ("@once", "@continuous"):
            return cron
        if not croniter.is_valid(cron):
            raise ValueError(f"{cron!r} is not a cron expression or an Airflow preset")
        try:  # parses, but may never fire: 0 0 30 2 * (30 February)
            croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"{cron!r} never fires") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)"
            ) from None
        return name

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")  # absent when start_date itself was invalid
        if end is not None and start is not None and end < start:
            raise ValueError(f"{end} is before start_date {start}")
        return end

    def start(self) -> datetime:
        """start_date at midnight in `timezone`: the DAG's start_date."""
        return _midnight(self.start_date, self.timezone)

    def end(self) -> datetime | None:
        """end_date at midnight in `timezone` (None: no end): the DAG's end_date."""
        return None if self.end_date is None else _midnight(self.end_date, self.timezone)


def _midnight(day: date, timezone: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))


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
    # Trials fit on at most this many visitors: the validation visitors scored and a seeded
    # sample of the others (0 = all). The winner is refitted on every visitor.
    max_fit_visitors: int = Field(0, ge=0)
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
    # The diagnostics (groups and segments, user_knn, challenger_every_item, the re-ranking
    # table, the audit) are scored on this many test visitors, drawn by a hash of visitor and
    # logical date (the same visitors on a rerun); 0: every test visitor. The gate's figures
    # (challenger, champion, servable baselines) are always on every main visitor.
    diagnostics_visitors: int = Field(20_000, ge=0)
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
    min_lift_over_baseline: float = Field(0.05, ge=0)
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


# S3's bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html):
# 3-63 characters of lowercase letters, digits, dots and hyphens, a letter or digit at each end.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# ... and none of the names S3 reserves for its own kinds of buckets and access points.
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


class StorageConfig(_Section):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str
    # Under Airflow, the export's credentials (and endpoint and region, when it names them) come
    # from this Airflow `aws` connection; a job run alone uses the environment. null: the
    # environment under Airflow too.
    aws_conn_id: str | None = None
    # Keys go under <prefix>/ in the bucket: relative segments, no "." or "..".
    prefix: str = ""

    @field_validator("bucket")
    @classmethod
    def _s3_bucket_name(cls, name: str) -> str:
        problem = None
        if not _BUCKET_NAME.match(name):
            problem = (
                "3-63 lowercase letters, digits, dots or hyphens, a letter or digit at each end"
            )
        elif ".." in name:
            problem = "no two adjacent dots"
        elif _is_ip_address(name):
            problem = "not an IP address"
        elif name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
            problem = "not a prefix or suffix S3 reserves"
        if problem:
            raise ValueError(f"{name!r} is not a valid S3 bucket name: {problem}")
        return name

    @field_validator("prefix")
    @classmethod
    def _relative_prefix(cls, prefix: str) -> str:
        # The prefix is joined into every key the export writes and every key retention deletes:
        # a "../other" or "/other" would reach outside the pipeline's own part of the bucket.
        segments = prefix.strip("/").split("/") if prefix.strip("/") else []
        if prefix.startswith("/") or "\\" in prefix or any(s in ("", ".", "..") for s in segments):
            raise ValueError(
                f"{prefix!r} must be relative key segments such as nightly or recs/nightly "
                "(no leading /, no empty, . or .. segments, no backslashes)"
            )
        return prefix


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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


# Where each setting came from: dotted key path -> "in <file>" or "set by <variable>".
_Origins = dict[tuple[str, ...], str]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (and the bases it extends), apply ``RECS__`` overrides, validate, resolve.

    Raises ConfigError naming the file and the offending key (dotted, like ``schedule.cron``),
    and the file or environment variable that set it.
    """
    path = Path(path).resolve()
    raw, base_file, origins = _read_with_bases(path, seen=())
    raw = _apply_env_overrides(raw, origins, os.environ if environ is None else environ)
    if "source_file" in raw:  # set by the loader below; a file may not pretend to be another
        raise ConfigError(f"invalid config {path}: source_file: unknown key")
    # Relative paths are relative to the project root: the folder holding the configs/ folder
    # of the root-most base, wherever the overlay itself lives.
    root = base_file.parent.parent
    try:
        cfg = Config.model_validate({**raw, "source_file": path})
    except ValidationError as err:
        problems = "; ".join(_describe(e, origins) for e in err.errors())
        raise ConfigError(f"invalid config {path}: {problems}") from None
    return _resolve_paths(cfg, root)


def _describe(error: Any, origins: _Origins) -> str:
    loc = tuple(str(p) for p in error["loc"])
    # The nearest enclosing key whose origin is known: a missing key has none of its own.
    source = next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origins), None)
    return f"{'.'.join(loc)}: {error['msg']}" + (f" ({source})" if source else "")


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, first_line: int, line: int):
        super().__init__(f"duplicate key {key} (line {line}; first given on line {first_line})")


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping; PyYAML would silently keep
    the last one, so of two edits to one setting, one would be ignored."""

    def construct_document(self, node):
        _refuse_duplicate_keys(node, (), set())
        return super().construct_document(node)


def _refuse_duplicate_keys(node: yaml.Node, path: tuple[str, ...], visited: set[int]) -> None:
    if id(node) in visited:  # an alias seen before (aliases may even be recursive)
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: overriding is its point
                continue
            key = (key_node.tag, str(key_node.value))
            dotted = ".".join((*path, key[1]))
            line = key_node.start_mark.line + 1
            if key in first:
                raise _DuplicateKeyError(dotted, first[key], line)
            first[key] = line
            _refuse_duplicate_keys(value_node, (*path, key[1]), visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, (*path, str(i)), visited)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data, no Python objects


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], Path, _Origins]:
    """The merged settings of `path` and its bases, the root-most base file, and which file set
    each key."""
    if path in seen:
        raise ConfigError(f"config {path} extends itself through {[str(p) for p in seen]}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _load_yaml(path.read_text()) or {}
    except _DuplicateKeyError as err:
        raise ConfigError(f"invalid config {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    base_name = data.pop("extends", None)
    origins: _Origins = {}
    if base_name is None:
        _record_origins(origins, data, (), f"in {path}")
        return data, path, origins
    base, base_file, origins = _read_with_bases((path.parent / base_name).resolve(), seen + (path,))
    _record_origins(origins, data, (), f"in {path}")
    return _deep_merge(base, data), base_file, origins


def _record_origins(origins: _Origins, data: Any, path: tuple[str, ...], origin: str) -> None:
    """Mark every key of `data` under `path` as set by `origin`; a value that replaces a whole
    section takes over the keys below it."""
    if path:
        if not isinstance(data, dict):
            for key in [k for k in origins if k[: len(path)] == path]:
                del origins[key]
        origins[path] = origin
    if isinstance(data, dict):
        for key, value in data.items():
            _record_origins(origins, value, (*path, str(key)), origin)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_env_overrides(
    raw: dict[str, Any], origins: _Origins, environ: Mapping[str, str]
) -> dict[str, Any]:
    """Merge every RECS__SECTION__KEY variable into `raw`. A variable whose name starts with
    the prefix in any case is checked: one that is not spelt exactly as documented, or names no
    setting, is an error rather than a setting silently left at its default."""
    result = raw
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        if name != name.upper():
            raise ConfigError(
                f"environment variable {name}: overrides are spelt in upper case "
                f"({name.upper()}); as it is, it would set nothing"
            )
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if len(keys) < 2 or not all(keys):
            raise ConfigError(f"environment override {name} must look like RECS__SECTION__KEY")
        _check_setting(name, keys)
        try:
            value = _load_yaml(environ[name])
        except yaml.YAMLError as err:
            raise ConfigError(f"environment variable {name} is not a YAML value: {err}") from None
        patch: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            patch = {key: patch}
        result = _deep_merge(result, patch)
        _record_origins(origins, value, tuple(keys), f"set by environment variable {name}")
    return result


def _check_setting(name: str, keys: list[str]) -> None:
    """Raise ConfigError naming the variable unless `keys` is a path of Config's settings.

    Below a mapping of free keys (spark.conf, monitor.checks, ...) any key goes: the mapping's
    own validation checks them.
    """
    model: type[BaseModel] = Config
    for depth, key in enumerate(keys):
        fields = {(f.alias or n): f for n, f in model.model_fields.items() if n != "source_file"}
        here = ".".join(keys[: depth + 1])
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = ""
            if close:
                hint = f"; did you mean {ENV_PREFIX}{'__'.join([*keys[:depth], close[0]]).upper()}?"
            parent = ".".join(keys[:depth]) or "the config"
            raise ConfigError(
                f"environment variable {name} names no setting: {here} is not a key of "
                f"{parent}{hint}"
            )
        annotation = fields[key].annotation
        section = _section_of(annotation)
        if section is not None:
            model = section
            continue
        if depth < len(keys) - 1 and not _is_mapping(annotation):
            raise ConfigError(
                f"environment variable {name} names no setting: {here} is a value, not a section"
            )
        return


def _type_args(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _section_of(annotation: Any) -> type[BaseModel] | None:
    for arg in _type_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_mapping(annotation: Any) -> bool:
    return any(typing.get_origin(arg) is dict for arg in _type_args(annotation))


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
