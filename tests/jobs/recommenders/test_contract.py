"""The Recommender contract (recommenders/base.py), checked on every model with one tiny matrix.

For visitors asked with repeats, `recommend(visitor_ids, n, exclude, unavailable, fallback)`
returns visitor_id, rank, item_id, score, source: exactly `n` rows per distinct visitor, ranks
1..n, no repeated item, nothing `exclude` lists for that visitor, nothing `unavailable`. The
model's own rows (source == name) have non-increasing scores and are a top-k of a brute-force
ranking the test computes from the model's definition (ties may come in any order). n <= 0 is a
ValueError. A visitor a personal model never saw gets the fallback's list only, and a given
fallback only tops lists up: it never changes the model's own rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from jobs.infra.config import TrainConfig
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.base import Fallback
from jobs.recommenders.ease import EaseRecommender
from jobs.recommenders.interactions import rank_by_popularity, to_matrix
from jobs.recommenders.neighbours import ItemKnnRecommender, UserKnnRecommender
from jobs.recommenders.popularity import PopularityRecommender, RecentPopularityRecommender
from jobs.recommenders.repeat import RepeatRecommender
from jobs.shop.oracle import OracleRecommender

WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 7.0}
AS_OF, HALF_LIFE = pd.Timestamp("2015-09-20", tz="UTC"), 7.0
# (visitor, item, event type, age in days): one event per pair, so weights are exact.
EVENTS = [
    (1, 10, "purchase", 14), (1, 20, "view", 0), (1, 30, "cart", 7),
    (2, 10, "view", 0), (2, 30, "view", 7), (2, 40, "cart", 0),
    (3, 20, "cart", 14), (3, 40, "view", 7), (3, 50, "purchase", 0),
    (4, 50, "view", 0), (4, 60, "cart", 7), (4, 70, "view", 14),
    (5, 10, "cart", 0), (5, 60, "view", 0),
    (6, 70, "view", 0),  # with (6, 70) excluded, the kNN models fill only part of 6's list
]  # fmt: skip
KNOWN, ITEMS = np.array([1, 2, 3, 4, 5, 6]), np.array([10, 20, 30, 40, 50, 60, 70])
W, AGE = np.zeros((2, len(KNOWN), len(ITEMS)))  # weight, age in days
for _v, _i, _type, _age in EVENTS:
    _at = np.searchsorted(KNOWN, _v), np.searchsorted(ITEMS, _i)
    W[_at], AGE[_at] = WEIGHTS[_type], _age

UNSEEN, N = 99, 3
VISITORS = np.array([3, 1, UNSEEN, 6, 5, 1, 2, 4, 3])  # repeats on purpose
EXCLUDE = pd.DataFrame(
    [(1, 10), (1, 30), (2, 40), (3, 50), (6, 70), (UNSEEN, 60), (7, 20)],
    columns=["visitor_id", "item_id"],
)
UNAVAILABLE = np.array([20])
# A given fallback, ordered unlike any model (by id, descending).
FALLBACK = Fallback(ITEMS[::-1].copy())
TOL = 1e-5

# Oracle ground truth: item (category, style, popularity), visitor style mix, interests.
ORACLE_ITEMS = [(10, 1, 0, 4.0), (20, 1, 1, 3.0), (30, 1, 0, 1.0), (40, 2, 0, 2.0),
                (50, 2, 1, 5.0), (60, 3, 1, 1.5), (70, 3, 0, 0.5)]  # fmt: skip
ORACLE_MIX = {1: (0.8, 0.2), 2: (0.5, 0.5), 3: (0.1, 0.9), 4: (1.0, 0.0), 5: (0.3, 0.7),
              6: (0.6, 0.4)}  # fmt: skip
ORACLE_INTERESTS = [(1, 1, 1.0), (2, 1, 0.5), (2, 2, 0.5), (3, 2, 1.0), (4, 3, 2.0),
                    (4, 1, 1.0), (5, 3, 1.0), (5, 2, 3.0), (6, 3, 1.0)]  # fmt: skip
EXPLORE = 0.2


def _interactions() -> pd.DataFrame:
    rows = [(v, i, WEIGHTS[t]) for v, i, t, _ in EVENTS]
    return pd.DataFrame(rows, columns=["visitor_id", "item_id", "interaction_weight"])


def _cosine(rows: np.ndarray) -> np.ndarray:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit @ unit.T


def _listed(scores: np.ndarray) -> np.ndarray:
    """Scores per item, NaN where a sparse model stores nothing (it never lists those)."""
    return np.where(scores > 0, scores, np.nan)


def _als_params(**extra) -> TrainConfig:
    base = dict(factors=3, iterations=8, regularization=0.05, alpha=5.0, random_state=3)
    return TrainConfig(num_threads=1, event_weights=WEIGHTS, **(base | extra))


def _als(model, pool=None) -> tuple[AlsRecommender, np.ndarray]:
    data = to_matrix(_interactions())
    popular = rank_by_popularity(_interactions())
    scores = model.user_factors @ model.item_factors.T
    if pool is not None:
        scores = np.where(np.isin(ITEMS, pool), scores, np.nan)
    return AlsRecommender(model, data.visitor_ids, data.item_ids, popular, pool), scores


def _build_oracle() -> tuple[OracleRecommender, np.ndarray]:
    items = pd.DataFrame(ORACLE_ITEMS, columns=["item_id", "category_id", "style", "popularity"])
    mix = pd.DataFrame.from_dict(ORACLE_MIX, orient="index", columns=["style_0", "style_1"])
    visitors = mix.rename_axis("visitor_id").reset_index()
    interests = pd.DataFrame(ORACLE_INTERESTS, columns=["visitor_id", "category_id", "weight"])
    model = OracleRecommender(items, visitors, interests, EXPLORE)
    _, category, style, p = (np.array(c) for c in zip(*ORACLE_ITEMS, strict=True))
    scores = np.tile(EXPLORE * p / p.sum(), (len(KNOWN), 1))
    for row, v in enumerate(KNOWN):
        mine = [(c, w) for u, c, w in ORACLE_INTERESTS if u == v]
        m = np.array(ORACLE_MIX[v])[style]
        for c, w in mine:
            share = w / sum(w for _, w in mine)
            in_c = category == c
            scores[row] += (1 - EXPLORE) * share * in_c * m * p / (m * p)[in_c].sum()
    return model, scores


def _build(name: str, request) -> tuple[object, np.ndarray]:
    """The model and its brute-force scores (visitors KNOWN x ITEMS, or one row for everyone)."""
    if name == "als":
        from jobs.recommenders.tuning import fit_als

        return _als(fit_als(to_matrix(_interactions()), _als_params()))
    if name == "als_pool":
        from implicit.cpu.als import AlternatingLeastSquares

        rng = np.random.default_rng(7)
        model = AlternatingLeastSquares(factors=2, iterations=1, random_state=0)
        model.user_factors = rng.normal(size=(len(KNOWN), 2)).astype(np.float32)
        model.item_factors = rng.normal(size=(len(ITEMS), 2)).astype(np.float32)
        return _als(model, pool=np.array([70, 50, 40, 20, 10]))
    if name == "mllib_als":
        from jobs.recommenders.mllib import fit_mllib_als

        # Few iterations: MLlib's lineage grows with each, and deep ones overflow the JVM's stack.
        params = _als_params(engine="spark_mllib", mllib_blocks=1)
        spark = request.getfixturevalue("spark")
        return _als(fit_mllib_als(to_matrix(_interactions()), params, spark))
    if name == "popular":
        return PopularityRecommender(rank_by_popularity(_interactions())), W.sum(axis=0)
    if name == "recent_popular":
        events = pd.DataFrame(EVENTS, columns=["visitor_id", "item_id", "event_type", "age"])
        events["event_ts"] = AS_OF - pd.to_timedelta(events.pop("age"), unit="D")
        model = RecentPopularityRecommender.from_events(
            events, WEIGHTS, as_of=AS_OF, half_life_days=HALF_LIFE
        )
        return model, (W * 0.5 ** (AGE / HALF_LIFE)).sum(axis=0)
    if name == "repeat":
        events = pd.DataFrame(EVENTS, columns=["visitor_id", "item_id", "event_type", "age"])
        events["event_ts"] = AS_OF - pd.to_timedelta(events.pop("age"), unit="D")
        model = RepeatRecommender.from_events(
            events, WEIGHTS, as_of=AS_OF, half_life_days=HALF_LIFE
        )
        return model, _listed(W * 0.5 ** (AGE / HALF_LIFE))  # only a visitor's own items
    if name == "item_knn":
        model = ItemKnnRecommender.fit(_interactions(), neighbours=len(ITEMS))
        return model, _listed(W @ _cosine(W.T))
    if name == "user_knn":
        model = UserKnnRecommender.fit(_interactions(), neighbours=len(KNOWN))
        similarity = _cosine(W)
        np.fill_diagonal(similarity, 0.0)  # never one's own neighbour
        return model, _listed(similarity @ W)
    if name == "ease":
        model = EaseRecommender.fit(_interactions(), l2=2.0, max_items=len(ITEMS))
        inverse = np.linalg.inv(W.T @ W + 2.0 * np.eye(len(ITEMS)))
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        return model, W @ weights  # every item is listable, negative scores included
    assert name == "oracle"
    return _build_oracle()


@dataclass
class Case:
    model: object
    expected: dict[int, np.ndarray]  # visitor -> brute-force score per item (NaN: not listable)
    personal: bool  # False: one list for everyone, unseen visitors included
    scored: bool  # whether `score` is the brute-force score (popular's is 1 / position)
    recs: pd.DataFrame  # recommend(VISITORS, N, EXCLUDE, UNAVAILABLE), default fallback


SLOW = [pytest.mark.slow, pytest.mark.spark]  # one JVM: make test-all only
CASES = ["als", "als_pool", pytest.param("mllib_als", marks=SLOW), "popular", "recent_popular"]
CASES += ["repeat", "item_knn", "user_knn", "ease", "oracle"]


@pytest.fixture(scope="module", params=CASES)
def case(request) -> Case:
    model, scores = _build(request.param, request)
    personal = scores.ndim == 2
    if personal:
        expected = dict(zip(KNOWN.tolist(), scores, strict=True))
    else:  # the same list for everyone, a visitor it never saw included
        expected = dict.fromkeys([*KNOWN.tolist(), UNSEEN], scores)
    recs = model.recommend(VISITORS, N, exclude=EXCLUDE, unavailable=UNAVAILABLE)
    return Case(model, expected, personal, request.param != "popular", recs)


def _excluded(visitor: int) -> np.ndarray:
    return EXCLUDE.loc[EXCLUDE["visitor_id"] == visitor, "item_id"].to_numpy()


def _own(case: Case, recs: pd.DataFrame | None = None) -> pd.DataFrame:
    recs = case.recs if recs is None else recs
    return recs[recs["source"] == case.model.name]


def test_every_visitor_gets_n_distinct_ranked_items(case):
    recs = case.recs
    assert list(recs.columns) == ["visitor_id", "rank", "item_id", "score", "source"]
    assert recs.groupby("visitor_id").size().to_dict() == dict.fromkeys(sorted(set(VISITORS)), N)
    assert recs.groupby("visitor_id")["rank"].apply(list).map(list(range(1, N + 1)).__eq__).all()
    assert not recs.duplicated(["visitor_id", "item_id"]).any()
    assert recs["item_id"].isin(ITEMS).all()


def test_nothing_excluded_or_unavailable(case):
    recs = case.recs
    assert not recs["item_id"].isin(UNAVAILABLE).any()
    banned = recs.merge(EXCLUDE, on=["visitor_id", "item_id"])
    assert banned.empty, banned


def test_own_scores_do_not_increase_with_rank(case):
    own = _own(case)
    assert not own.empty
    steps = own.sort_values(["visitor_id", "rank"]).groupby("visitor_id")["score"].diff()
    assert (steps.dropna() <= 0).all()


def test_own_rows_are_a_brute_force_top_n(case):
    for visitor, scores in case.expected.items():
        own = _own(case).loc[lambda f, v=visitor: f["visitor_id"] == v].sort_values("rank")
        allowed = ~np.isnan(scores) & ~np.isin(ITEMS, [*UNAVAILABLE, *_excluded(visitor)])
        assert len(own) == min(N, allowed.sum()), visitor
        assert own["item_id"].isin(ITEMS[allowed]).all(), visitor
        if own.empty:  # nothing of its own to list (repeat: every own item excluded)
            continue
        got = scores[np.searchsorted(ITEMS, own["item_id"])]
        assert (np.diff(got) <= TOL).all(), (visitor, own, got)  # in brute-force order
        left = scores[allowed & ~np.isin(ITEMS, own["item_id"])]
        assert (left <= got.min() + TOL).all(), (visitor, own, scores)  # nothing better left
        if case.scored:
            np.testing.assert_allclose(own["score"], got, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_a_value_error(case, n):
    with pytest.raises(ValueError, match="n must be positive"):
        case.model.recommend(KNOWN, n)


def test_given_fallback_only_tops_up_and_serves_unseen_visitors(case):
    recs = case.model.recommend(
        VISITORS, N, exclude=EXCLUDE, unavailable=UNAVAILABLE, fallback=FALLBACK
    )
    own = _own(case, recs)
    pd.testing.assert_frame_equal(own.reset_index(drop=True), _own(case).reset_index(drop=True))
    for visitor, rows in recs.groupby("visitor_id"):
        mine = rows.loc[rows["source"] == case.model.name, "item_id"]
        skip = [*UNAVAILABLE, *_excluded(visitor), *mine]
        usable = FALLBACK.popular[~np.isin(FALLBACK.popular, skip)]
        filled = rows.loc[rows["source"] != case.model.name, "item_id"]
        assert filled.tolist() == usable[: N - len(mine)].tolist(), visitor
    assert (recs["visitor_id"] == UNSEEN).sum() == N
    if case.personal:  # a visitor it never saw gets the fallback's list only
        assert not own["visitor_id"].eq(UNSEEN).any()


def test_a_batch_of_visitors_gets_the_lists_it_gets_among_everyone(case):
    # The export scores visitors in batches; a model may search only a batch's range.
    for batch in ([1, 2], [4, 5, 6], [3, UNSEEN]):
        recs = case.model.recommend(
            np.array(batch), N, exclude=EXCLUDE, unavailable=UNAVAILABLE, fallback=FALLBACK
        )
        whole = case.model.recommend(
            VISITORS, N, exclude=EXCLUDE, unavailable=UNAVAILABLE, fallback=FALLBACK
        )
        expected = whole[whole["visitor_id"].isin(batch)].reset_index(drop=True)
        pd.testing.assert_frame_equal(recs.reset_index(drop=True), expected)


SERVABLE = ["als", "popular", "recent_popular", "repeat", "item_knn", "ease"]


@pytest.mark.parametrize("name", SERVABLE)
def test_a_servable_model_saves_loads_and_lists_similar_items(name, request, tmp_path):
    from jobs.recommenders.pyfunc import FAMILIES, load_saved

    model, _ = _build(name, request)
    model.save(tmp_path / "model")
    loaded = load_saved(tmp_path / "model")

    assert type(loaded) is FAMILIES[model.family] is type(model)
    again = loaded.recommend(VISITORS, N, exclude=EXCLUDE, unavailable=UNAVAILABLE)
    first = model.recommend(VISITORS, N, exclude=EXCLUDE, unavailable=UNAVAILABLE)
    pd.testing.assert_frame_equal(again, first, rtol=TOL)
    catalog = pd.DataFrame({"item_id": ITEMS, "category_id": [1, 1, 1, 2, 2, 3, 3]})
    similar = loaded.similar_items(ITEMS, 2, Fallback(ITEMS.copy()), catalog, UNAVAILABLE)
    assert (similar.groupby("item_id").size() == 2).all() and len(similar) == 2 * len(ITEMS)
    assert not (similar["item_id"] == similar["similar_item_id"]).any()
    assert not similar["similar_item_id"].isin(UNAVAILABLE).any()
