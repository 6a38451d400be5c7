"""Generate a synthetic shop in RetailRocket's raw layout, deterministically from a seed.

The stand-in for the Kaggle RetailRocket dump, whose licence forbids shipping it: same files and
columns, same shape at --scale 1 (~2.8M events, ~1.4M visitors, ~235k items, 2015-05-03 to
2015-09-18), a known preference model behind the events and the usual dirt (seven kinds of
bots, test accounts, malformed and duplicated lines), all listed in ground_truth/ with
summary.json.

    python -m jobs.shop.generate --out data/raw --scale 0.01 --seed 42 [--start 2015-05-03 ...]

Same seed and scale give byte-identical files. Events and visitors grow linearly with the
scale, the catalog with its square root. Scale 1 takes about 15 s and 1.5 GB.

Preference model (ground_truth/preference_model.json has the formula): an item has a group
(its leaf category at launch), a style (one of N_STYLES, say a price tier) and a lognormal
popularity p_i; a visitor has weights over 1-3 groups, mostly under one root category, and a
style mix m_v. A fresh view is, with probability EXPLORE_SHARE, an item drawn by p_i; otherwise
a group drawn by the visitor's weights, then an item of it by m_v[style_i] * p_i. Some later
views re-open an item seen before; carts follow views, purchases follow carts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Array, Rng, Columns = np.ndarray, np.random.Generator, dict[str, np.ndarray]
Files = dict[str, tuple[str, list] | dict]  # path under --out: (CSV header, columns) or JSON

EVENT_TYPES = ("view", "addtocart", "transaction")
VIEW, CART, PURCHASE = 0, 1, 2
EVENT_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "transactionid")
MALFORMED_KINDS = ("bad_timestamp", "missing_visitorid", "unknown_event")
MALFORMED_KINDS += ("transaction_without_id", "wrong_field_count")
SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000  # in ms

# Calibrated so that scale 1 lands on RetailRocket's published totals.
VISITORS_AT_SCALE_1, CATALOG_AT_SCALE_1 = 1_407_580, 300_000  # ~235k items get an event
MIN_VISITORS, MIN_CATALOG = 200, 2_000  # floors so that tiny scales stay usable
TREE_LEVELS = (25, 174, 702, 665, 90, 13)  # categories per depth in RetailRocket's tree
ITEM_ID_SPREAD = 1.98  # RetailRocket: 235k items with ids up to 466k
N_STYLES, POPULARITY_SIGMA = 4, 1.5  # sigma 1.5: the top item gets ~0.1% of views
EXPLORE_SHARE = 0.10  # views from the home page and best-seller lists, blind to taste
LOCAL_INTEREST_SHARE = 0.7  # further interests stay under the first interest's root
RETURNING_SHARE = 0.10  # visitors with several sessions: who a recommender can learn from
REVISIT_SHARE = 0.2  # views re-opening an item the same visitor viewed before
CART_RATE, PURCHASE_RATE = 0.035, 0.32  # per view and per cart; stock-outs remove a few
LATE_LAUNCH_SHARE, STOCK_FLIPS_PER_ITEM, RECATEGORISED_SHARE = 0.25, 0.7, 0.01
BOTS_AT_SCALE_1, MIN_BOT_VIEWS = 84, 150
# Mean views of one bot at scale 1, by kind (_generate_bots says how each behaves). A bot's views
# grow with the square root of the scale, like the number of bots, so bot traffic stays ~2.5% of
# the events. At small scales the first kinds come first: 2 bots are a crawler and a sweeper.
BOT_VIEWS_AT_SCALE_1 = {
    "crawler": 1500,
    "sweeper": 1500,
    "scraper": 700,
    "stock_checker": 600,
    "cart_sweeper": 500,
    "scalper": 250,
    "monitor": 500,
}
BOT_KINDS = tuple(BOT_VIEWS_AT_SCALE_1)
N_TEST_ACCOUNTS, N_TEST_ITEMS, TEST_ORDERS_AT_SCALE_1 = 3, 4, 30
DUPLICATE_RATE, MALFORMED_RATE = 0.001, 0.0007  # per events.csv line
LINES_PER_WRITE = 1_000_000
MAX_SCALE = 10.0  # peak memory is ~1.5 GB per unit of scale: ~15 GB at the cap


class GeneratorConfigError(ValueError):
    """An argument of the generator is out of range (scale, seed or period)."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Scale in (0, MAX_SCALE], seed >= 0, period start..end in UTC days, end included."""

    scale: float
    seed: int
    start: date = date(2015, 5, 3)
    end: date = date(2015, 9, 18)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 0 < self.scale <= MAX_SCALE):
            raise GeneratorConfigError(f"scale must be in (0, {MAX_SCALE}], got {self.scale}")
        if self.seed < 0:
            raise GeneratorConfigError(f"seed must be >= 0, got {self.seed}")
        if self.end < self.start:
            raise GeneratorConfigError(f"end {self.end} is before start {self.start}")

    @property
    def start_ms(self) -> int:
        """Midnight UTC starting the period, in ms since the epoch."""
        return int(datetime(*self.start.timetuple()[:3], tzinfo=UTC).timestamp()) * SECOND

    @property
    def span_ms(self) -> int:
        """Period length in ms: events fall in [start_ms, start_ms + span_ms)."""
        return ((self.end - self.start).days + 1) * DAY

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(visitors, catalog items, bots): traffic grows with the scale, the catalog slower."""
        visitors = max(MIN_VISITORS, round(VISITORS_AT_SCALE_1 * self.scale))
        root = math.sqrt(self.scale)
        return (
            visitors,
            max(MIN_CATALOG, round(CATALOG_AT_SCALE_1 * root)),
            max(2, round(BOTS_AT_SCALE_1 * root)),
        )


@dataclass(frozen=True)
class Catalog:
    """Items sorted by group then style, so each (group, style) block is one run of items."""

    itemid: Array  # sparse ids in [0, ~2 * n)
    group: Array  # index into group_category
    style: Array  # in [0, N_STYLES)
    popularity: Array  # p_i > 0, relative
    launch_ms: Array  # first appearance, ms since the epoch
    group_category: Array  # leaf categoryid of each group
    group_root: Array  # root categoryid of each group; groups are sorted by it
    test_itemid: Array  # test SKUs, outside the preference model
    test_category: Array

    @property
    def block(self) -> Array:
        """Block of each item, group * N_STYLES + style, non-decreasing."""
        return self.group * N_STYLES + self.style

    @property
    def block_mass(self) -> Array:
        """(groups, N_STYLES) popularity summed per block."""
        n_blocks = self.group_category.size * N_STYLES
        return np.bincount(self.block, self.popularity, n_blocks).reshape(-1, N_STYLES)


@dataclass(frozen=True)
class Visitors:
    """Tastes; visitor v's interests are rows interest_ptr[v] .. interest_ptr[v + 1] - 1."""

    visitorid: Array  # sorted
    style_mix: Array  # (n, N_STYLES), rows sum to 1
    interest_ptr: Array
    interest_group: Array
    interest_weight: Array  # sums to 1 per visitor
    propensity: Array  # multiplier of CART_RATE, mean 1


def _rng(seed: int, stream: str) -> Rng:
    # One stream per component: changing one part's draws leaves the other files' bytes alone.
    key = (zlib.crc32(stream.encode()),)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _sample_segments(cum: Array, lo: Array, hi: Array, u: Array) -> Array:
    """Per row an index in [lo, hi) with P proportional to its mass; cum is the running mass."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    return np.clip(np.searchsorted(cum, base + u * (cum[hi - 1] - base), "right"), lo, hi - 1)


def _cumsum_by_segment(values: Array, counts: Array) -> Array:
    """Running sum restarting at each segment; counts are the segment lengths, all >= 1."""
    total, first = np.cumsum(values), np.cumsum(counts) - counts
    return total - np.repeat(total[first] - values[first], counts)


def _in_stock(flips: Array, item: Array, ts: Array, config: GeneratorConfig) -> Array:
    """True where the item (catalog index) is available at ts (ms, inside the period)."""
    key = item * config.span_ms + (ts - config.start_ms)
    flipped = np.searchsorted(flips, key, "right") - np.searchsorted(flips, item * config.span_ms)
    return flipped % 2 == 0


def _generate_category_tree(rng: Rng) -> tuple[Array, Array]:
    """(categoryid, parentid), roots first with parentid -1: 1,669 categories, 25 roots.

    Lognormal parent weights give a few parents dozens of children and many none (leaves).
    """
    n, bounds = sum(TREE_LEVELS), np.cumsum((0, *TREE_LEVELS))
    categoryid = rng.choice(n + n // 50, size=n, replace=False).astype(np.int64)
    parentid = np.full(n, -1, dtype=np.int64)
    for depth in range(1, len(TREE_LEVELS)):
        parents = categoryid[bounds[depth - 1] : bounds[depth]]
        weight = rng.lognormal(0.0, 1.0, parents.size)
        children = slice(bounds[depth], bounds[depth + 1])
        parentid[children] = rng.choice(parents, TREE_LEVELS[depth], p=weight / weight.sum())
    return categoryid, parentid


def _generate_catalog(
    config: GeneratorConfig, tree: tuple[Array, Array], test_itemid: Array, rng: Rng
) -> Catalog:
    """Spread the catalog and the test SKUs over the leaves of the tree."""
    categoryid, parentid = tree
    parent_of = np.full(categoryid.max() + 1, -1)
    parent_of[categoryid] = parentid
    root = categoryid.copy()
    for _ in TREE_LEVELS:
        root = np.where(parent_of[root] >= 0, parent_of[root], root)
    leaf = ~np.isin(categoryid, parentid)
    by_root = np.lexsort((categoryid[leaf], root[leaf]))
    n_groups, n = int(leaf.sum()), config.sizes[1]
    size = rng.lognormal(0.0, 1.2, n_groups)
    group = rng.choice(n_groups, n, p=size / size.sum())
    style = rng.integers(0, N_STYLES, n)
    popularity = rng.lognormal(0.0, POPULARITY_SIGMA, n)
    ids = rng.choice(round((n + N_TEST_ITEMS) * ITEM_ID_SPREAD), n + N_TEST_ITEMS, replace=False)
    ids = ids[~np.isin(ids, test_itemid)][:n]
    late = rng.random(n) < LATE_LAUNCH_SHARE
    launch = config.start_ms + late * (rng.random(n) * config.span_ms).astype(np.int64)
    order = np.lexsort((ids, style, group))
    return Catalog(
        itemid=ids[order].astype(np.int64),
        group=group[order],
        style=style[order],
        popularity=popularity[order],
        launch_ms=launch[order],
        group_category=categoryid[leaf][by_root],
        group_root=root[leaf][by_root],
        test_itemid=test_itemid,
        test_category=rng.choice(categoryid[leaf], N_TEST_ITEMS),
    )


def _generate_stock_flips(config: GeneratorConfig, catalog: Catalog, rng: Rng) -> Array:
    """Availability changes as sorted keys item index * span_ms + ms since start.

    Items launch in stock; flips 1, 3, ... take an item out, flips 2, 4, ... bring it back.
    They fall a minute or more after launch, inside the period.
    """
    n = catalog.itemid.size
    item = np.repeat(np.arange(n), rng.poisson(STOCK_FLIPS_PER_ITEM, n))
    earliest = catalog.launch_ms[item] - config.start_ms + MINUTE
    offset = earliest + (rng.random(item.size) * (config.span_ms - earliest)).astype(np.int64)
    keep = offset < config.span_ms
    return np.sort(item[keep] * config.span_ms + offset[keep])


def _generate_visitors(catalog: Catalog, visitorid: Array, rng: Rng) -> Visitors:
    """Give each visitor 1-3 group interests, mostly under one root category, and a style mix."""
    n, group_cum = visitorid.size, np.cumsum(catalog.block_mass.sum(axis=1))
    ptr = np.concatenate(([0], np.cumsum(1 + rng.binomial(2, 0.4, n))))
    owner = np.repeat(np.arange(n), np.diff(ptr))
    # The first interest follows group popularity, so big categories draw more visitors.
    first = _sample_segments(group_cum, np.zeros(n, int), np.full(n, group_cum.size), rng.random(n))
    root = catalog.group_root[first[owner]]
    local = rng.random(owner.size) < LOCAL_INTEREST_SHARE
    lo = np.where(local, np.searchsorted(catalog.group_root, root), 0)
    hi = np.where(local, np.searchsorted(catalog.group_root, root, "right"), group_cum.size)
    group = _sample_segments(group_cum, lo, hi, rng.random(owner.size))
    group[ptr[:-1]] = first
    weight, style_mix = rng.gamma(1.0, size=owner.size), rng.gamma(0.5, size=(n, N_STYLES))
    return Visitors(
        visitorid=visitorid,
        style_mix=style_mix / style_mix.sum(axis=1, keepdims=True),
        interest_ptr=ptr,
        interest_group=group,
        interest_weight=weight / np.add.reduceat(weight, ptr[:-1])[owner],
        propensity=rng.lognormal(-0.5, 1.0, n),
    )


def _sample_items(catalog: Catalog, visitors: Visitors, visitor: Array, rng: Rng) -> Array:
    """Catalog index of a fresh view per entry of visitor (a visitor index): P(item | visitor)."""
    item, cum = np.empty(visitor.size, np.int64), np.cumsum(catalog.popularity)
    explore = rng.random(visitor.size) < EXPLORE_SHARE
    k, v, ptr = int(explore.sum()), visitor[~explore], visitors.interest_ptr
    item[explore] = _sample_segments(cum, np.zeros(k, int), np.full(k, cum.size), rng.random(k))
    weight_cum = np.cumsum(visitors.interest_weight)
    row = _sample_segments(weight_cum, ptr[v], ptr[v + 1], rng.random(v.size))
    group = visitors.interest_group[row]
    style_cum = np.cumsum(catalog.block_mass[group] * visitors.style_mix[v], axis=1)
    style = (style_cum <= (rng.random(v.size) * style_cum[:, -1])[:, None]).sum(axis=1)
    block = group * N_STYLES + np.minimum(style, N_STYLES - 1)
    lo, hi = np.searchsorted(catalog.block, block), np.searchsorted(catalog.block, block, "right")
    item[~explore] = _sample_segments(cum, lo, hi, rng.random(v.size))
    return item


def _generate_views(
    config: GeneratorConfig, catalog: Catalog, visitors: Visitors, rng: Rng
) -> Columns:
    """Views of the modelled visitors (visitor, session, ts, item), sorted by visitor and time.

    Most visitors come once for one view; returning ones come back days later. A session is a
    burst of views tens of seconds apart. No view precedes its item's launch.
    """
    n, end_ms = visitors.visitorid.size, config.start_ms + config.span_ms
    returning = rng.random(n) < RETURNING_SHARE
    n_sessions = 1 + returning * np.minimum(rng.zipf(2.1, n), 100)
    owner = np.repeat(np.arange(n), n_sessions)
    gap = HOUR + rng.lognormal(math.log(5 * DAY), 1.0, owner.size).astype(np.int64)
    hour_weight = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 18) / 24)  # evening peak
    hour = rng.choice(24, n, p=hour_weight / hour_weight.sum())
    arrival = rng.integers(0, config.span_ms // DAY, n) * DAY + hour * HOUR
    gap[np.cumsum(n_sessions) - n_sessions] = arrival + rng.integers(0, HOUR, n)
    # Returning visitors also browse longer per session.
    multi = rng.random(owner.size) < np.where(returning[owner], 0.5, 0.15)
    n_views = 1 + multi * np.minimum(rng.geometric(0.4, owner.size), 200)
    session = np.repeat(np.arange(owner.size), n_views)
    step = rng.lognormal(math.log(40 * SECOND), 1.0, session.size).astype(np.int64)
    step[np.cumsum(n_views) - n_views] = 0
    ts = _cumsum_by_segment(gap, n_sessions)[session] + _cumsum_by_segment(step, n_views)
    ts += config.start_ms
    session, ts = session[ts < end_ms], ts[ts < end_ms]
    order = np.lexsort((ts, owner[session]))
    session, ts, visitor = session[order], ts[order], owner[session][order]
    # A revisit copies the item of one of the visitor's last few views.
    index = np.arange(ts.size)
    position = index - np.searchsorted(visitor, visitor)
    revisit = (position > 0) & (rng.random(ts.size) < REVISIT_SHARE)
    source = np.where(revisit, index - np.minimum(rng.geometric(0.5, ts.size), position), index)
    item, todo = np.full(ts.size, -1, np.int64), index[~revisit]
    for _ in range(10):  # redraw items not launched yet; the rare leftovers are dropped
        drawn = _sample_items(catalog, visitors, visitor[todo], rng)
        launched = catalog.launch_ms[drawn] <= ts[todo]
        item[todo[launched]] = drawn[launched]
        todo = todo[~launched]
    while not np.array_equal(source[source], source):  # follow revisit chains to a fresh view
        source = source[source]
    views = {"visitor": visitor, "session": session, "ts": ts, "item": item[source]}
    return {key: column[item[source] >= 0] for key, column in views.items()}


def _generate_funnel(
    config: GeneratorConfig, visitors: Visitors, views: Columns, flips: Array, rng: Rng
) -> tuple[Columns, Columns]:
    """(carts, purchases) as visitor, ts, item: a cart comes minutes after a view of the item,
    the purchases of a session share one checkout after their last cart. An item out of stock
    at cart or checkout time loses that cart or purchase."""
    end_ms = config.start_ms + config.span_ms
    chance = CART_RATE * visitors.propensity[views["visitor"]]
    idx = np.flatnonzero(rng.random(chance.size) < chance)
    cart_ts = views["ts"][idx] + rng.integers(15 * SECOND, 5 * MINUTE, idx.size)
    ok = cart_ts < end_ms
    ok[ok] = _in_stock(flips, views["item"][idx[ok]], cart_ts[ok], config)
    idx, cart_ts = idx[ok], cart_ts[ok]
    bought = rng.random(idx.size) < PURCHASE_RATE
    session, inverse = np.unique(views["session"][idx[bought]], return_inverse=True)
    checkout = np.zeros(session.size, np.int64)
    np.maximum.at(checkout, inverse, cart_ts[bought])
    ts = (checkout + rng.integers(MINUTE, 10 * MINUTE, session.size))[inverse]
    ok = ts < end_ms
    ok[ok] = _in_stock(flips, views["item"][idx[bought]][ok], ts[ok], config)
    carts = {"visitor": views["visitor"][idx], "ts": cart_ts, "item": views["item"][idx]}
    paid = idx[bought][ok]
    return carts, {"visitor": views["visitor"][paid], "ts": ts[ok], "item": views["item"][paid]}


def _event_columns(ts: Array, visitorid: Array, event: int | Array, itemid: Array) -> Columns:
    event = np.broadcast_to(event, ts.shape)
    return {"timestamp": ts, "visitorid": visitorid, "event": event, "itemid": itemid}


def _one_run(gaps: Array, rng: Rng) -> Array:
    """Offsets in ms from the first day's midnight of events `gaps` apart, from a random time."""
    return rng.integers(0, DAY) + np.cumsum(gaps) - gaps[0]


def _daily_batches(gaps: Array, per_day: int, rng: Rng) -> Array:
    """Offsets in ms from the first day's midnight: per_day events `gaps` apart once a day.

    A batch starts at the bot's hour (before 20:00, so that it ends the day it starts) plus up
    to 50 minutes, so no UTC day holds more than one batch.
    """
    index = np.arange(gaps.size)
    day, counts = index // per_day, np.bincount(index // per_day)
    within = _cumsum_by_segment(np.where(index % per_day == 0, 0, gaps), counts)
    hour = rng.integers(0, 20) * HOUR
    return day * DAY + hour + rng.integers(0, 50 * MINUTE, counts.size)[day] + within


def _fast_gaps(n: int, rng: Rng) -> Array:
    return rng.integers(SECOND, 10 * SECOND, n)


def _regular_gaps(n: int, rng: Rng) -> Array:
    return rng.integers(2 * SECOND, 6 * SECOND, n)


def _human_gaps(n: int, median_seconds: float, rng: Rng) -> Array:
    return rng.lognormal(math.log(median_seconds * SECOND), 0.5, n).astype(np.int64)


def _cart_delays(n: int, share: float, low_ms: int, high_ms: int, rng: Rng) -> Array:
    """Per view the delay of a cart after it, in ms, for a `share` of them; -1: no cart."""
    return np.where(rng.random(n) < share, rng.integers(low_ms, high_ms, n), -1)


# A bot's behaviour: n views -> (offset in ms from its first day's midnight, place on the shelf,
# cart delay in ms or -1) per view. The place is a share of the shelf in [0, 1) for bots that
# pick items, a step count for bots that walk the shelf (item ids in order).
def _crawler(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    return _one_run(_fast_gaps(n, rng), rng), rng.random(n), np.full(n, -1)


def _sweeper(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    return _one_run(_fast_gaps(n, rng), rng), np.arange(n), np.full(n, -1)


def _scraper(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    offset = _daily_batches(_regular_gaps(n, rng), int(rng.integers(60, 181)), rng)
    return offset, rng.random(n), np.full(n, -1)


def _stock_checker(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    offset = _daily_batches(_regular_gaps(n, rng), int(rng.integers(60, 141)), rng)
    return offset, rng.random(n), _cart_delays(n, 0.25, SECOND, 2 * SECOND, rng)


def _cart_sweeper(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    offset = _daily_batches(_human_gaps(n, 30, rng), int(rng.integers(80, 161)), rng)
    steps = np.cumsum(rng.integers(1, 4, n)) - 1
    return offset, steps, _cart_delays(n, 0.05, 5 * SECOND, 20 * SECOND, rng)


def _scalper(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    burst = int(rng.integers(35, 61))  # n >= MIN_BOT_VIEWS: browsing views outnumber the burst
    browse = _daily_batches(_human_gaps(n - burst, 30, rng), int(rng.integers(20, 41)), rng)
    day = rng.integers(0, browse[-1] // DAY + 1)
    after = browse[browse // DAY == day].max() + rng.integers(MINUTE, 5 * MINUTE)
    reloads = after + np.cumsum(rng.integers(300, 1_200, burst))
    targets = rng.random(rng.integers(1, 4))
    place = np.r_[rng.random(n - burst), targets[np.arange(burst) % targets.size]]
    carts = np.r_[np.full(n - burst, -1), _cart_delays(burst, 0.1, 100, 300, rng)]
    return np.r_[browse, reloads], place, carts


def _monitor(n: int, rng: Rng) -> tuple[Array, Array, Array]:
    watched = rng.random(rng.integers(20, 61))
    days = -(-n // watched.size)
    order = np.argsort(rng.random((days, watched.size)), axis=1).ravel()
    offset = _daily_batches(_human_gaps(order.size, 40, rng), watched.size, rng)
    return offset, watched[order], np.full(order.size, -1)


# kind -> (behaviour, walks the shelf in item-id order)
BOT_BEHAVIOURS = {
    "crawler": (_crawler, False),
    "sweeper": (_sweeper, True),
    "scraper": (_scraper, False),
    "stock_checker": (_stock_checker, False),
    "cart_sweeper": (_cart_sweeper, True),
    "scalper": (_scalper, False),
    "monitor": (_monitor, False),
}


def _generate_bots(
    config: GeneratorConfig, catalog: Catalog, flips: Array, botid: Array, rng: Rng
) -> tuple[Array, Columns]:
    """(kind per bot, their views and carts as event columns). No bot buys.

    Each kind shows some of the signs a cleaning stage looks for and hides others, so that each
    rule can be measured against this ground truth:

    - crawler: random items 1-10 s apart, thousands in one run (volume, no conversion);
    - sweeper: the same, walking the item ids upwards (also a catalog sweep);
    - scraper: a daily batch of 60-180 random views 2-6 s apart, under a daily volume cap;
    - stock_checker: a daily batch of views 2-6 s apart, a quarter carted 1-2 s later;
    - cart_sweeper: walks the item ids upwards (skipping some) at a human pace, 80-160 views a
      day, carts 1 view in 20;
    - scalper: human-paced browsing plus one burst of 35-60 reloads of 1-3 items 0.3-1.2 s
      apart, carting some;
    - monitor: the same 20-60 watched items once a day in a shuffled order at a human pace.

    A bot views only items launched before its first day, carts only items in stock, and starts
    late enough to finish inside the period when it can.
    """
    kind = np.array(BOT_KINDS)[rng.permutation(np.arange(botid.size) % len(BOT_KINDS))]
    by_id, end_ms = np.argsort(catalog.itemid), config.start_ms + config.span_ms
    n_days = config.span_ms // DAY
    parts = []
    for bot, name in zip(botid, kind, strict=True):
        mean = BOT_VIEWS_AT_SCALE_1[name] * math.sqrt(config.scale)
        n = max(MIN_BOT_VIEWS, round(rng.lognormal(math.log(mean), 0.3)))
        behaviour, walks = BOT_BEHAVIOURS[name]
        offset, place, cart_delay = behaviour(n, rng)
        days = int(offset.max() // DAY) + 1
        first_day = config.start_ms + int(rng.integers(0, max(n_days - days, 0) + 1)) * DAY
        shelf = by_id[catalog.launch_ms[by_id] <= first_day]
        if walks:
            item = shelf[(rng.integers(0, shelf.size) + place) % shelf.size]
        else:
            item = shelf[(place * shelf.size).astype(np.int64)]
        ts = first_day + offset
        view = np.flatnonzero(ts < end_ms)
        cart = view[cart_delay[view] >= 0]
        cart_ts = ts[cart] + cart_delay[cart]
        ok = cart_ts < end_ms
        ok[ok] = _in_stock(flips, item[cart[ok]], cart_ts[ok], config)
        for when, rows, event in ((ts[view], view, VIEW), (cart_ts[ok], cart[ok], CART)):
            ids = np.full(rows.size, bot)
            parts.append(_event_columns(when, ids, event, catalog.itemid[item[rows]]))
    return kind, {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _generate_test_orders(
    config: GeneratorConfig, catalog: Catalog, accountid: Array, rng: Rng
) -> Columns:
    """Test accounts ordering test SKUs a few times: view, cart 30 s later, purchase at 90 s."""
    n_orders = max(2, round(TEST_ORDERS_AT_SCALE_1 * math.sqrt(config.scale)))
    visitorid = np.repeat(accountid, n_orders)
    start = config.start_ms + rng.integers(0, config.span_ms - 2 * MINUTE, visitorid.size)
    ts = (start[:, None] + np.array([0, 30, 90]) * SECOND).ravel()
    itemid = np.repeat(rng.choice(catalog.test_itemid, visitorid.size), 3)
    event = np.tile([VIEW, CART, PURCHASE], visitorid.size)
    return _event_columns(ts, np.repeat(visitorid, 3), event, itemid)


def _assemble_events(parts: list[Columns], rng: Rng) -> Columns:
    """Concatenate event parts, number the checkouts, sort by time, drop exact repeats.

    A checkout is the purchase rows of one visitor at one ms; transactionids grow with time,
    with gaps; other rows get -1.
    """
    events = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    ts, visitorid = events["timestamp"], events["visitorid"]
    bought = np.flatnonzero(events["event"] == PURCHASE)
    bought = bought[np.lexsort((visitorid[bought], ts[bought]))]
    new = np.r_[True, (np.diff(ts[bought]) != 0) | (np.diff(visitorid[bought]) != 0)]
    checkout_ids = np.cumsum(rng.integers(1, 3, new.sum())) - 1
    events["transactionid"] = np.full(ts.size, -1, np.int64)
    events["transactionid"][bought] = checkout_ids[np.cumsum(new) - 1]
    keys = [events[c] for c in ("transactionid", "itemid", "event", "visitorid", "timestamp")]
    order = np.lexsort(keys)
    changed = np.diff(np.stack([key[order] for key in keys]), axis=1) != 0
    distinct = np.r_[True, changed.any(axis=0)]
    return {key: column[order][distinct] for key, column in events.items()}


def _plan_noise(n_rows: int, rng: Rng) -> tuple[Array, Array]:
    """(source row, kind) per events.csv line. Kind 0 is the row, 1 an exact duplicate of it,
    2 + k a malformed copy of kind MALFORMED_KINDS[k]; copies follow their row, so the clean
    rows stay whole and sorted."""
    n_duplicates = max(1, round(DUPLICATE_RATE * n_rows))
    n_malformed = max(len(MALFORMED_KINDS), round(MALFORMED_RATE * n_rows))
    picks = [rng.choice(n_rows, n_duplicates, replace=False), rng.choice(n_rows, n_malformed)]
    source = np.concatenate([np.arange(n_rows), *picks])
    kind = np.repeat([0, 1, 2], [n_rows, n_duplicates, n_malformed])
    kind[kind == 2] += rng.permutation(np.arange(n_malformed) % len(MALFORMED_KINDS))
    order = np.lexsort((kind, source))
    return source[order], kind[order]


def _malformed_line(fields: list[str], kind: str) -> str:
    ts, visitorid, event, itemid, tid = fields
    if kind == "bad_timestamp":
        ts = datetime.fromtimestamp(int(ts) / SECOND, UTC).strftime("%Y-%m-%d %H:%M:%S")
    visitorid = "" if kind == "missing_visitorid" else visitorid
    event = {"unknown_event": "click", "transaction_without_id": "transaction"}.get(kind, event)
    tid = "" if kind in ("unknown_event", "transaction_without_id") else tid
    return ",".join([ts, visitorid, event, itemid, tid][: 4 if kind == "wrong_field_count" else 5])


def _text(values: Array) -> pa.Array:
    """CSV text of a column: numbers in shortest form with negative ids blank, strings as is."""
    if values.dtype.kind in "iuf":
        return pa.array(values, mask=values < 0).cast(pa.string()).fill_null("")
    return pa.array(values.astype(str))


def _format_event_lines(events: Columns, source: Array, kind: Array) -> pa.Array:
    """Data lines of events.csv following _plan_noise's (source, kind)."""
    names = np.array(EVENT_TYPES)[events["event"]]
    columns = [_text(events[key]) for key in ("timestamp", "visitorid")] + [_text(names)]
    columns += [_text(events[key]) for key in ("itemid", "transactionid")]
    bad = np.flatnonzero(kind >= 2)  # a few thousand lines at most: plain Python is fine
    fields = zip(*[column.take(source[bad]).to_pylist() for column in columns], strict=True)
    kinds = [MALFORMED_KINDS[k - 2] for k in kind[bad]]
    broken = [_malformed_line(list(f), k) for f, k in zip(fields, kinds, strict=True)]
    lines = pc.binary_join_element_wise(*columns, ",").take(source)
    return pc.replace_with_mask(lines, pa.array(kind >= 2), pa.array(broken, pa.string()))


def _build_item_properties(
    config: GeneratorConfig, catalog: Catalog, flips: Array, rng: Rng
) -> Columns:
    """Rows of item_properties.csv sorted by time: launches, stock flips, a few new categories.

    property is 0 for categoryid, 1 for available. The preference model keeps an item's
    launch category: a recategorisation is a new label on the same item.
    """
    end_ms, flip_item = config.start_ms + config.span_ms, flips // config.span_ms
    moved = np.flatnonzero(rng.random(catalog.itemid.size) < RECATEGORISED_SHARE)
    root = catalog.group_root[catalog.group[moved]]
    lo, hi = (
        np.searchsorted(catalog.group_root, root),
        np.searchsorted(catalog.group_root, root, "right"),
    )
    new_group = lo + (rng.random(moved.size) * (hi - lo)).astype(np.int64)
    earliest = catalog.launch_ms[moved] + MINUTE
    moved_ts = earliest + (rng.random(moved.size) * (end_ms - earliest)).astype(np.int64)
    ok = (new_group != catalog.group[moved]) & (moved_ts < end_ms)
    n, n_flips, n_moved = catalog.itemid.size + N_TEST_ITEMS, flips.size, int(ok.sum())
    launch = np.r_[catalog.launch_ms, np.full(N_TEST_ITEMS, config.start_ms)]
    itemid = np.r_[catalog.itemid, catalog.test_itemid]
    category = np.r_[catalog.group_category[catalog.group], catalog.test_category]
    flip_value = (np.arange(n_flips) - np.searchsorted(flip_item, flip_item)) % 2
    rows = {  # launch category, launch stock, stock flips, recategorisations
        "timestamp": [launch, launch, config.start_ms + flips % config.span_ms, moved_ts[ok]],
        "itemid": [itemid, itemid, catalog.itemid[flip_item], catalog.itemid[moved[ok]]],
        "property": [np.zeros(n), np.ones(n), np.ones(n_flips), np.zeros(n_moved)],
        "value": [category, np.ones(n), flip_value, catalog.group_category[new_group[ok]]],
    }
    rows = {key: np.concatenate(parts).astype(np.int64) for key, parts in rows.items()}
    order = np.lexsort((rows["property"], rows["itemid"], rows["timestamp"]))
    return {key: column[order] for key, column in rows.items()}


def _describe_preference_model(catalog: Catalog, visitors: Visitors) -> Files:
    """Ground-truth tastes as CSVs, and the JSON saying how they give P(item | visitor)."""
    by_id = np.argsort(catalog.itemid)
    owner = np.repeat(visitors.visitorid, np.diff(visitors.interest_ptr))
    style_names = ",".join(f"style_{s}" for s in range(N_STYLES))
    spec = {
        "p_item_given_visitor": "explore_share * p_i / sum_j p_j + (1 - explore_share) * sum "
        "over rows (c, w) of the visitor in model_interests.csv of w * [categoryid_i == c] * "
        "m_v[style_i] * p_i / sum_{j: categoryid_j == c} m_v[style_j] * p_j",
        "explore_share": EXPLORE_SHARE,
        "revisit_share": REVISIT_SHARE,
        "model_items.csv": "p_i is popularity; categoryid is the leaf category at launch",
        "model_visitors.csv": "m_v[s] is style_s; the styles of a visitor sum to 1",
        "notes": "P is the law of a fresh view; a share revisit_share of later views re-open "
        "an item the visitor viewed before. Items are only drawn once launched: at a cutoff, "
        "drop items launched after it. Bots and test accounts are not in the model.",
    }
    category = catalog.group_category[catalog.group]
    items = [
        column[by_id] for column in (catalog.itemid, category, catalog.style, catalog.popularity)
    ]
    interests = [owner, catalog.group_category[visitors.interest_group], visitors.interest_weight]
    return {
        "ground_truth/model_items.csv": ("itemid,categoryid,style,popularity", items),
        "ground_truth/model_visitors.csv": (
            f"visitorid,{style_names}",
            [visitors.visitorid, *visitors.style_mix.T],
        ),
        "ground_truth/model_interests.csv": ("visitorid,categoryid,weight", interests),
        "ground_truth/preference_model.json": spec,
    }


def _summarise(config: GeneratorConfig, events: Columns, line_kind: Array, bots: Array) -> dict:
    """Totals of events.csv; `events` counts its distinct well-formed rows by type."""
    counts = np.bincount(events["event"], minlength=len(EVENT_TYPES)).tolist()
    malformed = np.bincount(line_kind[line_kind >= 2] - 2, minlength=len(MALFORMED_KINDS))
    tid = events["transactionid"]
    return {
        "seed": config.seed,
        "scale": config.scale,
        "start": str(config.start),
        "end": str(config.end),
        "events": dict(zip(EVENT_TYPES, counts, strict=True)) | {"total": sum(counts)},
        "lines": line_kind.size,
        "duplicate_lines": int((line_kind == 1).sum()),
        "malformed_lines": dict(zip(MALFORMED_KINDS, malformed.tolist(), strict=True))
        | {"total": int(malformed.sum())},
        "visitors": np.unique(events["visitorid"]).size,
        "items": np.unique(events["itemid"]).size,
        "transactions": np.unique(tid[tid >= 0]).size,
        "bots": bots.size,
        "bot_events": int(np.isin(events["visitorid"], bots).sum()),
    }


def generate_shop(config: GeneratorConfig) -> Files:
    """Every output file, keyed by its path under --out; a pure function of config."""
    n_visitors, _, n_bots = config.sizes
    # Test ids hang on the seed alone, so that a config can list them for every scale.
    test_ids = _rng(config.seed, "test_ids")
    accountid = np.sort(test_ids.choice(MIN_VISITORS, N_TEST_ACCOUNTS, replace=False))
    test_itemid = np.sort(test_ids.choice(MIN_CATALOG, N_TEST_ITEMS, replace=False))
    tree = _generate_category_tree(_rng(config.seed, "tree"))
    catalog = _generate_catalog(config, tree, test_itemid, _rng(config.seed, "catalog"))
    flips = _generate_stock_flips(config, catalog, _rng(config.seed, "stock"))
    n_people = n_visitors + n_bots + N_TEST_ACCOUNTS
    people = _rng(config.seed, "ids").choice(round(n_people * 1.02), n_people, replace=False)
    people = people[~np.isin(people, accountid)][: n_visitors + n_bots]
    visitorid, botid = (np.sort(ids) for ids in np.split(people, [n_visitors]))
    visitors = _generate_visitors(catalog, visitorid, _rng(config.seed, "tastes"))
    views = _generate_views(config, catalog, visitors, _rng(config.seed, "views"))
    carts, purchases = _generate_funnel(config, visitors, views, flips, _rng(config.seed, "funnel"))
    bot_kind, bot_events = _generate_bots(config, catalog, flips, botid, _rng(config.seed, "bots"))
    parts = [
        _event_columns(p["ts"], visitorid[p["visitor"]], event, catalog.itemid[p["item"]])
        for p, event in ((views, VIEW), (carts, CART), (purchases, PURCHASE))
    ]
    parts += [
        bot_events,
        _generate_test_orders(config, catalog, accountid, _rng(config.seed, "tests")),
    ]
    events = _assemble_events(parts, _rng(config.seed, "transactions"))
    source, kind = _plan_noise(events["timestamp"].size, _rng(config.seed, "noise"))
    props = _build_item_properties(config, catalog, flips, _rng(config.seed, "properties"))
    line, bad = np.arange(kind.size) + 2, kind >= 2  # line numbers: the header is line 1
    tid = events["transactionid"]
    summary = _summarise(config, events, kind, botid) | {
        "test_accounts": N_TEST_ACCOUNTS,
        "test_items": N_TEST_ITEMS,
        "test_transactions": int((np.isin(events["visitorid"], accountid) & (tid >= 0)).sum()),
        "catalog_items": catalog.itemid.size + N_TEST_ITEMS,
        "items_launched_after_start": int((catalog.launch_ms > config.start_ms).sum()),
        "categories": tree[0].size,
        "item_property_rows": props["itemid"].size,
    }
    property_name = np.array(["categoryid", "available"])[props["property"]]
    return {
        "events.csv": (",".join(EVENT_COLUMNS), [_format_event_lines(events, source, kind)]),
        "item_properties.csv": (
            "timestamp,itemid,property,value",
            [props["timestamp"], props["itemid"], property_name, props["value"]],
        ),
        "category_tree.csv": ("categoryid,parentid", list(tree)),
        "ground_truth/bots.csv": ("visitorid,kind", [botid, bot_kind]),
        "ground_truth/test_accounts.csv": ("visitorid", [accountid]),
        "ground_truth/test_items.csv": ("itemid", [catalog.test_itemid]),
        "ground_truth/malformed.csv": (
            "line,kind",
            [line[bad], np.array(MALFORMED_KINDS)[kind[bad] - 2]],
        ),
        "ground_truth/duplicates.csv": (
            "line,original_line",
            [line[kind == 1], line[kind == 1] - 1],
        ),
        **_describe_preference_model(catalog, visitors),
        "ground_truth/summary.json": summary,
    }


def write_files(files: Files, out: Path) -> None:
    """Write generate_shop's files under out, replacing files of the same name."""
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_text(json.dumps(content, indent=2, default=int) + "\n")
            continue
        header, columns = content
        text = [c if isinstance(c, pa.Array | pa.ChunkedArray) else _text(c) for c in columns]
        lines = pc.binary_join_element_wise(*text, ",") if len(text) > 1 else text[0]
        # Joining in Arrow and writing a buffer per block of lines is far faster than csv or
        # pandas writers; blocks keep each joined string under Arrow's 2 GB (scale 10 is ~3 GB).
        with path.open("wb") as handle:
            handle.write(header.encode() + b"\n")
            for start in range(0, len(lines), LINES_PER_WRITE):
                block = lines.slice(start, LINES_PER_WRITE)
                if isinstance(block, pa.ChunkedArray):
                    block = block.combine_chunks()
                whole = pa.ListArray.from_arrays(pa.array([0, len(block)], pa.int32()), block)
                handle.write(pc.binary_join(whole, "\n")[0].as_buffer())
                handle.write(b"\n")


def main(argv: list[str] | None = None) -> int:
    """Generate the shop the command line describes; print its totals as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the raw files")
    parser.add_argument("--scale", type=float, default=0.01, help="1 is RetailRocket's size")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2015, 5, 3))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2015, 9, 18))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    files = generate_shop(GeneratorConfig(args.scale, args.seed, args.start, args.end))
    write_files(files, args.out)
    wall = {"wall_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(files["ground_truth/summary.json"] | wall, default=int))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
