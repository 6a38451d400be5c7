import pandas as pd
import pytest

from jobs.infra.config import TrainConfig, TuneConfig, TuneSpace
from jobs.recommenders.tuning import (
    fit_sample,
    sample_trials,
    search,
    tuning_note,
    validation_sample,
)

BASE = TrainConfig(
    factors=2,
    regularization=0.01,
    alpha=10.0,
    iterations=6,
    num_threads=1,
    event_weights={"view": 1.0, "cart": 4.0, "purchase": 8.0},
)
CUTOFF = pd.Timestamp("2015-09-10", tz="UTC")


def _tune(**kw) -> TuneConfig:
    space = TuneSpace(
        factors=(2, 4),
        regularization=(0.01, 0.1),
        alpha=(5.0, 10.0),
        iterations=(4, 6),
        event_weights={"cart": (2.0, 4.0)},
    )
    return TuneConfig(**{"trials": 3, "eval_every": 1, "patience": 2, "space": space, **kw})


def _two_tastes() -> pd.DataFrame:
    """20 visitors in two taste groups (items 0-5 and 10-15). Before the cutoff each views four
    items of their group; after it (the validation window), a fifth one of the same group."""
    rows = []
    for v in range(20):
        group = 0 if v < 10 else 10
        for j in range(4):
            item = group + (v + j) % 6
            rows.append(
                (v, item, "view", pd.Timestamp("2015-09-01", tz="UTC") + pd.Timedelta(hours=v + j))
            )
        rows.append((v, group + (v + 4) % 6, "view", CUTOFF + pd.Timedelta(hours=v)))
    return pd.DataFrame(rows, columns=["visitor_id", "item_id", "event_type", "event_ts"])


def test_trial_zero_is_the_configured_model_and_draws_are_seeded_and_distinct():
    trials = sample_trials(BASE, _tune(trials=5))
    assert trials[0] == BASE
    assert len(trials) == 5
    assert len({t.model_dump_json() for t in trials}) == 5
    assert trials == sample_trials(BASE, _tune(trials=5))
    assert trials != sample_trials(BASE, _tune(trials=5, seed=7))
    # Only cart weights are searched; the others keep the configured values.
    assert {t.event_weights["purchase"] for t in trials} == {8.0}
    # The space holds 2*2*2*2*2 = 32 combinations, the base among them: 50 asked, 32 exist.
    assert len(sample_trials(BASE, _tune(trials=50))) == 32


def test_validation_sample_keeps_warm_visitors_only_evenly_spaced():
    events = _two_tastes()
    fit, validation = events[events.event_ts < CUTOFF], events[events.event_ts >= CUTOFF]
    cold = pd.DataFrame({"visitor_id": [99], "item_id": [1]})
    truth = validation_sample(fit, pd.concat([validation, cold]), max_visitors=0)
    assert sorted(truth.visitor_id) == list(range(20))
    sample = validation_sample(fit, validation, max_visitors=3)
    assert list(sample.visitor_id) == [0, 9, 19]


def test_trials_fit_on_the_scored_visitors_plus_a_seeded_sample_of_the_others():
    events = _two_tastes()
    fit, validation = events[events.event_ts < CUTOFF], events[events.event_ts >= CUTOFF]
    truth = validation_sample(fit, validation, max_visitors=3)  # visitors 0, 9, 19
    sample = fit_sample(fit, truth, max_visitors=8, seed=42)
    kept = set(sample.visitor_id)
    assert len(kept) == 8 and {0, 9, 19} <= kept
    # A kept visitor keeps every row.
    assert len(sample) == 8 * 4
    assert sample.equals(fit[fit.visitor_id.isin(kept)])
    assert sample.equals(fit_sample(fit, truth, max_visitors=8, seed=42))
    assert set(fit_sample(fit, truth, max_visitors=8, seed=7).visitor_id) != kept
    for everyone in (0, 20, 50):
        assert fit_sample(fit, truth, max_visitors=everyone, seed=42) is fit


def test_a_search_on_a_visitor_sample_says_how_many_each_trial_fitted_on():
    tune = _tune(max_fit_visitors=12, max_validation_visitors=5)
    _, sampled = search(_two_tastes(), CUTOFF, BASE, tune, ("purchase",))
    _, whole = search(_two_tastes(), CUTOFF, BASE, _tune(), ("purchase",))
    assert [r.fit_visitors for r in sampled] == [12, 12, 12]
    assert [r.fit_visitors for r in whole] == [20, 20, 20]


def test_search_scores_every_trial_on_validation_and_returns_the_best_with_its_iterations():
    seen = []
    best, results = search(_two_tastes(), CUTOFF, BASE, _tune(), ("purchase",), seen.append)
    assert [r.number for r in results] == [0, 1, 2] == [r.number for r in seen]
    winner = max(results, key=lambda r: r.best_score)
    assert best.iterations == winner.best_iterations
    assert best.factors == winner.params.factors
    for r in results:
        assert 0 < r.best_score <= 1
        assert [i for i, _ in r.curve] == list(range(1, len(r.curve) + 1))  # eval_every 1
        assert max(s for _, s in r.curve) == r.best_score
        if r.stopped_early:  # stopped after `patience` scores without improvement
            assert all(s <= r.best_score for _, s in r.curve[-2:])
            assert r.curve[-3][1] == r.best_score


def test_search_is_deterministic():
    first = search(_two_tastes(), CUTOFF, BASE, _tune(), ("purchase",))
    again = search(_two_tastes(), CUTOFF, BASE, _tune(), ("purchase",))
    assert first[0] == again[0]
    assert [r.curve for r in first[1]] == [r.curve for r in again[1]]


@pytest.mark.parametrize("trials", [0, 1])
def test_no_search_without_trials_or_validation_data(trials):
    events = _two_tastes()
    assert search(events, CUTOFF, BASE, _tune(trials=trials), ()) == (BASE, [])
    before = events[events.event_ts < CUTOFF]
    assert search(before, CUTOFF, BASE, _tune(), ()) == (BASE, [])


def test_a_skipped_or_thin_search_is_said_in_words():
    events = _two_tastes()
    before = events[events.event_ts < CUTOFF]
    # No validation window: the search is skipped, and the note says why.
    assert tuning_note(before, CUTOFF, _tune()).startswith("tuning skipped: no visitor")
    # 20 warm validation visitors: tuned, but on far fewer than 500.
    assert tuning_note(events, CUTOFF, _tune()) == (
        "tuned on only 20 validation visitors (fewer than 500): the chosen parameters are noisy"
    )
    # Enough visitors for the configured cap: nothing to say.
    assert tuning_note(events, CUTOFF, _tune(max_validation_visitors=20)) is None
