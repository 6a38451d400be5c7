from datetime import date

import numpy as np
import pandas as pd
import pytest

from jobs.infra.config import RerankConfig, RerankWeights
from jobs.recommenders.rerank import Reranker, RerankInputError, seeded_uniform

AS_OF = pd.Timestamp("2015-09-19", tz="UTC")
DAY = date(2015, 9, 18)
# Items 1-3 in category 10, items 4-5 in category 20, item 6 in category 30 (launched the day
# before AS_OF; the rest 300 days before). Price 0 to 50.
CATALOG = pd.DataFrame(
    {
        "item_id": [1, 2, 3, 4, 5, 6],
        "category_id": [10, 10, 10, 20, 20, 30],
        "price": [50.0, 40.0, 30.0, 20.0, 10.0, 0.0],
        "first_seen_ts": pd.to_datetime(["2014-11-23"] * 5 + ["2015-09-18"], utc=True),
    }
)


def _lists(rows):
    frame = pd.DataFrame(rows, columns=["visitor_id", "item_id", "source"])
    frame["rank"] = frame.groupby("visitor_id").cumcount() + 1
    frame["score"] = 1.0 / frame["rank"]
    return frame[["visitor_id", "rank", "item_id", "score", "source"]]


# Visitor 7's model order: the whole of category 10 first.
MODEL_LISTS = _lists([(7, i, "als") for i in (1, 2, 3, 4, 5, 6)])


def _items(reranked, visitor=7):
    return reranked.loc[reranked["visitor_id"] == visitor, "item_id"].tolist()


def _rerank(lists=MODEL_LISTS, n=4, **weights):
    return Reranker.from_catalog(RerankWeights(**weights), CATALOG, AS_OF, DAY, 6).apply(lists, n)


def test_default_weights_keep_the_model_order_and_cut_to_n():
    got = _rerank()
    assert _items(got) == [1, 2, 3, 4]
    assert got["rank"].tolist() == [1, 2, 3, 4]
    assert got["score"].tolist() == [1.0, 0.5, 1 / 3, 0.25]


def test_diversity_moves_a_new_category_ahead_of_a_repeat():
    # Relevance by model rank: 1, .833, .667, .5, .333, .167. With 0.3 off a listed category:
    # second, 2 (.533) still beats 4 (.5); third, 4 (.5) beats 3 (.367); fourth, 3 (.367)
    # beats 6 (.167): the penalty is for a category being listed at all, not per repeat.
    assert _items(_rerank(diversity=0.3)) == [1, 2, 4, 3]


def test_a_large_diversity_weight_takes_one_item_per_category_first():
    # Once every category is listed, the penalty is the same for all: the model order resumes.
    assert _items(_rerank(diversity=1.0, n=6)) == [1, 4, 6, 2, 3, 5]


def test_category_cap_holds_and_can_leave_a_list_short():
    assert _items(_rerank(max_per_category=1, n=4)) == [1, 4, 6]


def test_freshness_lifts_a_new_item():
    # Item 6 is one day old: 0.5 ** (1 / 30) x 1.0 ~ 0.977 on top of its relevance 1/6.
    assert _items(_rerank(freshness=1.0, n=3)) == [6, 1, 2]


def test_a_negative_price_boost_prefers_cheaper_items():
    # Scaled price: item 1 is 1.0, item 6 is 0.0. A weight of -1 outweighs the model's order.
    assert _items(_rerank(boosts={"price": -1.0})) == [6, 5, 4, 3]


def test_cold_start_shuffle_differs_by_visitor_and_day_but_not_on_a_rerun():
    cold = _lists([(v, i, "popular") for v in (8, 9) for i in (1, 2, 3, 4, 5, 6)])
    weights = RerankWeights(cold_start_shuffle=5.0)
    monday = Reranker.from_catalog(weights, CATALOG, AS_OF, DAY, 6)
    tuesday = Reranker.from_catalog(weights, CATALOG, AS_OF, date(2015, 9, 19), 6)
    first, again = monday.apply(cold, 6), monday.apply(cold, 6)
    pd.testing.assert_frame_equal(first, again)
    assert _items(first, 8) != _items(first, 9)
    assert _items(first, 8) != _items(tuesday.apply(cold, 6), 8)
    assert sorted(_items(first, 8)) == [1, 2, 3, 4, 5, 6]


def test_cold_start_shuffle_leaves_lists_the_model_ranked_alone():
    mixed = _lists([(7, 1, "als"), (7, 2, "als"), (7, 3, "popular"), (7, 4, "popular")])
    assert _items(_rerank(mixed, cold_start_shuffle=5.0)) == [1, 2, 3, 4]


def test_items_missing_from_the_catalog_have_no_category_and_no_bonus():
    lists = _lists([(7, 99, "als"), (7, 98, "als"), (7, 6, "als")])
    assert _items(_rerank(lists, diversity=1.0, n=3)) == [99, 98, 6]
    # Item 6 is new (freshness ~0.98) and the cheapest (scaled price 0, so +0.5 below): it
    # overtakes the two unknown items, which get neither bonus.
    assert _items(_rerank(lists, freshness=1.0, boosts={"price": -0.5}, n=3)) == [6, 99, 98]


def test_an_item_without_a_value_gets_the_median_boost():
    # Prices 50..0 scale to 1, .8, .6, .4, .2, 0; item 3 unknown gets the median of the rest.
    catalog = CATALOG.assign(price=[50.0, 40.0, np.nan, 20.0, 10.0, 0.0])
    reranker = Reranker.from_catalog(RerankWeights(boosts={"price": 1.0}), catalog, AS_OF, DAY, 6)
    assert reranker.bonus.tolist() == pytest.approx([1.0, 0.8, 0.4, 0.4, 0.2, 0.0])


@pytest.mark.parametrize("prices", [[np.nan] * 6, [5.0] * 6])
def test_a_boost_on_a_column_without_spread_is_a_config_error(prices):
    catalog = CATALOG.assign(price=prices)
    with pytest.raises(RerankInputError, match="would change nothing"):
        Reranker.from_catalog(RerankWeights(boosts={"price": 1.0}), catalog, AS_OF, DAY, 6)


def test_seeded_uniform_is_in_the_unit_interval_and_spread():
    u = seeded_uniform(np.arange(10_000), np.full(10_000, 5), date(2015, 9, 18))
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.02
    assert len(np.unique(u)) == 10_000


def test_a_boost_column_missing_from_the_catalog_is_named():
    with pytest.raises(RerankInputError, match="margin"):
        Reranker.from_catalog(RerankWeights(boosts={"margin": 1.0}), CATALOG, AS_OF, DAY, 6)


def test_a_text_boost_column_is_refused():
    catalog = CATALOG.assign(brand="x")
    with pytest.raises(RerankInputError, match="not numeric"):
        Reranker.from_catalog(RerankWeights(boosts={"brand": 1.0}), catalog, AS_OF, DAY, 6)


def test_compare_variants_override_the_configured_weights():
    config = RerankConfig(diversity=0.1, compare={"capped": {"max_per_category": 2}})
    variants = config.variants()
    assert list(variants) == ["configured", "capped"]
    assert variants["capped"].diversity == 0.1
    assert variants["capped"].max_per_category == 2


@pytest.mark.parametrize(
    "compare", [{"bad": {"diversty": 1.0}}, {"bad": {"diversity": -1}}, {"configured": {}}]
)
def test_a_bad_compare_entry_fails_at_load(compare):
    with pytest.raises(ValueError):
        RerankConfig(compare=compare)


def test_reranked_lists_are_n_distinct_candidates_within_the_cap():
    rng = np.random.default_rng(0)
    catalog = pd.DataFrame(
        {
            "item_id": np.arange(200),
            "category_id": rng.integers(0, 8, 200),
            "price": rng.random(200),
            "first_seen_ts": pd.Timestamp("2015-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 260, 200), unit="D"),
        }
    )
    lists = pd.DataFrame(
        [
            (v, i, "als" if v % 2 else "popular")
            for v in range(50)
            for i in rng.choice(200, 40, False)
        ],
        columns=["visitor_id", "item_id", "source"],
    )
    lists["rank"] = lists.groupby("visitor_id").cumcount() + 1
    lists["score"] = 1.0
    weights = RerankWeights(
        diversity=0.2,
        max_per_category=3,
        freshness=0.5,
        boosts={"price": 0.3},
        cold_start_shuffle=1,
    )
    got = Reranker.from_catalog(weights, catalog, AS_OF, DAY, 40).apply(lists, 10)
    merged = got.merge(lists, on=["visitor_id", "item_id"], suffixes=("", "_model"))
    assert len(merged) == len(got) == 50 * 10  # 8 categories x 3 always fill 10
    assert not got.duplicated(["visitor_id", "item_id"]).any()
    assert got.groupby("visitor_id")["rank"].apply(list).tolist() == [list(range(1, 11))] * 50
    per_category = got.merge(catalog, on="item_id").groupby(["visitor_id", "category_id"]).size()
    assert per_category.max() <= 3
