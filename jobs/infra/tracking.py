"""MLflow plumbing: one experiment, one registered model, aliases `challenger` and `champion`."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from jobs.infra.config import Config

CHAMPION = "champion"
CHALLENGER = "challenger"


def init_tracking(cfg: Config) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing).

    The artifact location is set explicitly: MLflow's default is relative to the working dir.
    """
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_registry_uri(cfg.mlflow.tracking_uri)
    experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        cfg.mlflow.artifact_root.mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow.create_experiment(
            cfg.mlflow.experiment, artifact_location=cfg.mlflow.artifact_root.as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The project's git commit (with "-dirty" for uncommitted changes), or "unknown"."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The model version holding `alias`, or None when no version holds it yet."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are files for MLflow, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
