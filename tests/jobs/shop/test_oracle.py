import json

import numpy as np
import pandas as pd
import pytest

from jobs.shop.generate import GeneratorConfig, generate_shop, write_files
from jobs.shop.oracle import GroundTruthError, OracleRecommender, UnknownVisitorsError

START_MS = 1_430_611_200_000  # 2015-05-03 00:00 UTC
DAY_MS = 86_400_000

# Six items in two categories and two styles; popularity sums to 10, explore_share is 0.2, so
# the explore term of item i is 0.02 * p_i. Item 5 launches on day 10.
ITEMS = [  # itemid, categoryid, style, popularity
    (1, 100, 0, 3.0),
    (2, 100, 1, 2.0),
    (3, 100, 0, 1.0),
    (4, 200, 0, 1.0),
    (5, 200, 1, 2.0),
    (6, 200, 1, 1.0),
]
# Visitor 10: half of each style, all of category 100, so sum_j m[s_j] p_j = 0.5 * 4 + 0.5 * 2
# = 3 and item i of category 100 gets 0.02 p_i + 0.8 * 0.5 * p_i / 3.
# Visitor 20: styles 0.25 / 0.75, categories 100 and 200 at 0.5 each (category 100 split over
# two rows, as the generator can draw a category twice); both sums are 2.5, so an item of
# style 0 gets 0.02 p_i + 0.8 * 0.5 * 0.25 p_i / 2.5 = 0.06 p_i, one of style 1 0.14 p_i.
VISITORS = [(10, 0.5, 0.5), (20, 0.25, 0.75)]
INTERESTS = [(10, 100, 1.0), (20, 100, 0.25), (20, 200, 0.5), (20, 100, 0.25)]
SCORES = {
    10: {1: 0.46, 2: 0.04 + 0.8 / 3, 3: 0.02 + 0.4 / 3, 5: 0.04, 4: 0.02, 6: 0.02},
    20: {2: 0.28, 5: 0.28, 1: 0.18, 6: 0.14, 3: 0.06, 4: 0.06},
}


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(",".join(map(str, row)) for row in rows)]) + "\n")


@pytest.fixture()
def shop(tmp_path):
    """A generator-shaped --out folder holding the tiny ground truth above."""
    truth = tmp_path / "ground_truth"
    _write_csv(truth / "model_items.csv", "itemid,categoryid,style,popularity", ITEMS)
    _write_csv(truth / "model_visitors.csv", "visitorid,style_0,style_1", VISITORS)
    _write_csv(truth / "model_interests.csv", "visitorid,categoryid,weight", INTERESTS)
    (truth / "preference_model.json").write_text(json.dumps({"explore_share": 0.2}))
    properties = [
        (START_MS + (10 * DAY_MS if item == 5 else 0), item, "categoryid", category)
        for item, category, *_ in ITEMS
    ]
    properties += [(START_MS + 20 * DAY_MS, 1, "available", 0)]  # a later fact is no launch
    _write_csv(tmp_path / "item_properties.csv", "timestamp,itemid,property,value", properties)
    return tmp_path


def _lists(recs):
    """{visitor: [(item, score), ...] in rank order}."""
    by_visitor = recs.groupby("visitor_id")
    return {v: list(zip(g["item_id"], g["score"], strict=True)) for v, g in by_visitor}


def _expected(visitor, items, divide_by=1.0):
    return [(item, pytest.approx(SCORES[visitor][item] / divide_by)) for item in items]


def test_ranks_by_the_true_view_probability(shop):
    oracle = OracleRecommender.from_ground_truth(shop)
    recs = oracle.recommend(np.array([20, 10, 10]), 6)
    assert _lists(recs) == {
        10: _expected(10, [1, 2, 3, 5, 4, 6]),
        20: _expected(20, [2, 5, 1, 6, 3, 4]),  # equal scores: more popular, then lower id
    }
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5, 6] * 2
    assert set(recs["source"]) == {"oracle"}
    assert recs.groupby("visitor_id")["score"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_as_of_drops_items_launched_later_and_renormalises(shop):
    oracle = OracleRecommender.from_ground_truth(shop / "ground_truth", as_of="2015-05-05")
    recs = oracle.recommend(np.array([10, 20]), 3)
    # Item 5 is not launched: visitor 10 loses 0.04 of the law, visitor 20 0.28.
    assert _lists(recs) == {
        10: _expected(10, [1, 2, 3], divide_by=0.96),
        20: _expected(20, [2, 1, 6], divide_by=0.72),
    }
    later = OracleRecommender.from_ground_truth(shop, as_of=pd.Timestamp("2015-06-01", tz="UTC"))
    assert _lists(later.recommend(np.array([20]), 2)) == {20: _expected(20, [2, 5])}


def test_respects_exclusions_and_unavailable_items(shop):
    oracle = OracleRecommender.from_ground_truth(shop)
    exclude = pd.DataFrame({"visitor_id": [10, 20, 20, 30], "item_id": [1, 2, 2, 6]})
    recs = oracle.recommend(np.array([10, 20]), 3, exclude=exclude, unavailable=np.array([5]))
    assert _lists(recs) == {10: _expected(10, [2, 3, 4]), 20: _expected(20, [1, 6, 3])}
    # Fewer allowed items than n: the list is short rather than breaking the rules.
    short = oracle.recommend(np.array([10]), 6, exclude=exclude, unavailable=np.array([5]))
    assert short["item_id"].tolist() == [2, 3, 4, 6]


def test_unknown_visitors_get_the_fallback_and_all_unknown_fails(shop):
    oracle = OracleRecommender.from_ground_truth(shop)
    recs = oracle.recommend(np.array([10, 99]), 3)
    mixed = recs[recs["visitor_id"] == 99]
    assert mixed["item_id"].tolist() == [1, 2, 5]  # by popularity, ties by id
    assert set(mixed["source"]) == {"popular"}
    with pytest.raises(UnknownVisitorsError, match="none of the 2 requested visitors"):
        oracle.recommend(np.array([98, 99]), 3)
    with pytest.raises(ValueError, match="n must be positive"):
        oracle.recommend(np.array([10]), 0)


def test_bad_ground_truth_fails_with_a_named_error(shop, tmp_path):
    with pytest.raises(GroundTruthError, match="model_items.csv"):
        OracleRecommender.from_ground_truth(tmp_path / "nowhere")
    (shop / "item_properties.csv").unlink()
    with pytest.raises(GroundTruthError, match="item_properties.csv"):
        OracleRecommender.from_ground_truth(shop, as_of="2015-05-05")
    interests = pd.DataFrame({"visitor_id": [10], "category_id": [300], "weight": [1.0]})
    items = pd.DataFrame(ITEMS, columns=["item_id", "category_id", "style", "popularity"])
    visitors = pd.DataFrame(VISITORS[:1], columns=["visitor_id", "style_0", "style_1"])
    with pytest.raises(GroundTruthError, match="category with items"):
        OracleRecommender(items, visitors, interests, 0.2)


def test_oracle_of_a_generated_shop_matches_the_dense_formula(tmp_path):
    config = GeneratorConfig(scale=0.0001, seed=7)
    write_files(generate_shop(config), tmp_path)
    as_of = pd.Timestamp("2015-08-01", tz="UTC")
    oracle = OracleRecommender.from_ground_truth(tmp_path, as_of=as_of)
    truth = tmp_path / "ground_truth"
    items = pd.read_csv(truth / "model_items.csv")
    mix = pd.read_csv(truth / "model_visitors.csv").set_index("visitorid")
    interests = pd.read_csv(truth / "model_interests.csv")
    explore = json.loads((truth / "preference_model.json").read_text())["explore_share"]
    visitors = mix.index.to_numpy()[:: max(1, len(mix) // 20)]

    recs = oracle.recommend(visitors, 10)
    assert recs.groupby("visitor_id").size().reindex(visitors).tolist() == [10] * len(visitors)
    assert set(recs["source"]) == {"oracle"}

    # The same law, dense, for those visitors.
    launch = pd.read_csv(tmp_path / "item_properties.csv").groupby("itemid")["timestamp"].min()
    launched = items["itemid"].map(launch).to_numpy() < as_of.value // 1_000_000
    p, style = items["popularity"].to_numpy(), items["style"].to_numpy()
    for visitor in visitors:
        m = mix.loc[visitor].to_numpy()[style]
        law = explore * p / p.sum()
        for category, weight in interests.loc[
            interests["visitorid"] == visitor, ["categoryid", "weight"]
        ].itertuples(index=False):
            mine = items["categoryid"].to_numpy() == category
            law += (1 - explore) * weight * mine * m * p / (m * p)[mine].sum()
        law = np.where(launched, law, 0.0) / law[launched].sum()
        best = np.argsort(-law, kind="stable")[:10]
        got = recs[recs["visitor_id"] == visitor]
        assert got["item_id"].tolist() == items["itemid"].to_numpy()[best].tolist()
        assert got["score"].to_numpy() == pytest.approx(law[best], rel=1e-9)

    whole = oracle.recommend(visitors[:1], len(items))
    assert whole["score"].sum() == pytest.approx(1.0)
    assert len(whole) == launched.sum()
