"""Column names, event types and table schemas: the one place that spells them.

Bronze and silver events share one typed schema, whatever the shop's raw layout was.
"""

from __future__ import annotations

# Event types after ingestion (each source's own names are mapped in jobs/ingest.py).
VIEW = "view"
CART = "cart"
PURCHASE = "purchase"
EVENT_TYPES = (VIEW, CART, PURCHASE)

# Event columns.
EVENT_TS = "event_ts"  # UTC timestamp
VISITOR_ID = "visitor_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
SESSION_ID = "session_id"  # the shop's session id, when it sends one
PRICE = "price"  # unit price in the shop's currency, >= 0, when known
QUANTITY = "quantity"  # units, >= 0, when known
TRANSACTION_ID = "transaction_id"  # the shop's order id, as text
SOURCE = "source"  # the configured source name the row came from
INGEST_RUN = "ingest_run"  # the ingest run that wrote the row: "ingest/<logical date>"
EVENT_COLUMNS = (
    EVENT_TS,
    VISITOR_ID,
    ITEM_ID,
    EVENT_TYPE,
    SESSION_ID,
    PRICE,
    QUANTITY,
    TRANSACTION_ID,
    SOURCE,
    INGEST_RUN,
)
# The columns that make two events the same event (the bookkeeping columns do not).
EVENT_KEY = EVENT_COLUMNS[:8]

# Catalog snapshot columns (bronze/catalog), and the item facts it is folded from.
CATEGORY_ID = "category_id"
AVAILABLE = "available"
FIRST_SEEN_TS = "first_seen_ts"
CATALOG_COLUMNS = (ITEM_ID, CATEGORY_ID, PRICE, AVAILABLE, FIRST_SEEN_TS)
FACT_TS = "fact_ts"  # when a fact about an item was observed
ITEM_FACT_COLUMNS = (ITEM_ID, FACT_TS, CATEGORY_ID, PRICE, AVAILABLE, FIRST_SEEN_TS, SOURCE)

# Quarantine and cleaning bookkeeping.
REASON = "reason"
RAW_LINE = "raw_line"
FILE = "file"
RULE = "rule"
# visitor_id: the row's visitor in bronze's form (null for unparseable ids and item facts), so
# erase finds a visitor's quarantined rows exactly, even when the raw line is pseudonymized.
QUARANTINE_COLUMNS = (SOURCE, FILE, REASON, RAW_LINE, VISITOR_ID)

# Model inputs and outputs.
INTERACTION_WEIGHT = "interaction_weight"
RANK = "rank"
SCORE = "score"
# The `source` of an exported list row (als, category_popular, popular) reuses SOURCE's name.
MODEL_VERSION = "model_version"


def event_schema():
    """Spark schema of bronze/silver events (imported lazily so pure-Python jobs skip pyspark)."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(EVENT_TS, T.TimestampType(), False),
            T.StructField(VISITOR_ID, T.LongType(), False),
            T.StructField(ITEM_ID, T.LongType(), False),
            T.StructField(EVENT_TYPE, T.StringType(), False),
            T.StructField(SESSION_ID, T.StringType(), True),
            T.StructField(PRICE, T.DoubleType(), True),
            T.StructField(QUANTITY, T.IntegerType(), True),
            T.StructField(TRANSACTION_ID, T.StringType(), True),
            T.StructField(SOURCE, T.StringType(), False),
            T.StructField(INGEST_RUN, T.StringType(), False),
        ]
    )


# What the nightly monitor (jobs/monitor.py) records of each night and can check.
MONITOR_FACTS = (
    *(f"events.{t}" for t in EVENT_TYPES),  # the day's accepted events, by type
    "quarantine_rate",  # quarantined share of the day's raw rows
    "bot_rate",  # share of the day's accepted events that clean removed (bots, test traffic)
    "ndcg_at_10",  # the night's challenger on its test window
    "catalog_coverage",  # share of catalog items in at least one exported list
    "stale_ratio",  # share of a visitor's list also in yesterday's list (sampled visitors)
    "fallback_share",  # share of exported list rows not from the model
)
