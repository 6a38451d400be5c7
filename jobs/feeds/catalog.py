"""Item facts and the catalog snapshot: what was known of each item as of a moment, never later.
Shared by ingest (the catalog as of D) and split (the catalog as of the cutoff)."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.feeds.sources import STATUS
from jobs.infra.schemas import (
    AVAILABLE,
    CATALOG_COLUMNS,
    CATEGORY_ID,
    EVENT_TS,
    FACT_TS,
    FIRST_SEEN_TS,
    ITEM_FACT_COLUMNS,
    ITEM_ID,
    PRICE,
    SOURCE,
)


def facts_from_events(parsed: DataFrame) -> DataFrame:
    """Facts per item, source and UTC day from the events: the category and price of the day's
    first event carrying them, stamped at that first event, and the first sighting.

    For layouts without a catalog feed (REES46, generic); availability stays unknown (null).
    Stamped by event time, not at the load: a history loaded at once gives the catalog as of
    any cutoff inside it, and an item seen again after a cutoff is still known before it.
    """
    accepted = parsed.where(F.col(STATUS) == "accepted")
    return (
        accepted.groupBy(ITEM_ID, SOURCE, F.to_date(EVENT_TS).alias("_day"))
        .agg(
            F.min(EVENT_TS).alias(FACT_TS),
            _earliest(CATEGORY_ID, EVENT_TS).alias(CATEGORY_ID),
            _earliest(PRICE, EVENT_TS).alias(PRICE),
            F.lit(None).cast("boolean").alias(AVAILABLE),
            F.min(EVENT_TS).alias(FIRST_SEEN_TS),
        )
        .select(*ITEM_FACT_COLUMNS)
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


def _earliest(value: str, ts: str) -> Column:
    # The value with the least timestamp among non-null values; ties go to the least value.
    return F.min(F.when(F.col(value).isNotNull(), F.struct(F.col(ts), F.col(value))))[value]
