"""The MLflow pyfunc wrapper of a saved recommender."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from jobs.infra.schemas import (
    VISITOR_ID,
)
from jobs.recommenders.als import AlsRecommender


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: input a frame with `visitor_id`; output top-`n` lists (params {"n": 10})."""

    def load_context(self, context):
        self.recommender = AlsRecommender.load(Path(context.artifacts["recommender"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        n = int((params or {}).get("n", 10))
        return self.recommender.recommend(model_input[VISITOR_ID].to_numpy(), n)
