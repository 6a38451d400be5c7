"""How a source's landed files read: layouts (RetailRocket, REES46, generic), the event-time
window, and the pure transforms that type each raw row and give it a status and a reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.feeds.privacy import ID_MASK, pseudonymize
from jobs.infra.config import SourceConfig
from jobs.infra.paths import end_of_day
from jobs.infra.schemas import (
    AVAILABLE,
    CATEGORY_ID,
    EVENT_KEY,
    EVENT_TS,
    EVENT_TYPE,
    FACT_TS,
    FILE,
    FIRST_SEEN_TS,
    INGEST_RUN,
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

STATUS = "_status"  # accepted | quarantined | ignored | erased


FIELDS_OK = "_fields_ok"
# Optional in a reader's rows: false for a line after a quote that never closes (CSV).
QUOTES_OK = "_quotes_ok"


def _quotes_ok(rows: DataFrame) -> Column:
    return F.col(QUOTES_OK) if QUOTES_OK in rows.columns else F.lit(True)


OUTCOMES = ("accepted", "quarantined", "ignored", "erased")


class SchemaMismatchError(ValueError):
    """A landed file lacks a column its layout needs (missing or renamed), or has no header."""


@dataclass(frozen=True)
class Layout:
    """How a source's event files read.

    columns: bronze column (or category_id) -> the file's column name.
    events_globs: the file names (globs, matched without regard to case) of event files.
    timestamp_format: epoch_ms, epoch_s, or a Spark datetime pattern read in UTC.
    event_types: our event type -> the file's names for it; ignore: names counted, not kept.
    purchase_needs_transaction: a purchase must carry a transaction id and nothing else may.
    properties_glob: RetailRocket's item_properties files in the same folder, if any.
    delimiter: the CSV field separator; header: whether line 1 names the columns, else
    column_names does. event_type: every row's type, for feeds without an event-type column.
    text_ids: bronze id columns whose values are the shop's text (SKUs, names): hashed to a
    stable integer, the text kept in the id dictionary for the export.
    """

    format: str
    events_globs: tuple[str, ...]
    columns: dict[str, str]
    timestamp_format: str
    event_types: dict[str, tuple[str, ...]]
    ignore: tuple[str, ...] = ()
    purchase_needs_transaction: bool = False
    properties_glob: str | None = None
    delimiter: str = ","
    header: bool = True
    column_names: tuple[str, ...] = ()
    event_type: str | None = None
    text_ids: tuple[str, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(self.columns.values())


RETAILROCKET = Layout(
    format="csv",
    events_globs=("events*.csv", "events*.csv.gz"),
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
    events_globs=("*.csv", "*.csv.gz"),
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
    event_types = {k: tuple(v) for k, v in source.event_types.items()}
    if source.event_type is not None:
        event_types = {source.event_type: (source.event_type,)}
    return Layout(
        format=source.format,
        events_globs=source.events_glob,
        columns=dict(source.columns),
        timestamp_format=source.timestamp_format,
        event_types=event_types,
        ignore=tuple(source.ignore_event_types),
        delimiter=source.delimiter,
        header=source.header,
        column_names=source.column_names,
        event_type=source.event_type,
        text_ids=source.text_ids,
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


def text_id(text: Column) -> Column:
    """A stable non-negative 62-bit integer for an id the shop writes as text (xxhash64 of the
    UTF-8 text). The same text gets the same id on every night, with no state to keep."""
    return F.when(text.isNotNull(), F.xxhash64(text).bitwiseAND(F.lit(ID_MASK)))


# Parsed columns holding a text id's original text (null for integer ids).
ID_TEXT = {VISITOR_ID: "_visitor_text", ITEM_ID: "_item_text"}
ID_COLUMN, RAW_ID = "id_column", "raw_id"


class IdCollisionError(ValueError):
    """Two different texts hashed to one id (odds about n^2 / 2^63): the shop must be told."""


def id_dictionary(parsed: DataFrame) -> DataFrame:
    """id_column, id, raw_id: each accepted text id once, the day's part of the dictionary the
    export reads to give the shop its own ids back."""
    accepted = parsed.where(F.col(STATUS) == "accepted")
    parts = [
        accepted.where(F.col(text).isNotNull()).select(
            F.lit(column).alias(ID_COLUMN), F.col(column).alias("id"), F.col(text).alias(RAW_ID)
        )
        for column, text in ID_TEXT.items()
    ]
    return parts[0].unionByName(parts[1]).distinct()


def parse_events(
    rows: DataFrame, layout: Layout, window: Window, visitor_key: bytes | None = None
) -> DataFrame:
    """Type and check raw rows; every row keeps its raw line and gets a status and a reason.

    `rows` has RAW_LINE, FILE, SOURCE, FIELDS_OK (the record has as many fields as the header),
    optionally QUOTES_OK, and one text column per mapped bronze column, named by the bronze
    column. Returns the
    bronze columns plus CATEGORY_ID, STATUS (accepted | quarantined | ignored) and REASON.
    """
    raw = {name: F.col(name) if name in layout.columns else F.lit(None) for name in MAPPED_COLUMNS}
    if layout.event_type is not None:
        raw[EVENT_TYPE] = F.lit(layout.event_type)
    event_name = F.trim(raw[EVENT_TYPE])
    event_type = F.coalesce(
        *[
            F.when(event_name.isin(list(names)), F.lit(ours))
            for ours, names in layout.event_types.items()
        ],
        F.lit(None).cast("string"),
    )
    visitor_text = _blank_to_null(raw[VISITOR_ID])
    if visitor_key:
        visitor = pseudonymize(visitor_text, visitor_key)
    elif VISITOR_ID in layout.text_ids:
        visitor = text_id(visitor_text)
    else:
        visitor = visitor_text
    item_text = _blank_to_null(raw[ITEM_ID])
    item = text_id(item_text) if ITEM_ID in layout.text_ids else item_text
    # The shop's own text of a text id, for the id dictionary; never a pseudonymized visitor's.
    visitor_ref = visitor_text if VISITOR_ID in layout.text_ids and not visitor_key else None
    item_ref = item_text if ITEM_ID in layout.text_ids else None
    typed = rows.select(
        RAW_LINE,
        FILE,
        SOURCE,
        FIELDS_OK,
        _quotes_ok(rows).alias("_quotes"),
        parse_timestamp(raw[EVENT_TS], layout.timestamp_format).alias(EVENT_TS),
        visitor.try_cast("long").alias(VISITOR_ID),
        item.try_cast("long").alias(ITEM_ID),
        event_type.alias(EVENT_TYPE),
        _blank_to_null(raw[SESSION_ID]).alias(SESSION_ID),
        _blank_to_null(raw[PRICE]).try_cast("double").alias(PRICE),
        _whole_number(_blank_to_null(raw[QUANTITY])).alias(QUANTITY),
        _blank_to_null(raw[TRANSACTION_ID]).alias(TRANSACTION_ID),
        _blank_to_null(raw[CATEGORY_ID]).try_cast("long").alias(CATEGORY_ID),
        F.lit(visitor_ref).cast("string").alias(ID_TEXT[VISITOR_ID])
        if visitor_ref is None
        else visitor_ref.alias(ID_TEXT[VISITOR_ID]),
        F.lit(None).cast("string").alias(ID_TEXT[ITEM_ID])
        if item_ref is None
        else item_ref.alias(ID_TEXT[ITEM_ID]),
        event_name.isin(list(layout.ignore)).alias("_ignored"),
        *[_blank_to_null(raw[c]).isNotNull().alias(f"_has_{c}") for c in _CHECKED],
    )
    col = F.col
    reason = (
        F.when(~col("_quotes"), F.lit("unclosed_quote"))
        .when(~col(FIELDS_OK), F.lit("wrong_field_count"))
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
        .drop("_ignored", "_quotes", *[f"_has_{c}" for c in _CHECKED])
    )


# Every column a layout can map: the event key plus the category (an item fact).
MAPPED_COLUMNS = (*EVENT_KEY, CATEGORY_ID)


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
    # Item-property rows have no visitor: a null id keeps one schema for the whole table.
    if VISITOR_ID not in parsed.columns:
        parsed = parsed.withColumn(VISITOR_ID, F.lit(None).cast("long"))
    return parsed.where(F.col(STATUS) == "quarantined").select(*QUARANTINE_COLUMNS)


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
        _quotes_ok(rows).alias("_quotes"),
        ts.alias(FACT_TS),
        _blank_to_null(col("itemid")).try_cast("long").alias(ITEM_ID),
        prop.alias("_property"),
        F.when(prop == "categoryid", value.try_cast("long")).alias(CATEGORY_ID),
        F.when(prop == "available", F.when(value == "1", True).when(value == "0", False)).alias(
            AVAILABLE
        ),
    )
    reason = (
        F.when(~col("_quotes"), F.lit("unclosed_quote"))
        .when(~col(FIELDS_OK), F.lit("wrong_field_count"))
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
        .drop("_property", "_quotes")
    )
