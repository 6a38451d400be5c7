import numpy as np
import pandas as pd
import pytest

from jobs.recommenders.base import Fallback
from jobs.recommenders.neighbours import ItemKnnRecommender, UserKnnRecommender
from jobs.recommenders.popularity import RecentPopularityRecommender

WEIGHTS = {"view": 1.0, "cart": 4.0, "purchase": 8.0}
SQRT_HALF = 0.5**0.5  # 0.70710678
INV_SQRT_6 = 6**-0.5  # 0.40824829

# Visitor 1: 10 20 | 2: 10 20 30 | 3: 30 40 | 4: 40 50, every weight 1.
# Visitor cosines: (1, 2) = 2 / (sqrt 2 sqrt 3) = 2 / sqrt 6 = 0.8165; (2, 3) = 1 / sqrt 6 = 0.4082;
# (3, 4) = 1 / 2; every other pair 0.
# Item cosines: (10, 20) = 1; (10, 30) = (20, 30) = (30, 40) = 1 / 2; (40, 50) = 1 / sqrt 2.
# Popularity: 10, 20, 30, 40 (2 each, ties by id), then 50 (1).
PAIRS = [(1, 10), (1, 20), (2, 10), (2, 20), (2, 30), (3, 30), (3, 40), (4, 40), (4, 50)]


def _interactions(pairs=PAIRS, weight=1.0):
    frame = pd.DataFrame(pairs, columns=["visitor_id", "item_id"])
    return frame.assign(interaction_weight=weight)


def _pairs(visitor_item):
    return pd.DataFrame(visitor_item, columns=["visitor_id", "item_id"])


def _lists(recs):
    """{visitor: [(item, score rounded, source), ...]} in rank order."""
    out = {}
    for row in recs.sort_values(["visitor_id", "rank"]).itertuples():
        out.setdefault(row.visitor_id, []).append((row.item_id, round(row.score, 6), row.source))
    return out


def _assert_valid(recs, visitors, n, exclude=None, unavailable=()):
    assert list(recs.columns) == ["visitor_id", "rank", "item_id", "score", "source"]
    assert recs.groupby("visitor_id").size().to_dict() == dict.fromkeys(visitors, n)
    assert all(r == list(range(1, n + 1)) for r in recs.groupby("visitor_id")["rank"].apply(list))
    assert not recs.duplicated(["visitor_id", "item_id"]).any()
    assert not recs["item_id"].isin(list(unavailable)).any()
    if exclude is not None:
        banned = set(map(tuple, exclude[["visitor_id", "item_id"]].values))
        assert not any((v, i) in banned for v, i in recs[["visitor_id", "item_id"]].values)


# --- user-user kNN ---------------------------------------------------------------------------


def test_user_knn_keeps_the_top_neighbours_and_never_the_visitor():
    model = UserKnnRecommender.fit(_interactions(), neighbours=1)
    got = model.neighbours_of(np.arange(4)).toarray()  # rows/columns = visitors 1..4
    expected = np.array(
        [
            [0, 2 * INV_SQRT_6, 0, 0],  # 1 -> 2
            [2 * INV_SQRT_6, 0, 0, 0],  # 2 -> 1 (0.8165 beats 3's 0.4082)
            [0, 0, 0, 0.5],  # 3 -> 4 (0.5 beats 2's 0.4082)
            [0, 0, 0.5, 0],  # 4 -> 3
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_user_knn_scores_items_by_neighbour_similarity():
    model = UserKnnRecommender.fit(_interactions(), neighbours=2)
    recs = model.recommend(np.array([3]), 5)
    # Visitor 3's neighbours: 4 (0.5) brings 40, 50; 2 (0.4082) brings 10, 20, 30. Ties by id.
    assert _lists(recs) == {
        3: [
            (40, 0.5, "user_knn"),
            (50, 0.5, "user_knn"),
            (10, round(INV_SQRT_6, 6), "user_knn"),
            (20, round(INV_SQRT_6, 6), "user_knn"),
            (30, round(INV_SQRT_6, 6), "user_knn"),
        ]
    }


def test_user_knn_respects_exclusions_and_unavailable_items():
    model = UserKnnRecommender.fit(_interactions(), neighbours=2)
    exclude = _pairs([(3, 40), (1, 30)])
    recs = model.recommend(np.array([1, 3]), 3, exclude=exclude, unavailable=np.array([10]))
    _assert_valid(recs, [1, 3], 3, exclude, [10])
    assert _lists(recs) == {
        # 1's only neighbour is 2 (1 and 3 share nothing): 20 (0.8165); 10 is unavailable and
        # 30 excluded, so popularity fills 40 then 50 (scored 1/position once 10 is gone).
        1: [
            (20, round(2 * INV_SQRT_6, 6), "user_knn"),
            (40, 0.333333, "popular"),
            (50, 0.25, "popular"),
        ],
        3: [
            (50, 0.5, "user_knn"),
            (20, round(INV_SQRT_6, 6), "user_knn"),
            (30, round(INV_SQRT_6, 6), "user_knn"),
        ],
    }


def test_user_knn_filter_history_drops_own_items_from_model_and_fallback():
    model = UserKnnRecommender.fit(_interactions(), neighbours=1, filter_history=True)
    recs = model.recommend(np.array([1]), 3)
    # Neighbour 2 adds only 30; the fallback must then skip 10 and 20 (visitor 1's history).
    assert [(i, s) for i, _, s in _lists(recs)[1]] == [
        (30, "user_knn"),
        (40, "popular"),
        (50, "popular"),
    ]


def test_user_knn_binary_ignores_weights():
    weighted = _interactions().assign(interaction_weight=[8.0, 1, 1, 4, 1, 1, 1, 1, 1])
    plain = UserKnnRecommender.fit(_interactions(), neighbours=2)
    binary = UserKnnRecommender.fit(weighted, neighbours=2, binary=True)
    visitors = np.array([1, 2, 3, 4])
    pd.testing.assert_frame_equal(plain.recommend(visitors, 4), binary.recommend(visitors, 4))
    assert (
        not UserKnnRecommender.fit(weighted, neighbours=2)
        .recommend(visitors, 4)
        .equals(plain.recommend(visitors, 4))
    )


def test_user_knn_unknown_visitor_gets_fallback_only_and_batches_do_not_matter():
    one = UserKnnRecommender.fit(_interactions(), neighbours=2, batch_size=1)
    many = UserKnnRecommender.fit(_interactions(), neighbours=2, batch_size=1_000)
    visitors = np.array([4, 99, 1, 3, 2, 4])
    recs = one.recommend(visitors, 3)
    _assert_valid(recs, [1, 2, 3, 4, 99], 3)
    assert _lists(recs)[99] == [
        (10, 1.0, "popular"),
        (20, 0.5, "popular"),
        (30, 0.333333, "popular"),
    ]
    pd.testing.assert_frame_equal(recs, many.recommend(visitors, 3))
    pd.testing.assert_frame_equal(recs, one.recommend(visitors, 3))


def test_user_knn_uses_the_given_fallback():
    model = UserKnnRecommender.fit(_interactions(), neighbours=1)
    recs = model.recommend(np.array([99]), 2, fallback=Fallback(np.array([50, 40])))
    assert recs["item_id"].tolist() == [50, 40]


def test_user_knn_bad_inputs_are_named():
    with pytest.raises(ValueError, match="neighbours must be >= 1"):
        UserKnnRecommender.fit(_interactions(), neighbours=0)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        UserKnnRecommender.fit(_interactions(), batch_size=0)
    with pytest.raises(ValueError, match="no interactions"):
        UserKnnRecommender.fit(_interactions([]))
    with pytest.raises(ValueError, match="n must be positive"):
        UserKnnRecommender.fit(_interactions()).recommend(np.array([1]), 0)


# --- item-item kNN ---------------------------------------------------------------------------


def test_item_knn_cosine_similarity_is_hand_checkable():
    model = ItemKnnRecommender.fit(_interactions(), neighbours=5)
    h = 0.5
    expected = np.array(  # items 10..50
        [
            [1, 1, h, 0, 0],
            [1, 1, h, 0, 0],
            [h, h, 1, h, 0],
            [0, 0, h, 1, SQRT_HALF],
            [0, 0, 0, SQRT_HALF, 1],
        ]
    )
    np.testing.assert_allclose(model.model.similarity.toarray(), expected, rtol=1e-6)


def test_item_knn_scores_from_history_with_exclusions():
    model = ItemKnnRecommender.fit(_interactions(), neighbours=5)
    # Visitor 3 (30, 40): 30 -> 1 + 1/2, 40 -> 1/2 + 1, 50 -> 1/sqrt 2, 10 and 20 -> 1/2.
    assert [(i, s) for i, s, _ in _lists(model.recommend(np.array([3]), 5))[3]] == [
        (30, 1.5),
        (40, 1.5),
        (50, round(SQRT_HALF, 6)),
        (10, 0.5),
        (20, 0.5),
    ]
    exclude = _pairs([(3, 30)])
    recs = model.recommend(np.array([3]), 3, exclude=exclude, unavailable=np.array([40]))
    _assert_valid(recs, [3], 3, exclude, [40])
    assert _lists(recs)[3] == [
        (50, round(SQRT_HALF, 6), "item_knn_cosine"),
        (10, 0.5, "item_knn_cosine"),
        (20, 0.5, "item_knn_cosine"),
    ]


def test_item_knn_filter_history_reaches_the_fallback():
    model = ItemKnnRecommender.fit(_interactions(), neighbours=5, filter_history=True)
    recs = model.recommend(np.array([4]), 3)
    # Visitor 4 (40, 50): 30 gets 1/2 from 40; nothing else is near; popularity skips 40, 50.
    assert _lists(recs)[4] == [
        (30, 0.5, "item_knn_cosine"),
        (10, 1.0, "popular"),
        (20, 0.5, "popular"),
    ]


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_item_knn_scores_match_implicits_own_recommend(similarity):
    model = ItemKnnRecommender.fit(_interactions(), similarity=similarity, neighbours=3)
    assert model.name == f"item_knn_{similarity}"
    for row, visitor in enumerate([1, 2, 3, 4]):
        ids, scores = model.model.recommend(
            row, model.data.matrix[row], N=5, filter_already_liked_items=False
        )
        theirs = {
            int(model.data.item_ids[i]): round(float(s), 6)
            for i, s in zip(ids, scores, strict=True)
            if i >= 0
        }
        recs = model.recommend(np.array([visitor]), 5)
        ours = recs[recs["source"] == model.name]
        assert dict(zip(ours["item_id"], ours["score"].round(6), strict=True)) == theirs


def test_item_knn_lists_are_full_filtered_and_deterministic():
    model = ItemKnnRecommender.fit(_interactions(), similarity="bm25", neighbours=2)
    exclude = _pairs([(1, 10), (2, 30), (3, 40)])
    visitors = np.array([1, 2, 3, 4, 99])
    recs = model.recommend(visitors, 3, exclude=exclude, unavailable=np.array([20]))
    _assert_valid(recs, [1, 2, 3, 4, 99], 3, exclude, [20])
    assert set(recs.loc[recs["visitor_id"] == 99, "source"]) == {"popular"}
    pd.testing.assert_frame_equal(
        recs, model.recommend(visitors[::-1], 3, exclude=exclude, unavailable=np.array([20]))
    )


def test_item_knn_bad_inputs_are_named():
    with pytest.raises(ValueError, match="similarity must be one of"):
        ItemKnnRecommender.fit(_interactions(), similarity="jaccard")
    with pytest.raises(ValueError, match="neighbours must be >= 1"):
        ItemKnnRecommender.fit(_interactions(), neighbours=0)
    with pytest.raises(ValueError, match="no interactions"):
        ItemKnnRecommender.fit(_interactions([]))
    with pytest.raises(ValueError, match="n must be positive"):
        ItemKnnRecommender.fit(_interactions()).recommend(np.array([1]), -1)


# --- recent popularity -----------------------------------------------------------------------


def _recent_events():
    rows = [
        (1, 10, "view", "2015-09-19"),  # 10: two fresh views = 2
        (2, 10, "view", "2015-09-19"),
        (1, 20, "purchase", "2015-08-29"),  # 20: 8, three half-lives old = 1
        (3, 30, "cart", "2015-09-19"),  # 30: 4, fresh
    ]
    frame = pd.DataFrame(rows, columns=["visitor_id", "item_id", "event_type", "event_ts"])
    return frame.assign(event_ts=pd.to_datetime(frame["event_ts"], utc=True))


def test_recent_popularity_ranks_by_decayed_weight():
    model = RecentPopularityRecommender.from_events(
        _recent_events(), WEIGHTS, as_of=pd.Timestamp("2015-09-19", tz="UTC"), half_life_days=7
    )
    # Undecayed, 20 (8) would lead; decayed: 30 (4), 10 (2), 20 (1).
    assert model.popular_items.tolist() == [30, 10, 20]
    assert model.scores.tolist() == pytest.approx([4.0, 2.0, 1.0])
    recs = model.recommend(np.array([9, 1]), 2)
    assert _lists(recs) == {
        1: [(30, 4.0, "recent_popular"), (10, 2.0, "recent_popular")],
        9: [(30, 4.0, "recent_popular"), (10, 2.0, "recent_popular")],
    }


def test_recent_popularity_respects_exclusions_and_tops_up_from_the_fallback():
    model = RecentPopularityRecommender.from_events(
        _recent_events(), WEIGHTS, as_of=pd.Timestamp("2015-09-19", tz="UTC"), half_life_days=7
    )
    exclude = _pairs([(1, 30)])
    recs = model.recommend(
        np.array([1, 9]),
        2,
        exclude=exclude,
        unavailable=np.array([10]),
        fallback=Fallback(np.array([10, 20, 30, 40])),
    )
    _assert_valid(recs, [1, 9], 2, exclude, [10])
    # Visitor 1 has only 20 left from the model; the fallback's next usable item is 40, third
    # once the unavailable 10 is dropped (score 1/3).
    assert _lists(recs) == {
        1: [(20, 1.0, "recent_popular"), (40, 0.333333, "popular")],
        9: [(30, 4.0, "recent_popular"), (20, 1.0, "recent_popular")],
    }


def test_recent_popularity_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same length"):
        RecentPopularityRecommender(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(ValueError, match="half_life_days must be positive"):
        RecentPopularityRecommender.from_events(
            _recent_events(), WEIGHTS, as_of=pd.Timestamp("2015-09-19", tz="UTC"), half_life_days=0
        )
    with pytest.raises(ValueError, match="n must be positive"):
        RecentPopularityRecommender(np.array([1]), np.array([1.0])).recommend(np.array([1]), 0)
