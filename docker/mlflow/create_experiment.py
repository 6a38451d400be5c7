"""Create the pipeline's MLflow experiment on the tracking server, so its artifacts go to MinIO.

jobs/infra/tracking.py creates a missing experiment with the config's `mlflow.artifact_root`, a
local folder of whichever container runs first. Created here first, through the server and
without an artifact location, the experiment gets the server's proxied root
(`mlflow-artifacts:/...`, stored under `--artifacts-destination`, s3://mlflow/ in MinIO), and
tracking.py then finds and uses it. An experiment that already exists with another location is
an error, not a warning: its artifacts would be out of the server's reach.

    python docker/mlflow/create_experiment.py --config configs/local.yaml

The config's RECS__ environment overrides apply (RECS__MLFLOW__TRACKING_URI=http://mlflow:5000).
"""

from __future__ import annotations

import argparse

PROXIED_SCHEME = "mlflow-artifacts:"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config file, e.g. configs/local.yaml")
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    from jobs.infra.config import load_config

    cfg = load_config(args.config)
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        client.create_experiment(cfg.mlflow.experiment)
        experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
        action = "created"
    else:
        action = "exists"
    location = experiment.artifact_location
    if not location.startswith(PROXIED_SCHEME):
        raise SystemExit(
            f"experiment {cfg.mlflow.experiment!r} on {cfg.mlflow.tracking_uri} keeps its "
            f"artifacts at {location}, not in the server's store ({PROXIED_SCHEME}); is the server "
            "running with --serve-artifacts? Rename or delete that experiment, then rerun "
            "mlflow-init."
        )
    print(
        f"experiment {cfg.mlflow.experiment!r} {action}: id {experiment.experiment_id}, {location}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
