"""Bot rules against a real export: bots of every kind injected into the shop's own traffic.

Lands the export as delivered (one config overlay), ingests it, adds bots to the run date's
bronze events (the generator's kinds, plus slow crawlers and cart bots that call add-to-cart
for 150 or 300 items without a view), runs clean, and reports per rule and per kind: bot recall
and the real visitors removed (false positives), as `jobs.tools.bot_audit` does for the
synthetic shop. Bots get ids from 2**62 up, which no integer or hashed text id of a shop takes.

    python -m jobs.tools.bot_inject --data ../shared/data/real/taobao_userbehavior \\
        --config configs/examples/taobao.yaml --date 2017-11-26 --out bots-taobao.json
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.infra.config import load_config
from jobs.infra.paths import Lake, read_partition
from jobs.infra.schemas import (
    CART,
    EVENT_TS,
    EVENT_TYPE,
    INGEST_RUN,
    ITEM_ID,
    PRICE,
    QUANTITY,
    SESSION_ID,
    SOURCE,
    TRANSACTION_ID,
    VIEW,
    VISITOR_ID,
)
from jobs.shop.generate import BOT_BEHAVIOURS, BOT_VIEWS_AT_SCALE_1, DAY, MIN_BOT_VIEWS, SECOND
from jobs.tools.bench_real import _land, _overlay, export_arguments, write_result
from jobs.tools.bot_audit import audit_rules, format_tables, read_seen_visitors

FIRST_BOT_ID = 2**62
INJECTED = "injected-bots"
log = logging.getLogger("bot_inject")


def _human_run(n: int, median_seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Offsets in ms from the first day's midnight of n events at a person's pace, in one run."""
    gaps = rng.lognormal(math.log(median_seconds * SECOND), 0.5, n).astype(np.int64)
    return rng.integers(0, DAY // 4) + np.cumsum(gaps) - gaps[0]


def _slow_crawler(n: int, rng):
    return _human_run(n, 40, rng), rng.random(n), None


def _cart_bot(items: int):
    def behaviour(n: int, rng):
        # add-to-cart calls only, each on another item, at a person's pace
        return _human_run(items, 20, rng), rng.permutation(items) / items, CART

    return behaviour


# kind -> (behaviour, walks the shelf in item-id order, views drawn like the generator's)
KINDS = {
    **{kind: (b, walks, True) for kind, (b, walks) in BOT_BEHAVIOURS.items()},
    "slow_crawler": (_slow_crawler, False, False),
    "cart_bot_300": (_cart_bot(300), False, False),
    "cart_bot_150": (_cart_bot(150), False, False),
}
SLOW_CRAWLER_VIEWS = 400


def make_bots(
    items: np.ndarray, run_date: date, per_kind: int, seed: int
) -> tuple[pd.DataFrame, dict[int, str]]:
    """(bot events with VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS; bot id -> kind).

    Each bot's events end on run_date's UTC day at the latest; items are the shop's own
    (`items`, distinct ids). Generator kinds get their scale-1 number of views.
    """
    if items.size == 0 or per_kind < 1:
        raise ValueError(f"need items ({items.size}) and per_kind >= 1 ({per_kind})")
    rng = np.random.default_rng(seed)
    shelf = np.sort(items)
    end_day = int(datetime(run_date.year, run_date.month, run_date.day, tzinfo=UTC).timestamp())
    end_day_ms = end_day * 1000
    parts, kinds, bot = [], {}, FIRST_BOT_ID
    for kind, (behaviour, walks, generated) in KINDS.items():
        for _ in range(per_kind):
            mean = BOT_VIEWS_AT_SCALE_1.get(kind, SLOW_CRAWLER_VIEWS)
            n = max(MIN_BOT_VIEWS, round(rng.lognormal(math.log(mean), 0.3))) if generated else mean
            offset, place, carts = behaviour(n, rng)
            first_day = end_day_ms - (int(offset.max()) // DAY) * DAY
            if walks:
                item = shelf[(rng.integers(0, shelf.size) + place.astype(np.int64)) % shelf.size]
            else:
                item = shelf[(place * shelf.size).astype(np.int64)]
            ts = first_day + offset
            frames = [pd.DataFrame({ITEM_ID: item, EVENT_TS: ts, EVENT_TYPE: VIEW})]
            if isinstance(carts, str):  # a cart bot: every event is an add-to-cart
                frames = [frames[0].assign(**{EVENT_TYPE: carts})]
            elif carts is not None:  # the generator's cart delays per view, -1 for none
                carted = carts >= 0
                frames.append(
                    pd.DataFrame(
                        {ITEM_ID: item[carted], EVENT_TS: ts[carted] + carts[carted]}
                    ).assign(**{EVENT_TYPE: CART})
                )
            parts.append(pd.concat(frames).assign(**{VISITOR_ID: bot}))
            kinds[bot] = kind
            bot += 1
    events = pd.concat(parts, ignore_index=True)
    return events[[VISITOR_ID, ITEM_ID, EVENT_TYPE, EVENT_TS]], kinds


def write_bots(lake: Lake, run_date: date, bots: pd.DataFrame) -> Path:
    """Append the bots to bronze events/dt=run_date as one more file of that partition."""
    n = len(bots)
    table = pa.table(
        {
            EVENT_TS: pa.array(bots[EVENT_TS].to_numpy() * 1000, pa.timestamp("us", tz="UTC")),
            VISITOR_ID: pa.array(bots[VISITOR_ID].to_numpy(), pa.int64()),
            ITEM_ID: pa.array(bots[ITEM_ID].to_numpy(), pa.int64()),
            EVENT_TYPE: pa.array(bots[EVENT_TYPE].astype(str).to_numpy(), pa.string()),
            SESSION_ID: pa.nulls(n, pa.string()),
            PRICE: pa.nulls(n, pa.float64()),
            QUANTITY: pa.nulls(n, pa.int32()),
            TRANSACTION_ID: pa.nulls(n, pa.string()),
            SOURCE: pa.array([INJECTED] * n, pa.string()),
            INGEST_RUN: pa.array([INJECTED] * n, pa.string()),
        }
    )
    path = lake.partition("bronze", "events", run_date) / f"part-{INJECTED}.parquet"
    pq.write_table(table, path)
    return path


def run(data: Path, config: Path, run_date: date, workdir: Path, per_kind: int, seed: int) -> dict:
    from jobs import clean, ingest
    from jobs.infra.spark import get_spark

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cfg = load_config(_overlay(workdir, config, "http://127.0.0.1:9"), environ={})
    lake = Lake(cfg.paths.lake)
    _land(data, cfg.paths.landing / cfg.ingest.sources[0].name / f"dt={run_date}")
    spark = get_spark("bot-inject", cfg)
    try:
        ingest.run(cfg, run_date, spark)
        items = read_partition(lake, "bronze", "events", run_date)[ITEM_ID].unique()
        bots, kinds = make_bots(items, run_date, per_kind, seed)
        write_bots(lake, run_date, bots)
        report = clean.run(cfg, run_date, spark)
    finally:
        spark.stop()
    removed_rows = read_partition(lake, "silver", "removed_visitors", run_date)
    removed = dict(zip(removed_rows[VISITOR_ID].tolist(), removed_rows["rules"], strict=True))
    audit = audit_rules(read_seen_visitors(lake, run_date), removed, kinds, set())
    return {
        "data": str(data),
        "config": str(config),
        "run_date": run_date.isoformat(),
        "per_kind": per_kind,
        "seed": seed,
        "injected_events": len(bots),
        "events_per_day_cap": report["events_per_day_cap"],
        **audit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=5, help="bots of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = export_arguments(parser, "bot-inject", argv)
    result = run(args.data, args.config, args.date, args.workdir, args.per_kind, args.seed)
    print(format_tables(result))
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
