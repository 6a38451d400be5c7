"""The logged model is self-contained: it loads and recommends where `jobs` is not importable.

The champion is registered in a SQLite tracking store with a file artifact root, then loaded by
alias in a fresh interpreter whose working directory and `sys.path` exclude the repository (the
venv installs the project editable: the script drops that entry and checks `jobs` is gone).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jobs.recommenders.als import AlsRecommender
from jobs.recommenders.pyfunc import SHIPPED, log_model
from jobs.recommenders.repeat import RepeatRecommender

# Visitor 1 has a history (11 weighs more than 10); 99 is unknown: popularity only.
HISTORY = pd.DataFrame(
    {"visitor_id": [1, 1, 2], "item_id": [10, 11, 12], "interaction_weight": [1.0, 3.0, 2.0]}
)
POPULAR = np.array([12, 10, 13, 11])

# Runs in the fresh interpreter: argv = tracking URI, then one model name per model to load.
LOAD_OUTSIDE_THE_REPO = """
import importlib.util, json, sys
from pathlib import Path

# The editable install puts the repository on sys.path; drop it, so only the model's code serves.
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "jobs" / "__init__.py").exists()]
assert importlib.util.find_spec("jobs") is None, "jobs is importable before the model loads"

import mlflow
import pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
out = {}
for name in sys.argv[2:]:
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    lists = model.predict(pd.DataFrame({"visitor_id": [99, 1]}), params={"n": 3})
    out[name] = lists[["visitor_id", "item_id", "source"]].values.tolist()
import jobs
out["jobs"] = jobs.__file__
print(json.dumps(out))
"""


def _register(recommender, name: str, tmp_path: Path) -> None:
    client = mlflow.MlflowClient()
    with mlflow.start_run():
        info = log_model(recommender, tmp_path / "saved" / name, name)
    client.set_registered_model_alias(name, "champion", info.registered_model_version)


@pytest.fixture()
def registry(tmp_path):
    """A SQLite tracking store and a file artifact root in tmp_path; the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("pyfunc", (tmp_path / "artifacts").as_uri())
    )
    yield uri
    mlflow.set_tracking_uri(None)


def _tiny_als() -> AlsRecommender:
    from implicit.cpu.als import AlternatingLeastSquares

    # Visitors 0-1 like items 0-1, visitors 2-3 like items 2-3.
    liked = sp.csr_matrix(np.kron(np.eye(2), np.ones((2, 2))))
    model = AlternatingLeastSquares(factors=2, iterations=5, random_state=0, num_threads=1)
    model.fit(liked, show_progress=False)
    return AlsRecommender(model, np.array([1, 2, 3, 4]), np.array([10, 11, 12, 13]), POPULAR)


def test_the_champion_loads_and_recommends_where_the_repo_is_not_importable(registry, tmp_path):
    als = _tiny_als()
    _register(RepeatRecommender(HISTORY, POPULAR), "recs-repeat", tmp_path)
    _register(als, "recs-als", tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    fresh = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_OUTSIDE_THE_REPO, registry, "recs-repeat", "recs-als"],
        cwd=outside,
        capture_output=True,
        text=True,
    )

    assert fresh.returncode == 0, fresh.stderr[-3000:]
    served = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert served["recs-repeat"] == [
        [1, 11, "repeat"],
        [1, 10, "repeat"],
        [1, 12, "popular"],
        [99, 12, "popular"],
        [99, 10, "popular"],
        [99, 13, "popular"],
    ]
    here = als.recommend(np.array([99, 1]), 3)[["visitor_id", "item_id", "source"]]
    assert served["recs-als"] == here.values.tolist()
    assert [row[2] for row in served["recs-als"]] == ["als"] * 3 + ["popular"] * 3
    # The code that served came from the model's own copy, not from this checkout.
    assert "/code/jobs/" in served["jobs"] and not served["jobs"].startswith(
        str(Path(__file__).parents[3])
    )


def test_a_logged_model_ships_only_the_serving_code_and_pinned_requirements(registry, tmp_path):
    _register(RepeatRecommender(HISTORY, POPULAR), "recs", tmp_path)
    (tmp_path / "downloaded").mkdir()
    model = Path(
        mlflow.artifacts.download_artifacts(
            "models:/recs@champion", dst_path=tmp_path / "downloaded"
        )
    )

    shipped = {p.relative_to(model / "code" / "jobs").as_posix() for p in model.rglob("*.py")}
    assert shipped == set(SHIPPED)
    requirements = (model / "requirements.txt").read_text().split()
    assert [r.split("==")[0] for r in requirements] == [
        "mlflow",
        "cloudpickle",
        "implicit",
        "numpy",
        "pandas",
        "pyarrow",
        "scipy",
    ]
    assert not (model / "uv.lock").exists()
    example = json.loads((model / "input_example.json").read_text())
    assert example == {"columns": ["visitor_id"], "data": [[-1]]}  # no real visitor
    signature = mlflow.models.get_model_info("models:/recs@champion").signature
    assert signature.inputs.input_names() == ["visitor_id"]
    assert signature.params.to_dict() == [
        {"name": "n", "type": "long", "default": 10, "shape": None}
    ]
