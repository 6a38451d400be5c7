"""docker/mlflow/create_experiment.py against a real MLflow server, started as compose starts it.

The server runs on 127.0.0.1 with compose's flags and allowed hosts, but with SQLite for its
backend and a folder for its artifact destination instead of PostgreSQL and MinIO: what is checked
is that the experiment is created with the server's proxied artifact root, that the pipeline's
own tracking code then uses it and its artifacts reach the destination, that an experiment kept
elsewhere is refused, and that the server accepts the Host header the pipeline sends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from jobs.tools.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_ROOT / "docker" / "mlflow" / "create_experiment.py"
CONFIG = PROJECT_ROOT / "configs" / "local.yaml"
# Replaced for the local run: where it listens, how many workers, where artifacts go.
LOCAL_FLAGS = ("--host", "--port", "--workers", "--artifacts-destination")

pytestmark = pytest.mark.slow


def _compose_mlflow() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker" / "compose.yaml").read_text())["services"][
        "mlflow"
    ]


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url)
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(tracking URI, artifact destination folder) of a server running compose's command."""
    root = tmp_path_factory.mktemp("mlflow-server")
    destination = root / "artifacts"
    port = free_port()
    service = _compose_mlflow()
    command = service["command"]
    assert command[:2] == ["mlflow", "server"]
    flags = [f for f in command[2:] if not f.startswith(LOCAL_FLAGS)]
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_SERVER_ALLOWED_HOSTS": service["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"],
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *flags]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        + ["--artifacts-destination", destination.as_uri()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "server.log").open("w"),
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"{uri}/health") == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri, destination
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(code: str, tracking_uri: str, tmp_path: Path, experiment: str):
    """Run `code` in a fresh interpreter (MLflow keeps global state) with the pipeline's settings.

    `create_experiment(argv)` there runs the script's main; its SystemExit becomes the exit code.
    """
    prelude = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('create_experiment', {str(SCRIPT)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"create_experiment = lambda: module.main(['--config', {str(CONFIG)!r}])\n"
    )
    env = {
        **os.environ,
        "RECS__MLFLOW__TRACKING_URI": tracking_uri,
        "RECS__MLFLOW__EXPERIMENT": experiment,
        "RECS__MLFLOW__ARTIFACT_ROOT": str(tmp_path / "client-artifacts"),
    }
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_experiment_gets_the_proxied_root_and_the_pipeline_logs_there(server, tmp_path):
    uri, destination = server
    # Created once, found the second time; then the project's own tracking code uses it, and its
    # artifacts reach the server's store rather than the client's artifact_root.
    code = (
        "create_experiment()\n"
        "create_experiment()\n"
        "import mlflow\n"
        "from jobs.infra.config import load_config\n"
        "from jobs.infra.tracking import init_tracking\n"
        f"init_tracking(load_config({str(CONFIG)!r}))\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_text('probe', 'probe.txt')\n"
    )
    result = _run(code, uri, tmp_path, "recs-proxied")
    assert result.returncode == 0, result.stderr
    created, found = result.stdout.splitlines()[:2]
    assert "created" in created and "mlflow-artifacts:" in created
    assert "exists" in found
    assert [p.read_text() for p in destination.rglob("probe.txt")] == ["probe"]
    assert not (tmp_path / "client-artifacts").exists()


def test_an_experiment_kept_elsewhere_is_refused(server, tmp_path):
    uri, _ = server
    # As tracking.py would have created it, had a run come before mlflow-init.
    code = (
        "import mlflow\n"
        f"mlflow.MlflowClient({uri!r}).create_experiment("
        f"'recs-local', artifact_location={(tmp_path / 'elsewhere').as_uri()!r})\n"
        "create_experiment()\n"
    )
    result = _run(code, uri, tmp_path, "recs-local")
    assert result.returncode != 0
    assert "not in the server's store" in result.stderr


def test_server_accepts_the_host_the_pipeline_uses_and_no_other(server):
    uri, _ = server
    api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api, host="mlflow:5000") == 200
    assert _get(api, host="attacker.example:5000") in (400, 403)
