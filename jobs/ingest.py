"""Ingest: the files that landed for logical date D -> typed bronze events, item facts, catalog.

Each configured source (`ingest.sources`) delivers files to
``<paths.landing>/<source>/dt=D/``. Its layout says how they read: `retailrocket` (events.csv
plus item_properties*.csv), `rees46` (the "multi-category store" export) or `generic` (column
names, timestamp format and event names mapped in the config; CSV or Parquet). Every row of every
file ends in exactly one place:

    raw rows = accepted + quarantined + ignored + erased          (per file)
    accepted = written to bronze + duplicates                     (per day)

- accepted: typed bronze events in ``bronze/events/dt=D`` (exact duplicates dropped, counted);
- quarantined: ``quarantine/events/dt=D`` with the source, file, reason code and raw line;
- ignored: event names the source sends that we do not learn from (REES46 remove_from_cart);
- erased: rows of visitors on the erasure list (``python -m jobs.erase``).

Item facts (category, price, availability, first sighting) go to ``bronze/item_facts/dt=D``;
the catalog snapshot ``bronze/catalog/dt=D`` folds the facts of every date up to D, never later.
A file whose quarantined share exceeds ``ingest.max_quarantine_rate`` fails the run, naming the
file and its top reasons, and the day's bronze partitions are removed so nothing downstream reads
half a day. A day with no files succeeds and says so. A historical export is ingested the same
way: land the whole file in one dt= folder (docs/ingestion.md).

Run alone:
    spark-submit jobs/ingest.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.cli import parse_stage_args
from jobs.core.config import Config, SourceConfig
from jobs.core.paths import Lake, end_of_day, partition_digest, sha256_file, write_lineage
from jobs.core.schemas import (
    AVAILABLE,
    CATALOG_COLUMNS,
    CATEGORY_ID,
    EVENT_KEY,
    EVENT_TS,
    EVENT_TYPE,
    EVENT_TYPES,
    FACT_TS,
    FILE,
    FIRST_SEEN_TS,
    INGEST_RUN,
    ITEM_FACT_COLUMNS,
    ITEM_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    QUARANTINE_COLUMNS,
    RAW_LINE,
    REASON,
    SESSION_ID,
    SOURCE,
    TRANSACTION_ID,
    VISITOR_ID,
)
from jobs.core.spark import get_spark

log = logging.getLogger("ingest")

STATUS = "_status"  # accepted | quarantined | ignored | erased
FIELDS_OK = "_fields_ok"
OUTCOMES = ("accepted", "quarantined", "ignored", "erased")


class SchemaMismatchError(ValueError):
    """A landed file lacks a column its layout needs (missing or renamed), or has no header."""


class QuarantineRateError(RuntimeError):
    """Too large a share of a file's rows was malformed."""


class ReconciliationError(AssertionError):
    """Rows went missing: the counts of a file or of the day do not add up."""


@dataclass(frozen=True)
class Layout:
    """How a source's event files read.

    columns: bronze column (or category_id) -> the file's column name.
    timestamp_format: epoch_ms, epoch_s, or a Spark datetime pattern read in UTC.
    event_types: our event type -> the file's names for it; ignore: names counted, not kept.
    purchase_needs_transaction: a purchase must carry a transaction id and nothing else may.
    properties_glob: RetailRocket's item_properties files in the same folder, if any.
    """

    format: str
    events_glob: str
    columns: dict[str, str]
    timestamp_format: str
    event_types: dict[str, tuple[str, ...]]
    ignore: tuple[str, ...] = ()
    purchase_needs_transaction: bool = False
    properties_glob: str | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(self.columns.values())


RETAILROCKET = Layout(
    format="csv",
    events_glob="events*.csv",
    columns={
        EVENT_TS: "timestamp",
        VISITOR_ID: "visitorid",
        EVENT_TYPE: "event",
        ITEM_ID: "itemid",
        TRANSACTION_ID: "transactionid",
    },
    timestamp_format="epoch_ms",
    event_types={"view": ("view",), "cart": ("addtocart",), "purchase": ("transaction",)},
    purchase_needs_transaction=True,
    properties_glob="item_properties*.csv",
)
REES46 = Layout(
    format="csv",
    events_glob="*.csv",
    columns={
        EVENT_TS: "event_time",
        EVENT_TYPE: "event_type",
        ITEM_ID: "product_id",
        CATEGORY_ID: "category_id",
        PRICE: "price",
        VISITOR_ID: "user_id",
        SESSION_ID: "user_session",
    },
    timestamp_format="yyyy-MM-dd HH:mm:ss z",  # 2019-10-01 00:00:00 UTC
    event_types={"view": ("view",), "cart": ("cart",), "purchase": ("purchase",)},
    ignore=("remove_from_cart",),
)
PROPERTIES_COLUMNS = ("timestamp", "itemid", "property", "value")
PROPERTY_FACTS = {"categoryid": CATEGORY_ID, "available": AVAILABLE}


def layout_for(source: SourceConfig) -> Layout:
    """The built-in layout, or the generic one the config spells out."""
    if source.layout == "retailrocket":
        return RETAILROCKET
    if source.layout == "rees46":
        return REES46
    return Layout(
        format=source.format,
        events_glob=source.events_glob,
        columns=dict(source.columns),
        timestamp_format=source.timestamp_format,
        event_types={k: tuple(v) for k, v in source.event_types.items()},
        ignore=tuple(source.ignore_event_types),
    )


@dataclass(frozen=True)
class Window:
    """Event times a day's files may carry: [earliest, until), UTC."""

    earliest: datetime
    until: datetime

    @classmethod
    def for_date(cls, run_date: date, min_event_date: date) -> Window:
        return cls(datetime.combine(min_event_date, time(0), tzinfo=UTC), end_of_day(run_date))


def check_columns(found: list[str] | tuple[str, ...], needed: tuple[str, ...], file: str) -> None:
    """Raise SchemaMismatchError naming the file and each needed column it lacks."""
    missing = [c for c in needed if c not in found]
    if missing:
        raise SchemaMismatchError(
            f"{file}: missing column(s) {missing} (renamed or dropped?); "
            f"found {list(found)}, the layout needs {list(needed)}"
        )


def _blank_to_null(col: Column) -> Column:
    trimmed = F.trim(col)
    return F.when(trimmed != "", trimmed)


def parse_timestamp(col: Column, timestamp_format: str) -> Column:
    """A UTC timestamp from text: epoch_ms, epoch_s or a Spark pattern; null if unparseable."""
    text = _blank_to_null(col)
    if timestamp_format == "epoch_ms":
        return F.timestamp_millis(text.try_cast("long"))
    if timestamp_format == "epoch_s":
        return F.timestamp_seconds(text.try_cast("long"))
    return F.try_to_timestamp(text, F.lit(timestamp_format))


def _whole_number(text: Column) -> Column:
    # "2" and "2.0" (a float column written out) are both two units; "2.5" is not a quantity.
    number = text.try_cast("double")
    return F.when(number == F.floor(number), number.try_cast("int"))


def pseudonymize(col: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, id) cut to 60 bits: a stable opaque long no one can reverse without key.

    Spelled with Spark's sha2 so it runs in the JVM (RFC 2104: H(k^opad || H(k^ipad || m))).
    """
    block = 64
    if len(key) > block:
        import hashlib

        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), F.encode(col, "UTF-8")), 256))
    outer = F.sha2(F.concat(F.lit(outer_pad), inner), 256)
    return F.conv(F.substring(outer, 1, 15), 16, 10).cast("long")


def parse_events(
    rows: DataFrame, layout: Layout, window: Window, visitor_key: bytes | None = None
) -> DataFrame:
    """Type and check raw rows; every row keeps its raw line and gets a status and a reason.

    `rows` has RAW_LINE, FILE, SOURCE, FIELDS_OK (the line has as many fields as the header) and
    one text column per mapped bronze column, named by the bronze column. Returns the
    bronze columns plus CATEGORY_ID, STATUS (accepted | quarantined | ignored) and REASON.
    """
    raw = {name: F.col(name) if name in layout.columns else F.lit(None) for name in _MAPPED}
    event_name = F.trim(raw[EVENT_TYPE])
    event_type = F.coalesce(
        *[
            F.when(event_name.isin(list(names)), F.lit(ours))
            for ours, names in layout.event_types.items()
        ],
        F.lit(None).cast("string"),
    )
    visitor_text = _blank_to_null(raw[VISITOR_ID])
    visitor = pseudonymize(visitor_text, visitor_key) if visitor_key else visitor_text
    typed = rows.select(
        RAW_LINE,
        FILE,
        SOURCE,
        FIELDS_OK,
        parse_timestamp(raw[EVENT_TS], layout.timestamp_format).alias(EVENT_TS),
        visitor.try_cast("long").alias(VISITOR_ID),
        _blank_to_null(raw[ITEM_ID]).try_cast("long").alias(ITEM_ID),
        event_type.alias(EVENT_TYPE),
        _blank_to_null(raw[SESSION_ID]).alias(SESSION_ID),
        _blank_to_null(raw[PRICE]).try_cast("double").alias(PRICE),
        _whole_number(_blank_to_null(raw[QUANTITY])).alias(QUANTITY),
        _blank_to_null(raw[TRANSACTION_ID]).alias(TRANSACTION_ID),
        _blank_to_null(raw[CATEGORY_ID]).try_cast("long").alias(CATEGORY_ID),
        event_name.isin(list(layout.ignore)).alias("_ignored"),
        *[_blank_to_null(raw[c]).isNotNull().alias(f"_has_{c}") for c in _CHECKED],
    )
    col = F.col
    reason = (
        F.when(~col(FIELDS_OK), F.lit("wrong_field_count"))
        .when(~col(f"_has_{EVENT_TS}"), F.lit("missing_timestamp"))
        .when(col(EVENT_TS).isNull(), F.lit("bad_timestamp"))
        .when(col(EVENT_TS) < F.lit(window.earliest), F.lit("timestamp_out_of_range"))
        .when(col(EVENT_TS) >= F.lit(window.until), F.lit("timestamp_after_logical_date"))
        .when(~col(f"_has_{VISITOR_ID}"), F.lit("missing_visitor_id"))
        .when(col(VISITOR_ID).isNull() | (col(VISITOR_ID) < 0), F.lit("bad_visitor_id"))
        .when(~col(f"_has_{ITEM_ID}"), F.lit("missing_item_id"))
        .when(col(ITEM_ID).isNull() | (col(ITEM_ID) < 0), F.lit("bad_item_id"))
        .when(col(EVENT_TYPE).isNull() & ~col("_ignored"), F.lit("unknown_event_type"))
        .when(col(f"_has_{PRICE}") & col(PRICE).isNull(), F.lit("bad_price"))
        .when(col(PRICE) < 0, F.lit("negative_price"))
        .when(col(f"_has_{QUANTITY}") & col(QUANTITY).isNull(), F.lit("bad_quantity"))
        .when(col(QUANTITY) < 0, F.lit("negative_quantity"))
    )
    if layout.purchase_needs_transaction:
        reason = reason.when(
            (col(EVENT_TYPE) == PURCHASE) != col(TRANSACTION_ID).isNotNull(),
            F.lit("transaction_id_mismatch"),
        )
    status = (
        F.when(col(REASON).isNotNull(), F.lit("quarantined"))
        .when(col("_ignored"), F.lit("ignored"))
        .otherwise(F.lit("accepted"))
    )
    return (
        typed.withColumn(REASON, reason)
        .withColumn(STATUS, status)
        .drop("_ignored", *[f"_has_{c}" for c in _CHECKED])
    )


# Every column a layout can map: the event key plus the category (an item fact).
_MAPPED = (*EVENT_KEY, CATEGORY_ID)
_CHECKED = (EVENT_TS, VISITOR_ID, ITEM_ID, PRICE, QUANTITY)


def mark_erased(parsed: DataFrame, erased: DataFrame | None) -> DataFrame:
    """Give rows of erased visitors the status `erased`, whatever else was wrong with them.

    `erased` has VISITOR_ID in the form bronze stores (pseudonymized when that is on).
    """
    if erased is None:
        return parsed
    ids = F.broadcast(erased.select(F.col(VISITOR_ID).alias("_erased_id")).distinct())
    joined = parsed.join(ids, parsed[VISITOR_ID] == F.col("_erased_id"), "left")
    hit = F.col("_erased_id").isNotNull()
    return joined.select(
        *[c for c in parsed.columns if c not in (STATUS, REASON)],
        F.when(hit, F.lit(None).cast("string")).otherwise(F.col(REASON)).alias(REASON),
        F.when(hit, F.lit("erased")).otherwise(F.col(STATUS)).alias(STATUS),
    )


def accepted_events(parsed: DataFrame, ingest_run: str) -> DataFrame:
    """Accepted rows as bronze events, each distinct event once (exact duplicates dropped).

    Two sources reporting the same event keep one row, attributed to the first source by name.
    """
    return (
        parsed.where(F.col(STATUS) == "accepted")
        .groupBy(*EVENT_KEY)
        .agg(F.min(SOURCE).alias(SOURCE))
        .select(*EVENT_KEY, SOURCE, F.lit(ingest_run).alias(INGEST_RUN))
    )


def quarantined_rows(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col(STATUS) == "quarantined").select(*QUARANTINE_COLUMNS)


def facts_from_events(parsed: DataFrame) -> DataFrame:
    """One fact per item and source: latest category and price seen in its events, first sighting.

    For layouts without a catalog feed (REES46, generic); availability stays unknown (null).
    """
    accepted = parsed.where(F.col(STATUS) == "accepted")
    return (
        accepted.groupBy(ITEM_ID, SOURCE)
        .agg(
            F.max(EVENT_TS).alias(FACT_TS),
            _latest(CATEGORY_ID, EVENT_TS).alias(CATEGORY_ID),
            _latest(PRICE, EVENT_TS).alias(PRICE),
            F.lit(None).cast("boolean").alias(AVAILABLE),
            F.min(EVENT_TS).alias(FIRST_SEEN_TS),
        )
        .select(*ITEM_FACT_COLUMNS)
    )


def parse_item_properties(rows: DataFrame, window: Window) -> DataFrame:
    """RetailRocket item_properties rows -> item facts, with status and reason like events.

    `rows` has RAW_LINE, FILE, SOURCE, FIELDS_OK and text columns timestamp, itemid, property,
    value. Only categoryid and available are facts we use; other properties are `ignored`.
    """
    col = F.col
    ts = parse_timestamp(col("timestamp"), "epoch_ms")
    prop = F.trim(col("property"))
    value = F.trim(col("value"))
    typed = rows.select(
        RAW_LINE,
        FILE,
        SOURCE,
        FIELDS_OK,
        ts.alias(FACT_TS),
        _blank_to_null(col("itemid")).try_cast("long").alias(ITEM_ID),
        prop.alias("_property"),
        F.when(prop == "categoryid", value.try_cast("long")).alias(CATEGORY_ID),
        F.when(prop == "available", F.when(value == "1", True).when(value == "0", False)).alias(
            AVAILABLE
        ),
    )
    reason = (
        F.when(~col(FIELDS_OK), F.lit("wrong_field_count"))
        .when(col(FACT_TS).isNull(), F.lit("bad_timestamp"))
        .when(col(FACT_TS) < F.lit(window.earliest), F.lit("timestamp_out_of_range"))
        .when(col(FACT_TS) >= F.lit(window.until), F.lit("timestamp_after_logical_date"))
        .when(col(ITEM_ID).isNull() | (col(ITEM_ID) < 0), F.lit("bad_item_id"))
        .when(
            ((col("_property") == "categoryid") & col(CATEGORY_ID).isNull())
            | ((col("_property") == "available") & col(AVAILABLE).isNull()),
            F.lit("bad_property_value"),
        )
    )
    status = (
        F.when(col(REASON).isNotNull(), F.lit("quarantined"))
        .when(~col("_property").isin(list(PROPERTY_FACTS)), F.lit("ignored"))
        .otherwise(F.lit("accepted"))
    )
    return (
        typed.withColumn(REASON, reason)
        .withColumn(STATUS, status)
        .withColumn(PRICE, F.lit(None).cast("double"))
        .withColumn(FIRST_SEEN_TS, F.col(FACT_TS))
        .drop("_property")
    )


def accepted_facts(parsed_properties: DataFrame) -> DataFrame:
    return parsed_properties.where(F.col(STATUS) == "accepted").select(*ITEM_FACT_COLUMNS)


def snapshot_catalog(facts: DataFrame, until: datetime) -> DataFrame:
    """The catalog as of `until`: each item's latest known category, price and availability.

    Folds item facts of every date; facts at or after `until` are never used, so a backfill sees
    the catalog as it was. Availability defaults to True when no fact says otherwise.
    """
    known = facts.where(F.col(FACT_TS) < F.lit(until))
    return (
        known.groupBy(ITEM_ID)
        .agg(
            _latest(CATEGORY_ID, FACT_TS).alias(CATEGORY_ID),
            _latest(PRICE, FACT_TS).alias(PRICE),
            F.coalesce(_latest(AVAILABLE, FACT_TS), F.lit(True)).alias(AVAILABLE),
            F.min(FIRST_SEEN_TS).alias(FIRST_SEEN_TS),
        )
        .select(*CATALOG_COLUMNS)
    )


def _latest(value: str, ts: str) -> Column:
    # The value with the greatest timestamp among non-null values; ties go to the greatest
    # value, so the result never depends on row order.
    return F.max(F.when(F.col(value).isNotNull(), F.struct(F.col(ts), F.col(value))))[value]


def count_outcomes(parsed: DataFrame) -> dict[str, dict]:
    """Per file: raw_rows, one count per outcome, and quarantine reasons, most frequent first."""
    per_file: dict[str, dict] = {}
    for row in parsed.groupBy(FILE, STATUS, REASON).count().collect():
        counts = per_file.setdefault(
            row[FILE], {"raw_rows": 0, **dict.fromkeys(OUTCOMES, 0), "reasons": Counter()}
        )
        counts["raw_rows"] += row["count"]
        counts[row[STATUS]] += row["count"]
        if row[REASON] is not None:
            counts["reasons"][row[REASON]] += row["count"]
    for counts in per_file.values():
        counts["reasons"] = dict(sorted(counts["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return dict(sorted(per_file.items()))


def reconcile(files: dict[str, dict], accepted_events: int, written_events: int) -> int:
    """Raise ReconciliationError unless every row is accounted for; return the duplicates.

    Per file: raw_rows = accepted + quarantined + ignored + erased. Per day: accepted event rows
    = rows written to bronze + exact duplicates (so duplicates can never be negative).
    """
    for name, c in files.items():
        if c["raw_rows"] != sum(c[o] for o in OUTCOMES):
            raise ReconciliationError(f"{name}: counts do not reconcile: {c}")
    duplicates = accepted_events - written_events
    if duplicates < 0:
        raise ReconciliationError(
            f"bronze holds {written_events} events but only {accepted_events} were accepted"
        )
    return duplicates


def check_quarantine_rate(files: dict[str, dict], max_rate: float, quarantine: Path) -> None:
    """Raise QuarantineRateError naming each file over the limit and its top three reasons."""
    over = []
    for name, c in files.items():
        rate = c["quarantined"] / c["raw_rows"] if c["raw_rows"] else 0.0
        if rate > max_rate:
            top = ", ".join(f"{k}={v}" for k, v in list(c["reasons"].items())[:3])
            over.append(f"{name}: {rate:.2%} of {c['raw_rows']} rows quarantined ({top})")
    if over:
        raise QuarantineRateError(
            f"quarantine rate above the limit of {max_rate:.2%}:\n  "
            + "\n  ".join(over)
            + f"\nthe rows and their reasons are in {quarantine}"
        )


# --- reading landed files (I/O) -------------------------------------------------------------


@dataclass
class Landed:
    """What one source delivered for the day, parsed; and the files, for lineage."""

    events: list[DataFrame] = field(default_factory=list)
    properties: list[DataFrame] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)


def _csv_rows(spark: SparkSession, path: Path, columns: dict[str, str], source: str) -> DataFrame:
    """Raw lines of a CSV file with a header, and the text of each mapped column.

    Fields are split by Spark's CSV parser (quotes allowed); the field count of each line is
    checked against the header so that short and long lines are quarantined, not guessed at.
    """
    import csv

    with path.open(newline="") as handle:
        header_line = handle.readline()
    if not header_line.strip():
        raise SchemaMismatchError(f"{path}: empty file, expected a header with {list(columns)}")
    header = [c.strip() for c in next(csv.reader([header_line.strip("\r\n")]))]
    check_columns(header, tuple(columns.values()), str(path))
    ddl = ", ".join(f"`_c{i}` string" for i in range(len(header)))
    value = F.col("value")
    # Most lines have no quotes: a plain split is cheaper than the CSV parser, so the parser
    # (and the quote-aware field count) only runs on lines that need it.
    quoted = value.contains('"')
    plain = F.split(value, ",", -1)
    n_fields = F.when(
        quoted, F.size(F.split(F.regexp_replace(value, r'"([^"]|"")*"', ""), ",", -1))
    ).otherwise(F.size(plain))
    lines = spark.read.text(str(path)).withColumn("_row", F.monotonically_increasing_id())
    body = lines.where(F.col("_row") != 0)  # the header: row 0 of the file's first split
    parsed = body.select(
        value.alias(RAW_LINE),
        quoted.alias("_quoted"),
        plain.alias("_plain"),
        F.when(quoted, F.from_csv(value, ddl)).alias("_f"),
        n_fields.alias("_n"),
    )

    def field(src: str) -> Column:
        i = header.index(src)
        return F.when(F.col("_quoted"), F.col(f"_f._c{i}")).otherwise(F.get("_plain", i))

    return parsed.select(
        RAW_LINE,
        F.lit(str(path)).alias(FILE),
        F.lit(source).alias(SOURCE),
        (F.col("_n") == len(header)).alias(FIELDS_OK),
        *[field(src).alias(ours) for ours, src in columns.items()],
    )


def _parquet_rows(
    spark: SparkSession, path: Path, columns: dict[str, str], source: str
) -> tuple[DataFrame, bool]:
    """Rows of a Parquet file as JSON raw lines plus mapped columns as text.

    Returns (rows, native_ts): a timestamp column is passed on as epoch milliseconds.
    """
    frame = spark.read.parquet(str(path))
    check_columns(frame.columns, tuple(columns.values()), str(path))
    ts_type = dict(frame.dtypes)[columns[EVENT_TS]]
    native_ts = ts_type.startswith("timestamp")

    def text(ours: str, src: str) -> Column:
        if ours == EVENT_TS and native_ts:
            return F.unix_millis(F.col(src)).cast("string")
        return F.col(src).cast("string")

    rows = frame.select(
        F.to_json(F.struct(*[F.col(c) for c in frame.columns])).alias(RAW_LINE),
        F.lit(str(path)).alias(FILE),
        F.lit(source).alias(SOURCE),
        F.lit(True).alias(FIELDS_OK),
        *[text(ours, src).alias(ours) for ours, src in columns.items()],
    )
    return rows, native_ts


def _describe_file(path: Path) -> dict:
    return {"file": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_landed(
    spark: SparkSession,
    source: SourceConfig,
    folder: Path,
    window: Window,
    visitor_key: bytes | None,
) -> Landed:
    """Parse every file the source delivered to `folder` (none: an empty day)."""
    from dataclasses import replace

    layout = layout_for(source)
    landed = Landed()
    if not folder.is_dir():
        log.warning("source %s: nothing landed for this day (no folder %s)", source.name, folder)
        return landed
    event_files = sorted(p for p in folder.glob(layout.events_glob) if p.is_file())
    property_files = []
    if layout.properties_glob:
        property_files = sorted(p for p in folder.glob(layout.properties_glob) if p.is_file())
        event_files = [p for p in event_files if p not in property_files]
    for path in event_files:
        if layout.format == "parquet":
            rows, native_ts = _parquet_rows(spark, path, layout.columns, source.name)
            file_layout = replace(layout, timestamp_format="epoch_ms") if native_ts else layout
        else:
            rows, file_layout = _csv_rows(spark, path, layout.columns, source.name), layout
        landed.events.append(parse_events(rows, file_layout, window, visitor_key))
        landed.files.append({**_describe_file(path), "kind": "events"})
    props = {c: c for c in PROPERTIES_COLUMNS}
    for path in property_files:
        rows = _csv_rows(spark, path, props, source.name)
        landed.properties.append(parse_item_properties(rows, window))
        landed.files.append({**_describe_file(path), "kind": "item_properties"})
    if not landed.files:
        log.warning("source %s: no files matched in %s", source.name, folder)
    return landed


def visitor_key(cfg: Config) -> bytes | None:
    """The pseudonymization key from the environment, or None when pseudonymization is off."""
    setting = cfg.ingest.pseudonymize_visitor_ids
    if not setting.enabled:
        return None
    key = os.environ.get(setting.key_env, "")
    if not key:
        raise RuntimeError(
            f"ingest.pseudonymize_visitor_ids is on but the key variable {setting.key_env} is "
            "unset or empty; set it from your secret store (never from a file in the repo)"
        )
    return key.encode()


def _union(frames: list[DataFrame], empty: DataFrame) -> DataFrame:
    result = empty
    for frame in frames:
        result = result.unionByName(frame)
    return result


def _empty_parsed(spark: SparkSession, window: Window) -> DataFrame:
    """A parsed frame with no rows but every column, for days with no files."""
    rows = spark.createDataFrame(
        [],
        f"{RAW_LINE} string, {FILE} string, {SOURCE} string, {FIELDS_OK} boolean, "
        + ", ".join(f"{c} string" for c in _MAPPED),
    )
    layout = Layout("csv", "", {c: c for c in _MAPPED}, "epoch_ms", {t: (t,) for t in EVENT_TYPES})
    return parse_events(rows, layout, window)


def _remove_partitions(lake: Lake, run_date: date, tables: tuple[tuple[str, str], ...]) -> None:
    for layer, table in tables:
        shutil.rmtree(lake.partition(layer, table, run_date), ignore_errors=True)


BRONZE_TABLES = (("bronze", "events"), ("bronze", "item_facts"), ("bronze", "catalog"))


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    spark = get_spark("ingest", args.cfg)
    ingest(spark, args.cfg, args.run_date)
    spark.stop()
    return 0


def ingest(spark: SparkSession, cfg: Config, run_date: date) -> dict:
    """Ingest every source's files for run_date; write bronze, quarantine, lineage and report."""
    lake = Lake(cfg.paths.lake)
    window = Window.for_date(run_date, cfg.ingest.min_event_date)
    key = visitor_key(cfg)
    erased_path = lake.table("erasure", "visitors")
    erased = spark.read.parquet(str(erased_path)) if (erased_path / "_SUCCESS").exists() else None

    landed = [
        read_landed(spark, s, cfg.paths.landing / s.name / f"dt={run_date}", window, key)
        for s in cfg.ingest.sources
    ]
    empty = _empty_parsed(spark, window)
    events = mark_erased(_union([f for x in landed for f in x.events], empty), erased).cache()
    props_frames = [f for x in landed for f in x.properties]
    files = [f for x in landed for f in x.files]
    counts = count_outcomes(events)
    if props_frames:
        properties = _union(props_frames[1:], props_frames[0]).cache()
        counts.update(count_outcomes(properties))
        quarantine = quarantined_rows(events).unionByName(quarantined_rows(properties))
        facts = accepted_facts(properties)
    else:
        quarantine = quarantined_rows(events)
        facts = facts_from_events(events)

    quarantine_path = lake.partition("quarantine", "rows", run_date)
    quarantine.orderBy(SOURCE, FILE, REASON, RAW_LINE).write.mode("overwrite").parquet(
        str(quarantine_path)
    )
    report: dict = {"run_date": run_date.isoformat(), "files": counts}
    try:
        check_quarantine_rate(counts, cfg.ingest.max_quarantine_rate, quarantine_path)
    except QuarantineRateError as err:
        # Nothing of a rejected day may reach silver: drop its bronze so the next clean stops at
        # the gap instead of training on half a day.
        _remove_partitions(lake, run_date, BRONZE_TABLES)
        lake.write_stage_report(run_date, "ingest", {**report, "error": str(err)})
        raise

    ingest_run = f"ingest/{run_date.isoformat()}"
    events_path = lake.partition("bronze", "events", run_date)
    accepted_events(events, ingest_run).orderBy(*EVENT_KEY).write.mode("overwrite").parquet(
        str(events_path)
    )
    facts_path = lake.partition("bronze", "item_facts", run_date)
    facts.orderBy(ITEM_ID, FACT_TS, SOURCE).write.mode("overwrite").parquet(str(facts_path))
    fact_dates = lake.dates_until("bronze", "item_facts", run_date)
    all_facts = spark.read.parquet(
        *[str(lake.partition("bronze", "item_facts", d)) for d in fact_dates]
    )
    catalog_path = lake.partition("bronze", "catalog", run_date)
    snapshot_catalog(all_facts, window.until).orderBy(ITEM_ID).write.mode("overwrite").parquet(
        str(catalog_path)
    )

    # Count what was written (cheap Parquet reads), not what was meant to be written.
    written = spark.read.parquet(str(events_path)).count()
    accepted_rows = sum(c["accepted"] for name, c in counts.items() if _is_events(name, files))
    duplicates = reconcile(counts, accepted_rows, written)
    quarantined = spark.read.parquet(str(quarantine_path)).count()
    if quarantined != sum(c["quarantined"] for c in counts.values()):
        raise ReconciliationError(f"{quarantine_path} holds {quarantined} rows, counted {counts}")
    events.unpersist()

    catalog_items = spark.read.parquet(str(catalog_path)).count()
    raw_rows = sum(c["raw_rows"] for c in counts.values())
    report.update(
        raw_rows=raw_rows,
        accepted=written,
        duplicates=duplicates,
        quarantined=quarantined,
        ignored=sum(c["ignored"] for c in counts.values()),
        erased=sum(c["erased"] for c in counts.values()),
        quarantine_rate=quarantined / raw_rows if raw_rows else 0.0,
        quarantine_reasons=dict(
            sum((Counter(c["reasons"]) for c in counts.values()), Counter()).most_common()
        ),
        catalog_items=catalog_items,
        empty_day=not files,
        window=[window.earliest.isoformat(), window.until.isoformat()],
    )
    for file in files:
        file["rows"] = counts.get(file["file"], {}).get("raw_rows", 0)
    write_lineage(events_path, files, rows=written, ingest_run=ingest_run)
    write_lineage(quarantine_path, files, rows=quarantined)
    write_lineage(facts_path, files)
    write_lineage(
        catalog_path,
        [
            {
                "partition": str(lake.partition("bronze", "item_facts", d)),
                "sha256": partition_digest(lake.partition("bronze", "item_facts", d)),
            }
            for d in fact_dates
        ],
        rows=catalog_items,
    )
    lake.write_stage_report(run_date, "ingest", report)
    if not files:
        log.warning("ingest %s: empty day, no files landed for any source", run_date)
    log.info("ingest %s: %s", run_date, report)
    return report


def _is_events(name: str, files: list[dict]) -> bool:
    return any(f["file"] == name and f["kind"] == "events" for f in files)


if __name__ == "__main__":
    raise SystemExit(main())
