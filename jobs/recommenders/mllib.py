"""Spark MLlib's ALS as the train stage's optional engine (`train.engine: spark_mllib`).

For interaction matrices beyond one machine: the fit runs on whatever Spark the session points
at (local[*] or a cluster, by config or spark-submit). It fits the same confidence matrix as the
implicit engine (same weights, decay, saturation and bm25) with `implicitPrefs=True`, the same
rank, alpha, iterations and seed, and hands the factors back as an implicit
`AlternatingLeastSquares` holding them. The model is therefore saved, registered, evaluated,
gated and exported by exactly the code the implicit engine's model goes through.

One difference in meaning: MLlib scales `regParam` by each user's (item's) number of
interactions (ALS-WR), implicit does not, so the same `regularization` regularizes MLlib more
for active visitors and popular items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.infra.config import TrainConfig
from jobs.recommenders.interactions import InteractionMatrix

USER, ITEM, RATING = "user", "item", "rating"


def matrix_frame(data: InteractionMatrix) -> pd.DataFrame:
    """The CSR's positive entries as (user, item, rating) rows: positions in the id mappings.

    bm25 gives an entry weight <= 0 where its item's document frequency reaches the number of
    visitors (only on tiny matrices). MLlib would read such a rating as "not preferred" without
    counting it in the row's regularization, so a row of only such entries makes its normal
    equations singular; implicit gives a zero entry no weight. They are left out.
    """
    coo = data.matrix.tocoo()
    positive = coo.data > 0
    coo.row, coo.col, coo.data = coo.row[positive], coo.col[positive], coo.data[positive]
    order = np.lexsort((coo.col, coo.row))  # sorted: the same input rows on every run
    return pd.DataFrame(
        {
            USER: coo.row[order].astype(np.int32),
            ITEM: coo.col[order].astype(np.int32),
            RATING: coo.data[order].astype(np.float32),
        }
    )


def factors_array(frame: pd.DataFrame, size: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) factor rows as a dense float32 array indexed by id; ids MLlib
    returned no factors for (rows or columns with no positive entry) stay 0."""
    factors = np.zeros((size, rank), dtype=np.float32)
    if len(frame):
        factors[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy())
    return factors


def fit_mllib(data: InteractionMatrix, params: TrainConfig, spark):
    """Fit `pyspark.ml.recommendation.ALS` on the confidence matrix: the Spark ALSModel, whose
    user and item ids are positions in the matrix."""
    from pyspark.ml.recommendation import ALS

    from jobs.recommenders.tuning import EmptyTrainingSetError

    if data.matrix.nnz == 0:
        raise EmptyTrainingSetError("the interaction matrix is empty")
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    ratings = spark.createDataFrame(matrix_frame(data))
    return ALS(
        rank=params.factors,
        maxIter=params.iterations,
        regParam=params.regularization,
        alpha=params.alpha,
        implicitPrefs=True,
        seed=params.random_state,
        userCol=USER,
        itemCol=ITEM,
        ratingCol=RATING,
        numUserBlocks=params.mllib_blocks,
        numItemBlocks=params.mllib_blocks,
    ).fit(ratings)


def fit_mllib_als(data: InteractionMatrix, params: TrainConfig, spark):
    """`fit_mllib`, its factors in an implicit model (so `AlsRecommender` serves it like any
    other)."""
    return as_implicit(fit_mllib(data, params, spark), data, params)


def as_implicit(fitted, data: InteractionMatrix, params: TrainConfig):
    """An implicit CPU ALS model, unfitted, carrying a Spark ALSModel's factors."""
    from jobs.recommenders.tuning import make_als

    users, items = data.matrix.shape
    model = make_als(params)
    model.user_factors = factors_array(fitted.userFactors.toPandas(), users, params.factors)
    model.item_factors = factors_array(fitted.itemFactors.toPandas(), items, params.factors)
    return model
