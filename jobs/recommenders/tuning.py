"""Seeded random search for ALS, scored on the validation window with early stopping.

The training data splits once more by time: events before `split.validation_cutoff` fit each
trial, the validation window scores it (NDCG@k of its warm visitors, same exclusion rules as
evaluation and export). Trial 0 is `train.*` as configured, so tuning never picks something
worse on validation than the configuration. Each trial runs up to its iteration budget and
stops after `patience` scores without improvement; the best iteration count is part of the
result, so the final refit on all training data runs exactly that many iterations.

No MLflow here: `search` hands each finished trial to a callback (train logs it as a nested run).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from jobs.infra.config import TrainConfig, TuneConfig
from jobs.infra.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, VISITOR_ID
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.interactions import (
    InteractionMatrix,
    build_interactions,
    candidate_pool,
    rank_by_popularity,
    to_matrix,
)
from jobs.recommenders.metrics import ranking_metrics


class EmptyTrainingSetError(ValueError):
    """There are no interactions to train on."""


class _Stop(Exception):
    """Raised inside implicit's fit callback to end a trial early."""


@dataclass
class TrialResult:
    number: int
    params: TrainConfig
    best_score: float = float("-inf")
    best_iterations: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    fit_visitors: int = 0


def sample_trials(base: TrainConfig, tune: TuneConfig) -> list[TrainConfig]:
    """`tune.trials` distinct parameter sets: `base` first, then seeded draws from the space.

    Draws repeat rarely in a small space; a repeat is skipped, so fewer trials may come back
    when the space holds fewer distinct combinations than asked for.
    """
    space = tune.space
    rng = random.Random(tune.seed)
    trials, seen = [base], {_key(base)}
    for _ in range(max(tune.trials - 1, 0) * 20):
        if len(trials) >= tune.trials:
            break
        weights = {**base.event_weights}
        for event_type, choices in sorted(space.event_weights.items()):
            weights[event_type] = rng.choice(choices)
        candidate = base.model_copy(
            update={
                "factors": rng.choice(space.factors),
                "regularization": rng.choice(space.regularization),
                "alpha": rng.choice(space.alpha),
                "iterations": rng.choice(space.iterations),
                "weighting": rng.choice(space.weighting),
                "event_weights": weights,
            }
        )
        if _key(candidate) not in seen:
            seen.add(_key(candidate))
            trials.append(candidate)
    return trials


def _key(params: TrainConfig) -> tuple:
    return (
        params.factors,
        params.regularization,
        params.alpha,
        params.iterations,
        params.weighting,
        tuple(sorted(params.event_weights.items())),
    )


def interactions_for(events: pd.DataFrame, params: TrainConfig, as_of) -> pd.DataFrame:
    """The confidence matrix rows for `params`: weights, and decay from `as_of` and saturation
    when configured."""
    decays = params.half_life_days is not None
    return build_interactions(
        events,
        params.event_weights,
        as_of=as_of if decays else None,
        half_life_days=params.half_life_days,
        saturation=params.saturation,
    )


def confidence_matrix(interactions: pd.DataFrame, params: TrainConfig) -> InteractionMatrix:
    """The matrix ALS fits: interactions as a CSR with id mappings, reweighted per `weighting`."""
    data = to_matrix(interactions)
    if params.weighting == "none":
        return data
    from implicit.nearest_neighbours import bm25_weight

    weighted = bm25_weight(data.matrix, K1=params.bm25_k1, B=params.bm25_b).tocsr()
    return replace(data, matrix=weighted.astype(np.float32))


def validation_sample(
    fit_events: pd.DataFrame, validation_events: pd.DataFrame, max_visitors: int
) -> pd.DataFrame:
    """visitor_id, item_id pairs of the validation window for warm visitors (seen in the fit
    part), at most `max_visitors` of them, evenly spaced over the sorted ids (deterministic)."""
    warm_ids = np.intersect1d(fit_events[VISITOR_ID].unique(), validation_events[VISITOR_ID])
    if max_visitors and len(warm_ids) > max_visitors:
        warm_ids = warm_ids[np.linspace(0, len(warm_ids) - 1, max_visitors).astype(int)]
    truth = validation_events[validation_events[VISITOR_ID].isin(warm_ids)]
    return truth[[VISITOR_ID, ITEM_ID]].drop_duplicates().reset_index(drop=True)


def fit_sample(
    fit_events: pd.DataFrame, truth: pd.DataFrame, max_visitors: int, seed: int
) -> pd.DataFrame:
    """The rows of `fit_events` the trials fit on: every visitor of `truth` (they are scored, so
    need factors) and a seeded sample of the others, `max_visitors` in all; all rows when
    `max_visitors` is 0 or not fewer than the visitors there are."""
    ids = np.unique(fit_events[VISITOR_ID].to_numpy())
    if not max_visitors or len(ids) <= max_visitors:
        return fit_events
    scored = np.unique(truth[VISITOR_ID].to_numpy())
    others = np.setdiff1d(ids, scored, assume_unique=True)
    drawn = np.random.default_rng(seed).choice(
        others, max(max_visitors - len(scored), 0), replace=False
    )
    return fit_events[fit_events[VISITOR_ID].isin(np.union1d(scored, drawn))]


# Fewer warm validation visitors than this make a search's winner mostly noise.
MIN_VALIDATION_VISITORS = 500


def tuning_note(
    train_events: pd.DataFrame, validation_cutoff: pd.Timestamp, tune: TuneConfig
) -> str | None:
    """Why a search tonight would be skipped or weak, in words; None when it has enough to go on.

    The search needs warm visitors (history before `validation_cutoff`) in the validation window.
    """
    ts = pd.to_datetime(train_events[EVENT_TS], utc=True)
    before = (ts < validation_cutoff).to_numpy()
    truth = validation_sample(
        train_events[before], train_events[~before], tune.max_validation_visitors
    )
    visitors = truth[VISITOR_ID].nunique()
    if visitors == 0:
        return (
            f"tuning skipped: no visitor of the validation window (from {validation_cutoff}) "
            "has training history before it; train.* is fitted as configured"
        )
    if visitors < min(MIN_VALIDATION_VISITORS, tune.max_validation_visitors):
        return (
            f"tuned on only {visitors} validation visitors (fewer than "
            f"{MIN_VALIDATION_VISITORS}): the chosen parameters are noisy"
        )
    return None


def make_als(params: TrainConfig):
    """An unfitted implicit ALS for `params` (CPU, or CUDA when `train.use_gpu`)."""
    if params.use_gpu:
        import implicit.gpu

        if not implicit.gpu.HAS_CUDA:
            raise RuntimeError("train.use_gpu is set but implicit was built without CUDA")
        from implicit.gpu.als import AlternatingLeastSquares

        threads = {}
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        threads = {"num_threads": params.num_threads}
    return AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.random_state,
        **threads,
    )


def fit_als(data: InteractionMatrix, params: TrainConfig, callback=None):
    """Fit ALS on the confidence matrix; `callback(iteration, seconds, loss)` after each one."""
    if data.matrix.nnz == 0:
        raise EmptyTrainingSetError("the interaction matrix is empty")
    model = make_als(params)
    model.fit(data.matrix, show_progress=False, callback=callback)
    return model


def run_trial(
    number: int,
    params: TrainConfig,
    fit_events: pd.DataFrame,
    truth: pd.DataFrame,
    exclude: pd.DataFrame,
    as_of,
    tune: TuneConfig,
) -> TrialResult:
    """Fit `params` on `fit_events`, scoring NDCG@k on `truth` every `eval_every` iterations."""
    result = TrialResult(number=number, params=params)
    interactions = interactions_for(fit_events, params, as_of)
    data = confidence_matrix(interactions, params)
    result.fit_visitors = len(data.visitor_ids)
    visitors = truth[VISITOR_ID].unique()
    metric = f"ndcg_at_{tune.k}"
    model = make_als(params)
    candidates = candidate_pool(rank_by_popularity(interactions), params)
    started = time.perf_counter()

    def score(iteration: int, _seconds: float, _loss) -> None:
        done = iteration + 1
        if done % tune.eval_every and done != params.iterations:
            return
        recommender = AlsRecommender(model, data.visitor_ids, data.item_ids, [], candidates)
        lists = recommender.recommend(visitors, tune.k, exclude=exclude)
        value = ranking_metrics(lists, truth, (tune.k,))[metric]
        result.curve.append((done, value))
        if value > result.best_score:
            result.best_score, result.best_iterations = value, done
        elif _scores_since_best(result) >= tune.patience:
            result.stopped_early = True
            raise _Stop

    with contextlib.suppress(_Stop):  # early stop: the factors stay as last updated
        model.fit(data.matrix, show_progress=False, callback=score)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _scores_since_best(result: TrialResult) -> int:
    iterations = [i for i, _ in result.curve]
    return len(iterations) - 1 - iterations.index(result.best_iterations)


def search(
    train_events: pd.DataFrame,
    validation_cutoff: pd.Timestamp,
    base: TrainConfig,
    tune: TuneConfig,
    exclude_types: tuple[str, ...],
    on_trial: Callable[[TrialResult], None] = lambda _: None,
) -> tuple[TrainConfig, list[TrialResult]]:
    """The best parameters (iterations = the best trial's best count) and every trial's result.

    train_events: visitor_id, item_id, event_type, event_ts of the training split. With fewer
    than two trials, or no warm visitor in the validation window, returns `base` untouched.
    """
    ts = pd.to_datetime(train_events[EVENT_TS], utc=True)
    before = (ts < validation_cutoff).to_numpy()
    fit_events, validation_events = train_events[before], train_events[~before]
    truth = validation_sample(fit_events, validation_events, tune.max_validation_visitors)
    trials = sample_trials(base, tune)
    if len(trials) < 2 or truth.empty:
        return base, []
    # The trials rank parameters; a sample of visitors ranks them alike at a fraction of the
    # fit (docs/models.md), and the winner is refitted on every visitor.
    fit_events = fit_sample(fit_events, truth, tune.max_fit_visitors, tune.seed)
    exclude = fit_events.loc[fit_events[EVENT_TYPE].isin(exclude_types), [VISITOR_ID, ITEM_ID]]
    as_of = validation_cutoff
    started, results = time.perf_counter(), []
    for number, params in enumerate(trials):
        if results and time.perf_counter() - started > tune.max_seconds:
            break
        result = run_trial(number, params, fit_events, truth, exclude, as_of, tune)
        results.append(result)
        on_trial(result)
    best = max(results, key=lambda r: (r.best_score, -r.number))
    return best.params.model_copy(update={"iterations": best.best_iterations}), results
