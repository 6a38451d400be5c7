"""jobs/tools/bot_inject.py: injected bots of every kind, and the default rules catching each."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from jobs.clean import run as clean
from jobs.infra.paths import Lake, read_partition
from jobs.infra.schemas import CART, EVENT_TS, EVENT_TYPE, ITEM_ID, VIEW, VISITOR_ID, event_schema
from jobs.tools.bot_inject import FIRST_BOT_ID, KINDS, make_bots, write_bots

D = date(2017, 11, 26)


def test_make_bots_gives_every_kind_on_the_shops_items_before_the_day_ends():
    items = np.array([5, 7, 11, 13, 17, 19, 23])
    bots, kinds = make_bots(items, D, per_kind=2, seed=1)
    assert sorted(kinds.values()) == sorted(list(KINDS) * 2)
    assert set(bots[VISITOR_ID]) == set(kinds) and min(kinds) == FIRST_BOT_ID
    assert set(bots[ITEM_ID]) <= set(items.tolist())
    end = int(datetime(2017, 11, 27, tzinfo=UTC).timestamp() * 1000)
    assert bots[EVENT_TS].max() < end
    by_kind = bots.assign(kind=bots[VISITOR_ID].map(kinds))
    carts = by_kind[by_kind["kind"] == "cart_bot_150"]
    assert set(carts[EVENT_TYPE]) == {CART} and len(carts) == 2 * 150
    assert set(by_kind.loc[by_kind["kind"] == "crawler", EVENT_TYPE]) == {VIEW}
    with pytest.raises(ValueError, match="per_kind"):
        make_bots(items, D, per_kind=0, seed=1)


@pytest.mark.spark
def test_the_default_rules_remove_every_injected_kind_and_keep_the_shoppers(spark, cfg):
    lake = Lake(cfg.paths.lake)
    # 40 shoppers: a few views a minute apart, a cart, and for half of them a purchase.
    t0 = datetime(2017, 11, 26, 8, tzinfo=UTC)
    rows = []
    for v in range(1, 41):
        rows += [(t0 + timedelta(minutes=n + v), v, 100 + n + v, VIEW) for n in range(6)]
        rows.append((t0 + timedelta(minutes=7 + v), v, 100 + v, CART))
        if v % 2:
            rows.append((t0 + timedelta(minutes=9 + v), v, 100 + v, "purchase"))
    stamped = [(*r[:4], None, None, None, None, "shop", "ingest/x") for r in rows]
    path = str(lake.partition("bronze", "events", D))
    spark.createDataFrame(stamped, event_schema()).write.parquet(path)
    items = np.arange(100, 3_000)
    bots, kinds = make_bots(items, D, per_kind=1, seed=3)
    write_bots(lake, D, bots)

    report = clean(cfg, D, spark)

    removed = read_partition(lake, "silver", "removed_visitors", D)
    assert set(removed[VISITOR_ID]) == set(kinds)  # every bot, no shopper
    assert report["rows_out"] == len(rows)
