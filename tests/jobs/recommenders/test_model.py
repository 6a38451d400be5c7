import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jobs.infra.config import TrainConfig
from jobs.recommenders import base
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.base import Fallback, build_fallback, empty_lists, fill_lists, sort_lists
from jobs.recommenders.interactions import (
    UnknownEventTypeError,
    build_interactions,
    rank_by_popularity,
    to_matrix,
)
from jobs.recommenders.popularity import PopularityRecommender
from jobs.train import EmptyTrainingSetError, fit_als

WEIGHTS = {"view": 1.0, "cart": 4.0, "purchase": 8.0}


def _events(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "item_id", "event_type"])


def test_build_interactions_sums_weights_per_visitor_and_item():
    events = _events(
        [
            (2, 10, "view"),
            (1, 10, "view"),
            (1, 10, "cart"),
            (1, 10, "purchase"),
            (1, 11, "view"),
            (2, 10, "view"),
        ]
    )
    got = build_interactions(events, WEIGHTS)
    assert got.to_dict("records") == [
        {"visitor_id": 1, "item_id": 10, "interaction_weight": 13.0},
        {"visitor_id": 1, "item_id": 11, "interaction_weight": 1.0},
        {"visitor_id": 2, "item_id": 10, "interaction_weight": 2.0},
    ]


def test_zero_weight_events_are_dropped_and_unknown_types_fail():
    events = _events([(1, 10, "view"), (1, 11, "cart")])
    assert build_interactions(events, {"view": 0.0, "cart": 1.0})["item_id"].tolist() == [11]
    with pytest.raises(UnknownEventTypeError, match="click"):
        build_interactions(_events([(1, 10, "click")]), WEIGHTS)


def test_to_matrix_maps_sorted_ids():
    inter = build_interactions(_events([(7, 30, "view"), (5, 20, "cart")]), WEIGHTS)
    data = to_matrix(inter)
    assert data.visitor_ids.tolist() == [5, 7]
    assert data.item_ids.tolist() == [20, 30]
    assert data.matrix.toarray().tolist() == [[4.0, 0.0], [0.0, 1.0]]


def test_popularity_ranks_by_weight_then_id_and_respects_exclusions():
    inter = build_interactions(
        _events([(1, 3, "view"), (2, 3, "view"), (1, 1, "cart"), (3, 2, "view"), (4, 2, "view")]),
        WEIGHTS,
    )
    popular = rank_by_popularity(inter)
    assert popular.tolist() == [1, 2, 3]  # 4.0, 2.0 (id 2 < 3), 2.0
    recs = PopularityRecommender(popular).recommend(
        np.array([1, 9]),
        2,
        exclude=pd.DataFrame({"visitor_id": [1], "item_id": [1]}),
        unavailable=np.array([2]),
    )
    assert recs[["visitor_id", "rank", "item_id"]].values.tolist() == [
        [1, 1, 3],
        [9, 1, 1],
        [9, 2, 3],
    ]


@pytest.fixture(scope="module")
def als():
    rng = np.random.default_rng(0)
    # Two taste groups: visitors 0-19 like items 0-9, visitors 20-39 like items 10-19.
    rows = [
        (v, int(rng.integers(0, 10)) + (10 if v >= 20 else 0), "view")
        for v in range(40)
        for _ in range(6)
    ]
    inter = build_interactions(_events(rows), WEIGHTS)
    data = to_matrix(inter)
    params = TrainConfig(
        factors=4,
        iterations=10,
        num_threads=1,
        random_state=1,
        event_weights=WEIGHTS,
        alpha=5.0,
        regularization=0.01,
    )
    return AlsRecommender(
        fit_als(data, params), data.visitor_ids, data.item_ids, rank_by_popularity(inter)
    ), inter


def test_als_lists_are_full_unique_and_filtered(als):
    model, inter = als
    bought = inter.groupby("visitor_id").head(1)[["visitor_id", "item_id"]]
    unavailable = np.array([3, 15])
    visitors = np.array([0, 5, 25, 1000])  # 1000 is unknown to the model: cold
    recs = model.recommend(visitors, 12, exclude=bought, unavailable=unavailable)
    assert recs.groupby("visitor_id").size().to_dict() == {0: 12, 5: 12, 25: 12, 1000: 12}
    assert not recs.duplicated(["visitor_id", "item_id"]).any()
    assert not recs["item_id"].isin(unavailable).any()
    pairs = set(map(tuple, bought.values))
    assert not any((v, i) in pairs for v, i in recs[["visitor_id", "item_id"]].values)
    assert all(r == list(range(1, 13)) for r in recs.groupby("visitor_id")["rank"].apply(list))
    assert set(recs.loc[recs["visitor_id"] == 1000, "source"]) == {"popular"}
    # 20 items minus 2 unavailable minus 1 bought leaves 17 for ALS: the top 12 are all ALS.
    assert set(recs.loc[recs["visitor_id"] == 0, "source"]) == {"als"}


def test_lists_match_implicit_filtering_every_visitor(als):
    # Only visitors with something to exclude take implicit's filtered path; the lists and
    # scores are the same as filtering everyone.
    model, _ = als
    visitors = np.array([0, 5, 25, 30])
    bought = pd.DataFrame({"visitor_id": [0, 25], "item_id": [1, 12]})
    recs = model.recommend(visitors, 6, exclude=bought)
    liked = sp.csr_matrix(
        ([1.0, 1.0], ([0, 2], np.searchsorted(model.item_ids, [1, 12]))),
        shape=(len(visitors), len(model.item_ids)),
    )
    rows = np.searchsorted(model.visitor_ids, visitors)
    ids, scores = model.model.recommend(rows, liked, N=6, filter_already_liked_items=True)
    assert set(recs["source"]) == {"als"}
    lists = recs.groupby("visitor_id")["item_id"].apply(list)
    assert lists.tolist() == model.item_ids[ids].tolist()
    np.testing.assert_allclose(recs["score"].to_numpy().reshape(4, 6), scores, rtol=1e-6)


def test_als_learns_the_taste_groups(als):
    model, _ = als
    recs = model.recommend(np.array([0, 25]), 5)
    assert recs.loc[recs["visitor_id"] == 0, "item_id"].lt(10).all()
    assert recs.loc[recs["visitor_id"] == 25, "item_id"].ge(10).all()


def test_als_save_load_round_trip(als, tmp_path):
    model, _ = als
    model.save(tmp_path / "m")
    again = AlsRecommender.load(tmp_path / "m")
    pd.testing.assert_frame_equal(
        model.recommend(np.array([0, 25]), 5), again.recommend(np.array([0, 25]), 5)
    )


def test_bad_inputs_are_named(als):
    model, _ = als
    with pytest.raises(ValueError, match="n must be positive"):
        model.recommend(np.array([0]), 0)
    empty = to_matrix(build_interactions(_events([(1, 1, "view")]), {"view": 0.0}))
    with pytest.raises(EmptyTrainingSetError):
        fit_als(empty, TrainConfig(event_weights=WEIGHTS))


def test_build_fallback_decays_popularity_and_ranks_visitor_categories():
    ts = pd.to_datetime(
        ["2015-09-18", "2015-09-18", "2015-08-01", "2015-08-01", "2015-08-01", "2015-09-10"],
        utc=True,
    )
    events = _events(
        [
            (1, 10, "view"),
            (2, 10, "view"),
            (1, 20, "purchase"),
            (3, 20, "view"),
            (3, 30, "view"),
            (1, 30, "cart"),
        ]
    ).assign(event_ts=ts)
    catalog = pd.DataFrame({"item_id": [10, 20, 30], "category_id": [100, 200, 200]})
    fb = build_fallback(
        events,
        catalog,
        WEIGHTS,
        pd.Timestamp("2015-09-19", tz="UTC"),
        half_life_days=7,
        top_categories=1,
        depth=5,
    )
    # Item 10: two fresh views (~1.8); item 20: 9 weight 7 weeks old (~0.07); 30: 4 at 9 days.
    assert fb.popular.tolist() == [10, 30, 20]
    assert fb.category_items.values.tolist() == [[100, 10, 0], [200, 30, 0], [200, 20, 1]]
    # Visitor 1: category 200 (8 + 4) beats 100 (1). Visitor 3: tie in 200 only.
    assert fb.visitor_categories.values.tolist() == [[1, 200, 0], [2, 100, 0], [3, 200, 0]]
    with pytest.raises(ValueError, match="half_life_days"):
        build_fallback(events, catalog, WEIGHTS, pd.Timestamp("2015-09-19", tz="UTC"), 0, 1, 5)


def test_fallback_fills_from_the_visitors_categories_before_global_popularity():
    fb = Fallback(
        np.array([1, 2, 3, 4]),
        pd.DataFrame({"category_id": [7, 7], "item_id": [4, 3], "pos": [0, 1]}),
        pd.DataFrame({"visitor_id": [5], "category_id": [7], "cat_rank": [0]}),
    )
    bought = pd.DataFrame({"visitor_id": [5], "item_id": [3]})
    recs = fill_lists(empty_lists(), np.array([5, 6]), 3, fb, bought, None)
    assert recs[["visitor_id", "item_id", "source"]].values.tolist() == [
        [5, 4, "category_popular"],
        [5, 1, "popular"],
        [5, 2, "popular"],
        [6, 1, "popular"],
        [6, 2, "popular"],
        [6, 3, "popular"],
    ]


def test_a_visitors_fill_depth_follows_their_own_skips_not_the_batchs(monkeypatch):
    asked = {}
    for name in ("_fill_rows", "_fill_rows_by_position"):
        fill = getattr(base, name)

        def spy(fallback, visitor_ids, depth, *args, _fill=fill):
            asked.update({int(v): int(depth) for v in visitor_ids})
            return _fill(fallback, visitor_ids, depth, *args)

        monkeypatch.setattr(base, name, spy)
    popular = np.arange(100, 140)
    fb = Fallback(
        popular,
        pd.DataFrame({"category_id": 7, "item_id": popular[::-1][:25], "pos": np.arange(25)}),
        pd.DataFrame({"visitor_id": [1, 2], "category_id": [7, 7], "cat_rank": [0, 0]}),
    )
    # Visitor 1 bought 7 items (n + 7 = 10 > 2n: depth 4n), 2 bought one (2n), 3 nothing (n).
    bought = pd.DataFrame({"visitor_id": [1] * 7 + [2], "item_id": [*popular[::-1][:7], 139]})
    visitors = np.array([1, 2, 3])
    recs = fill_lists(empty_lists(), visitors, 3, fb, bought, None)
    assert asked == {1: 12, 2: 6, 3: 3}
    # Each list is what that visitor gets alone, and what any deeper candidates give.
    for v in visitors:
        alone = fill_lists(empty_lists(), np.array([v]), 3, fb, bought, None)
        assert recs[recs["visitor_id"] == v].values.tolist() == alone.values.tolist()
    assert recs.loc[recs["visitor_id"] == 1, "item_id"].tolist() == [132, 131, 130]
    assert recs.loc[recs["visitor_id"] == 2, "item_id"].tolist() == [138, 137, 136]
    assert recs.loc[recs["visitor_id"] == 3, "item_id"].tolist() == [100, 101, 102]


def test_fills_by_slot_position_equal_the_joined_candidates_on_random_fallbacks():
    # The fast path (one slot per item) against the general one it stands in for.
    for seed in range(12):
        rng = np.random.default_rng(seed)
        items = np.arange(100, 160)
        ranked = pd.DataFrame({"category_id": rng.integers(0, 6, 60), "item_id": items})
        ranked = ranked.sample(frac=1, random_state=seed)
        ranked["pos"] = ranked.groupby("category_id").cumcount()
        visitors = np.arange(1, 30)
        favourites = [
            (v, c, r) for v in visitors for r, c in enumerate(rng.permutation(7)[: v % 4])
        ]  # category 6 has no items; some visitors have no favourites
        fb = Fallback(
            rng.permutation(items)[: rng.integers(5, 60)],
            ranked,
            pd.DataFrame(favourites, columns=["visitor_id", "category_id", "cat_rank"]),
        )
        skip = pd.DataFrame(
            {"visitor_id": rng.choice(visitors, 80), "item_id": rng.choice(items, 80)}
        ).drop_duplicates()
        counts = pd.Series(rng.integers(0, 5, len(visitors)), index=visitors)
        assert fb.one_slot_per_item
        for depth, n in ((8, 8), (16, 8)):
            general = base._fill_rows(fb, visitors, depth, n, skip, counts)
            fast = base._fill_rows_by_position(fb, visitors, depth, n, skip, counts)
            assert len(fast) > 0
            pd.testing.assert_frame_equal(
                sort_lists(fast, "visitor_id"), sort_lists(general, "visitor_id")
            )


def test_a_visitors_categories_are_found_in_a_frame_sorted_by_visitor_or_not():
    favourites = pd.DataFrame(
        {
            "visitor_id": [1, 1, 3, 4, 4, 6],
            "category_id": [7, 8, 7, 9, 7, 8],
            "cat_rank": [0, 1, 0, 0, 1, 0],
        }
    )
    shuffled = favourites.iloc[[5, 2, 0, 4, 1, 3]]
    for frame in (favourites, shuffled):
        fb = Fallback(np.array([1]), None, frame)
        got = fb.categories_of(np.array([3, 4, 5]))
        assert sorted(got.itertuples(index=False, name=None)) == [(3, 7, 0), (4, 7, 1), (4, 9, 0)]
        assert fb.categories_of(np.array([2])).empty


def test_an_item_in_two_categories_or_a_category_named_twice_is_listed_once():
    # Not one slot per item: the general path, which drops the repeat.
    fb = Fallback(
        np.array([1, 2, 3]),
        pd.DataFrame({"category_id": [7, 8, 8], "item_id": [4, 4, 5], "pos": [0, 0, 1]}),
        pd.DataFrame({"visitor_id": [5, 5], "category_id": [7, 8], "cat_rank": [0, 1]}),
    )
    assert not fb.one_slot_per_item
    recs = fill_lists(empty_lists(), np.array([5]), 4, fb, None, None)
    assert recs["item_id"].tolist() == [4, 5, 1, 2]
    # A category named twice for one visitor: its items once, at the better rank.
    fb = Fallback(
        np.array([1, 2, 3]),
        pd.DataFrame({"category_id": [7, 7, 8], "item_id": [4, 5, 6], "pos": [0, 1, 0]}),
        pd.DataFrame({"visitor_id": [5, 5, 5], "category_id": [7, 8, 7], "cat_rank": [0, 1, 2]}),
    )
    assert fb.one_slot_per_item
    recs = fill_lists(empty_lists(), np.array([5]), 5, fb, None, None)
    assert recs["item_id"].tolist() == [4, 5, 6, 1, 2]


def test_a_recommender_for_some_visitors_keeps_their_lists_and_only_their_factors(als):
    model, inter = als
    bought = inter.groupby("visitor_id").head(1)[["visitor_id", "item_id"]]
    some = np.array([25, 0, 5, 5, 1000])  # 1000 is unknown to the model
    subset = model.for_visitors(some)
    assert subset.visitor_ids.tolist() == [0, 5, 25]
    assert subset.model.user_factors.shape == (3, model.model.user_factors.shape[1])
    assert model.model.user_factors.shape[0] == 40  # the original is untouched
    pd.testing.assert_frame_equal(
        subset.recommend(some, 8, exclude=bought), model.recommend(some, 8, exclude=bought)
    )
    # A visitor left out is unseen: the fallback's list, as for a cold visitor.
    assert set(subset.recommend(np.array([30]), 5)["source"]) == {"popular"}


def test_similar_items_by_factors_then_by_category(als):
    model, inter = als
    categories = pd.DataFrame({"item_id": [0, 12, 999], "category_id": [1, 2, 2]})
    fb = Fallback(
        rank_by_popularity(inter),
        pd.DataFrame({"category_id": [2, 2], "item_id": [12, 13], "pos": [0, 1]}),
        None,
    )
    sims = model.similar_items(np.array([0, 12, 999]), 4, fb, categories, unavailable=np.array([1]))
    assert sims.groupby("item_id").size().to_dict() == {0: 4, 12: 4, 999: 4}
    assert not (sims["item_id"] == sims["similar_item_id"]).any()
    assert not sims["similar_item_id"].eq(1).any()
    # Item 0 is in the first taste group: its neighbours are too.
    assert sims.loc[sims["item_id"] == 0, "similar_item_id"].lt(10).all()
    assert set(sims.loc[sims["item_id"] == 0, "source"]) == {"als"}
    # Item 999 is new: its category's popular items first.
    new = sims[sims["item_id"] == 999]
    assert new["similar_item_id"].tolist()[:2] == [12, 13]
    assert new["source"].tolist()[:2] == ["category_popular", "category_popular"]


def _timed_events(rows):
    frame = pd.DataFrame(rows, columns=["visitor_id", "item_id", "event_type", "event_ts"])
    return frame.assign(event_ts=pd.to_datetime(frame["event_ts"], utc=True))


AS_OF = pd.Timestamp("2015-09-19", tz="UTC")


def test_build_interactions_decays_weights_by_age():
    events = _timed_events(
        [
            (1, 10, "view", "2015-09-19"),  # age 0: 1 * 1
            (1, 10, "cart", "2015-09-12"),  # age 7 = one half-life: 4 * 0.5 = 2
            (1, 20, "purchase", "2015-09-05"),  # age 14: 8 * 0.25 = 2
            (2, 10, "view", "2015-08-29"),  # age 21: 1 * 0.125
        ]
    )
    got = build_interactions(events, WEIGHTS, as_of=AS_OF, half_life_days=7)
    assert got.to_dict("records") == [
        {"visitor_id": 1, "item_id": 10, "interaction_weight": pytest.approx(3.0)},
        {"visitor_id": 1, "item_id": 20, "interaction_weight": pytest.approx(2.0)},
        {"visitor_id": 2, "item_id": 10, "interaction_weight": pytest.approx(0.125)},
    ]


def test_build_interactions_takes_naive_times_as_utc():
    events = _timed_events([(1, 10, "cart", "2015-09-18 12:00")])
    events["event_ts"] = events["event_ts"].dt.tz_localize(None)
    got = build_interactions(
        events, WEIGHTS, as_of=pd.Timestamp("2015-09-19"), half_life_days=0.5
    )  # 12 h old = one half-life: 4 * 0.5
    assert got["interaction_weight"].tolist() == [pytest.approx(2.0)]


def test_build_interactions_saturates_repeated_events():
    events = _events([(1, 10, "view")] * 12 + [(1, 20, "cart"), (2, 10, "view")])
    got = build_interactions(events, WEIGHTS, saturation=4.0)
    assert got.to_dict("records") == [
        # c = 12: 4 * log1p(12 / 4) = 4 ln 4 = 5.5451774
        {"visitor_id": 1, "item_id": 10, "interaction_weight": pytest.approx(5.5451774)},
        # c = 4: 4 ln 2 = 2.7725887
        {"visitor_id": 1, "item_id": 20, "interaction_weight": pytest.approx(2.7725887)},
        # c = 1: 4 ln 1.25 = 0.8925742
        {"visitor_id": 2, "item_id": 10, "interaction_weight": pytest.approx(0.8925742)},
    ]


def test_build_interactions_decays_before_saturating():
    events = _timed_events([(1, 10, "cart", "2015-09-12"), (1, 10, "cart", "2015-09-12")])
    # Decayed sum 4 * 0.5 * 2 = 4, then 2 * log1p(4 / 2) = 2 ln 3 = 2.1972246.
    got = build_interactions(events, WEIGHTS, as_of=AS_OF, half_life_days=7, saturation=2.0)
    assert got["interaction_weight"].tolist() == [pytest.approx(2.1972246)]


def test_build_interactions_without_options_ignores_event_ts():
    events = _timed_events([(1, 10, "view", "2015-01-01"), (1, 10, "cart", "2015-09-18")])
    got = build_interactions(events, WEIGHTS, as_of=None, half_life_days=None, saturation=None)
    assert got.to_dict("records") == [{"visitor_id": 1, "item_id": 10, "interaction_weight": 5.0}]


def test_build_interactions_bad_options_are_named():
    events = _timed_events([(1, 10, "view", "2015-09-18")])
    with pytest.raises(ValueError, match="both as_of and half_life_days"):
        build_interactions(events, WEIGHTS, half_life_days=7)
    with pytest.raises(ValueError, match="both as_of and half_life_days"):
        build_interactions(events, WEIGHTS, as_of=AS_OF)
    with pytest.raises(ValueError, match="half_life_days must be positive"):
        build_interactions(events, WEIGHTS, as_of=AS_OF, half_life_days=0)
    with pytest.raises(ValueError, match="event_ts"):
        build_interactions(_events([(1, 10, "view")]), WEIGHTS, as_of=AS_OF, half_life_days=7)
    with pytest.raises(ValueError, match="events after as_of"):
        build_interactions(
            events, WEIGHTS, as_of=pd.Timestamp("2015-09-01", tz="UTC"), half_life_days=7
        )
    with pytest.raises(ValueError, match="saturation must be positive"):
        build_interactions(events, WEIGHTS, saturation=0.0)


def test_candidate_pool_restricts_model_lists_and_survives_save(als, tmp_path):
    model, inter = als
    pool = np.array([0, 1, 2, 3, 10, 11, 12, 999])  # 999: unknown to the model, ignored
    pooled = AlsRecommender(model.model, model.visitor_ids, model.item_ids, [], pool)
    bought = pd.DataFrame({"visitor_id": [0], "item_id": [1]})
    recs = pooled.recommend(np.array([0, 25]), 5, exclude=bought, unavailable=np.array([2]))
    by_model = recs[recs["source"] == "als"]
    # Visitor 0 may get 0 and 3 (1 bought, 2 unavailable) from its own group, then 10-12.
    assert set(by_model["item_id"]) <= {0, 3, 10, 11, 12}
    assert set(by_model.loc[by_model["visitor_id"] == 0, "item_id"].head(2)) == {0, 3}
    assert by_model.loc[by_model["visitor_id"] == 25, "item_id"].head(3).ge(10).all()
    # Same scores as ranking every item, for the items both rank.
    full = model.recommend(np.array([25]), 20)
    merged = by_model[by_model["visitor_id"] == 25].merge(full, on=["visitor_id", "item_id"])
    np.testing.assert_allclose(merged["score_x"], merged["score_y"], rtol=1e-5)
    no_categories = pd.DataFrame({"item_id": [], "category_id": []}, dtype=np.int64)
    sims = pooled.similar_items(np.array([0]), 3, Fallback(np.array([5])), no_categories)
    assert set(sims.loc[sims["source"] == "als", "similar_item_id"]) <= {1, 2, 3, 10, 11, 12}
    pooled.save(tmp_path / "m")
    again = AlsRecommender.load(tmp_path / "m")
    assert again.item_ids[again.candidates].tolist() == [0, 1, 2, 3, 10, 11, 12]
    pd.testing.assert_frame_equal(
        again.recommend(np.array([0, 25]), 5), pooled.recommend(np.array([0, 25]), 5)
    )
    # A pool emptied by unavailability leaves the lists to the fallback.
    gone = pooled.recommend(
        np.array([0]), 3, unavailable=pool, fallback=Fallback(np.array([5, 6, 7]))
    )
    assert gone["item_id"].tolist() == [5, 6, 7] and set(gone["source"]) == {"popular"}


def test_sort_lists_orders_by_key_then_rank_whatever_the_ids():
    big = np.iinfo(np.int64).max  # far-apart ids: a difference of keys would overflow
    lists = pd.DataFrame({"visitor_id": [big, -big, -big], "rank": [1, 1, 2], "item_id": [7, 8, 9]})
    ordered = sort_lists(lists, "visitor_id")
    assert ordered.values.tolist() == [[-big, 1, 8], [-big, 2, 9], [big, 1, 7]]
    pd.testing.assert_frame_equal(sort_lists(ordered, "visitor_id"), ordered)


def test_versions_registered_before_the_move_still_unpickle_to_the_wrapper():
    import pickle

    from jobs.recommenders.pyfunc import RecommenderPyfunc

    # What an older registered model's python_model.pkl names: jobs.core.model.RecommenderPyfunc.
    assert pickle.loads(b"cjobs.core.model\nRecommenderPyfunc\n.") is RecommenderPyfunc
