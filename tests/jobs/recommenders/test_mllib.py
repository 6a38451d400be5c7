"""recommenders/mllib.py: MLlib ALS fits the pipeline's matrix and serves as an implicit model."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from jobs.infra.config import TrainConfig
from jobs.infra.paths import Lake
from jobs.infra.schemas import INTERACTION_WEIGHT, ITEM_ID, RANK, VISITOR_ID
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.interactions import to_matrix
from jobs.recommenders.mllib import factors_array, fit_mllib_als, matrix_frame

PARAMS = TrainConfig(
    factors=2,
    regularization=0.01,
    alpha=10.0,
    iterations=8,
    num_threads=1,
    event_weights={"view": 1.0},
    engine="spark_mllib",
    mllib_blocks=1,
)


def _two_tastes() -> pd.DataFrame:
    """Visitors 100-109 viewed items 1-5 of their group (all but one each), 200-209 items 11-15."""
    rows = []
    for v in range(10):
        for group, visitor in ((0, 100 + v), (10, 200 + v)):
            rows += [(visitor, group + i, 1.0) for i in range(1, 6) if i != 1 + v % 5]
    return pd.DataFrame(rows, columns=[VISITOR_ID, ITEM_ID, INTERACTION_WEIGHT])


def test_matrix_frame_lists_the_non_zeros_by_position_sorted():
    data = to_matrix(
        pd.DataFrame(
            {
                VISITOR_ID: [7, 3, 7, 9],
                ITEM_ID: [50, 50, 40, 40],
                INTERACTION_WEIGHT: [2.0, 1.0, 4.0, 0.0],
            }
        )
    )
    assert data.matrix.nnz == 4  # the zero is stored, as bm25 leaves its zeros
    frame = matrix_frame(data)
    # visitors [3, 7, 9] and items [40, 50] in sorted order: positions, not ids; no zero rating.
    assert frame.to_dict("list") == {
        "user": [0, 1, 1],
        "item": [1, 0, 1],
        "rating": [1.0, 4.0, 2.0],
    }


def test_factors_array_places_rows_by_id_and_zero_fills_missing_ids():
    frame = pd.DataFrame({"id": [2, 0], "features": [[1.0, 2.0], [3.0, 4.0]]})
    assert factors_array(frame, 3, 2).tolist() == [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]


@pytest.mark.slow
def test_mllib_model_recommends_the_visitors_own_group_through_the_shared_recommender(spark):
    interactions = _two_tastes()
    data = to_matrix(interactions)
    model = fit_mllib_als(data, PARAMS, spark)
    assert model.user_factors.shape == (20, 2)
    assert model.item_factors.shape == (10, 2)
    assert model.user_factors.dtype == np.float32

    recommender = AlsRecommender(model, data.visitor_ids, data.item_ids, np.array([1, 11]))
    exclude = interactions[[VISITOR_ID, ITEM_ID]]
    top = recommender.recommend(data.visitor_ids, 1, exclude=exclude)
    top = top[top[RANK] == 1].set_index(VISITOR_ID)[ITEM_ID]
    # The one item of their group each visitor has not seen comes first.
    expected = {100 + v: 1 + v % 5 for v in range(10)} | {200 + v: 11 + v % 5 for v in range(10)}
    assert top.to_dict() == expected


@pytest.mark.slow
def test_train_fits_on_the_configured_engine(spark, cfg, tmp_path):
    from jobs.train import _fit, _tuned_params

    cfg = cfg.model_copy(update={"train": PARAMS})
    cutoff = pd.Timestamp("2015-09-01", tz="UTC")
    tuned = _tuned_params(cfg, Lake(tmp_path), date(2015, 9, 18), pd.DataFrame(), cutoff)
    assert tuned == (PARAMS, [], None, None)  # no tuning (nor a note) on the Spark engine
    model = _fit(to_matrix(_two_tastes()), tuned[0], cfg)
    assert model.item_factors.shape == (10, 2)


def test_gpu_is_refused_with_the_spark_engine():
    with pytest.raises(ValidationError, match="use_gpu applies to the implicit engine only"):
        TrainConfig.model_validate({**PARAMS.model_dump(), "use_gpu": True})
