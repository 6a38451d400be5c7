"""The MLflow pyfunc wrapper of a saved recommender, whichever family it is.

A logged model is self-contained: it carries the code it unpickles and runs (`SHIPPED`, copied
under the model's `code/`), pinned pip requirements, a signature and an input example, so
`mlflow.pyfunc.load_model("models:/NAME@champion")` works in any project or serving container
that installs `requirements.txt`, without this repository.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import types
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from jobs.infra.schemas import VISITOR_ID
from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.base import read_family
from jobs.recommenders.ease import EaseRecommender
from jobs.recommenders.neighbours import ItemKnnRecommender
from jobs.recommenders.popularity import PopularityRecommender, RecentPopularityRecommender
from jobs.recommenders.repeat import RepeatRecommender

# The families the registry can hold as champion: each saves itself to a folder and loads back.
FAMILIES = {
    cls.family: cls
    for cls in (
        AlsRecommender,
        PopularityRecommender,
        RecentPopularityRecommender,
        RepeatRecommender,
        ItemKnnRecommender,
        EaseRecommender,
    )
}

# The modules a loaded model imports, relative to the `jobs` package: the wrapper, the families
# and what they import. None of them imports pyspark or the platform's config at load time.
SHIPPED = (
    "__init__.py",
    "infra/__init__.py",
    "infra/schemas.py",
    "recommenders/__init__.py",
    "recommenders/pyfunc.py",
    "recommenders/base.py",
    "recommenders/interactions.py",
    "recommenders/als.py",
    "recommenders/ease.py",
    "recommenders/neighbours.py",
    "recommenders/popularity.py",
    "recommenders/repeat.py",
)
# What that code imports at serving time (pyarrow: the repeat family's parquet history).
SERVING_PACKAGES = ("mlflow", "cloudpickle", "implicit", "numpy", "pandas", "pyarrow", "scipy")


def load_recommender(uri: str):
    """The recommender inside a logged pyfunc model (e.g. ``models:/NAME/3``), any family."""
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().recommender


def load_saved(directory: Path):
    """The recommender saved in `directory`, by the family its meta.json names."""
    family = read_family(directory)
    if family not in FAMILIES:
        raise ValueError(f"{directory}: unknown model family {family!r}; known {list(FAMILIES)}")
    return FAMILIES[family].load(Path(directory))


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: input a frame with `visitor_id`; output top-`n` lists (params {"n": 10})."""

    def load_context(self, context):
        self.recommender = load_saved(Path(context.artifacts["recommender"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        n = int((params or {}).get("n", 10))
        return self.recommender.recommend(model_input[VISITOR_ID].to_numpy(), n)


def serving_requirements() -> list[str]:
    """The pip requirements of a logged model: `SERVING_PACKAGES` pinned to the versions here."""
    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def stage_code(destination: Path) -> Path:
    """Copy the `SHIPPED` modules into `destination`/jobs; returns that folder (a code path)."""
    package = Path(__file__).resolve().parents[1]
    for relative in SHIPPED:
        target = destination / "jobs" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / relative, target)
    return destination / "jobs"


UNKNOWN_VISITOR = -1


def log_model(recommender, model_dir: Path, model_name: str):
    """Save `recommender` to `model_dir`, log it to the active MLflow run as a self-contained
    pyfunc model (code, requirements, signature, input example), and register it as a new
    version of `model_name`."""
    from mlflow.models import infer_signature

    recommender.save(model_dir)
    # An id no visitor has (shop and hashed ids are >= 0): the example then names no real
    # visitor, so erasure never has to reach into it, and shows the fallback every model serves.
    example = pd.DataFrame({VISITOR_ID: pd.Series([UNKNOWN_VISITOR], dtype="int64")})
    signature = infer_signature(
        example, recommender.recommend(example[VISITOR_ID].to_numpy(), 3), params={"n": 10}
    )
    with tempfile.TemporaryDirectory() as staging:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=RecommenderPyfunc(),
            artifacts={"recommender": str(model_dir)},
            code_paths=[str(stage_code(Path(staging)))],
            signature=signature,
            input_example=example,
            # Pinned here rather than inferred: MLflow's inference exports the whole uv.lock
            # (Airflow, Spark) when the working directory is the repo, and otherwise loads the
            # model in a subprocess per version logged. The staging folder holds no uv project,
            # so no uv.lock is copied into the model either.
            pip_requirements=serving_requirements(),
            uv_project_path=staging,
            registered_model_name=model_name,
        )


def _answer_to_the_old_module_path() -> None:
    # Versions registered before the package was arranged by role pickled this class as
    # jobs.core.model.RecommenderPyfunc; the name resolves here, so those champions still load.
    old = sys.modules.setdefault("jobs.core.model", types.ModuleType("jobs.core.model"))
    old.RecommenderPyfunc = RecommenderPyfunc
    sys.modules.setdefault("jobs.core", types.ModuleType("jobs.core")).model = old


_answer_to_the_old_module_path()
