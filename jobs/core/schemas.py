"""Column names, event types and table schemas: the one place that spells them.

Bronze and silver events share one typed schema, whatever the shop's raw layout was.
"""

from __future__ import annotations

# Event types after ingestion (the raw RetailRocket names are mapped in jobs/ingest.py).
VIEW = "view"
CART = "cart"
PURCHASE = "purchase"
EVENT_TYPES = (VIEW, CART, PURCHASE)

# Event columns.
EVENT_TS = "event_ts"  # UTC timestamp
VISITOR_ID = "visitor_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TRANSACTION_ID = "transaction_id"
EVENT_COLUMNS = (EVENT_TS, VISITOR_ID, ITEM_ID, EVENT_TYPE, TRANSACTION_ID)

# Catalog snapshot columns.
CATEGORY_ID = "category_id"
AVAILABLE = "available"
FIRST_SEEN_TS = "first_seen_ts"
CATALOG_COLUMNS = (ITEM_ID, CATEGORY_ID, AVAILABLE, FIRST_SEEN_TS)

# Quarantine and cleaning bookkeeping.
REASON = "reason"
RAW_LINE = "raw_line"
RULE = "rule"

# Model inputs and outputs.
INTERACTION_WEIGHT = "interaction_weight"
RANK = "rank"
SCORE = "score"
SOURCE = "source"
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
            T.StructField(TRANSACTION_ID, T.LongType(), True),
        ]
    )
