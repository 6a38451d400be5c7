"""The local stack: Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor), the
MLflow server on the jobs' own store, the S3 endpoint, and a Spark Connect server the night's
Spark stages share (jobs/tools/spark_connect.py), all on 127.0.0.1.

`up` prepares the synthetic shop when needed (generated, landed as daily arrivals for the last
`--days` days, the history before them loaded once), starts every process in its own process
group, waits until each answers, and prints the URLs and how to log in. PIDs go to
.local/stack/pids.json. `down` stops each process group by PID (SIGTERM, then SIGKILL after a
grace period) and checks that none is left.

    python -m jobs.tools.stack up --config configs/local.yaml
    python -m jobs.tools.stack status   # each service's processes and resident memory
    python -m jobs.tools.stack down
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

from jobs.infra.config import Config, load_config
from jobs.tools.demo import DAG_ID, PROJECT, _run, airflow_env, prepare_shop
from jobs.tools.processes import group_members, group_rss_mb, start_group, stop_group
from jobs.tools.s3_server import LOCAL_CREDENTIALS
from jobs.tools.spark_connect import TOKEN_ENV, answers, local_port, new_token, server_command
from jobs.tools.spark_connect import server_env as connect_env

STATE = PROJECT / ".local" / "stack"
PIDS = STATE / "pids.json"
AIRFLOW_PORT, MLFLOW_PORT = 8080, 5000
CONNECT_PORT = 15002  # Spark Connect's own default; the config's spark.remote wins
USER, PASSWORD = "admin", "admin"
# Stop order: what schedules work first, the stores it writes to last (S3 saves on SIGTERM).
STOP_ORDER = (
    "scheduler",
    "triggerer",
    "dag-processor",
    "api-server",
    "spark-connect",
    "mlflow",
    "s3",
)


class StackError(RuntimeError):
    """A service did not come up, or a process survived `down`."""


def connect_url(cfg: Config) -> str:
    """Where the stack's Spark Connect server listens: the config's spark.remote (which must be
    sc://localhost:PORT, local_port), else sc://localhost:CONNECT_PORT."""
    return cfg.spark.remote or f"sc://localhost:{CONNECT_PORT}"


def commands(cfg: Config, config_path: Path) -> dict[str, list[str]]:
    """The command line of each service."""
    return {
        "s3": [sys.executable, "-m", "jobs.tools.s3_server", "--config", str(config_path)],
        "spark-connect": server_command(cfg.spark, local_port(connect_url(cfg)), None),
        "mlflow": [
            "mlflow",
            "server",
            "--backend-store-uri",
            cfg.mlflow.tracking_uri,
            "--default-artifact-root",
            cfg.mlflow.artifact_root.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(MLFLOW_PORT),
            "--workers",
            "1",
        ],
        "api-server": ["airflow", "api-server", "-H", "127.0.0.1", "-p", str(AIRFLOW_PORT)],
        "scheduler": ["airflow", "scheduler"],
        "dag-processor": ["airflow", "dag-processor"],
        "triggerer": ["airflow", "triggerer"],
    }


def stack_env(cfg: Config, config_path: Path, airflow_home: Path) -> dict[str, str]:
    """The demo's Airflow environment, plus what a long-running local deployment needs."""
    base = f"http://127.0.0.1:{AIRFLOW_PORT}"
    return {
        **airflow_env(cfg, config_path, airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # 2 cores: one task at a time besides the scheduler's own work.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **LOCAL_CREDENTIALS,
    }


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(what: str, ready, proc: subprocess.Popen | None, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {seconds:.0f}s; see {log}")
        time.sleep(1)


def airflow_health() -> dict:
    url = f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/monitor/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _airflow_healthy() -> bool:
    try:
        health = airflow_health()
    except (urllib.error.URLError, OSError, ValueError):
        return False
    parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return all((health.get(p) or {}).get("status") == "healthy" for p in parts)


def token() -> str:
    """A JWT for Airflow's REST API v2 (the simple auth manager's admin user)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{AIRFLOW_PORT}/auth/token",
        data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


def api(method: str, path: str, body: dict | None = None) -> dict:
    """Call Airflow's REST API v2 as the admin user."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/{path.lstrip('/')}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token()}"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def _dag_listed() -> bool:
    try:
        return api("GET", f"dags/{DAG_ID}").get("dag_id") == DAG_ID
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return False


def up(config_path: Path, scale: float, seed: int, last_day: date, days: int) -> dict[str, int]:
    if PIDS.exists() and any(group_members(pid) for pid in json.loads(PIDS.read_text()).values()):
        raise StackError(f"the stack is already running ({PIDS}); `make down` first")
    cfg = load_config(config_path)
    connect_port = local_port(connect_url(cfg))
    # A server already there would pass the readiness check below and refuse the stack's token.
    if answers(connect_port):
        raise StackError(
            f"port {connect_port} is in use: stop what listens there (another Spark Connect "
            "server?) or set spark.remote to a free sc://localhost:PORT"
        )
    local = cfg.paths.lake.parent
    logs = local / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    airflow_home = local / "airflow"
    env = stack_env(cfg, config_path, airflow_home)
    started = time.monotonic()
    prepare_shop(cfg, config_path, scale, seed, last_day - timedelta(days=days - 1), env, logs)
    print("[up] preparing Airflow's metadata database")
    _run(["airflow", "db", "migrate"], env, logs / "airflow-db.log")
    (airflow_home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    cfg.mlflow.artifact_root.mkdir(parents=True, exist_ok=True)

    STATE.mkdir(parents=True, exist_ok=True)
    # The services (the DAG's parse, its tasks) see the stack's Connect server as spark.remote,
    # so the Spark stages run as its clients; a fresh token per `up`, never on a command line.
    env = {**env, "RECS__SPARK__REMOTE": connect_url(cfg), TOKEN_ENV: new_token(STATE)}
    pids: dict[str, int] = {}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in commands(cfg, config_path).items():
            service_env = (
                connect_env(cfg.spark, env[TOKEN_ENV], env) if name == "spark-connect" else env
            )
            procs[name] = start_group(cmd, service_env, PROJECT, logs / f"stack-{name}.log")
            pids[name] = procs[name].pid
            PIDS.write_text(json.dumps(pids, indent=2))
        s3_log = logs / "stack-s3.log"
        _wait("S3 endpoint", lambda: "up, bucket" in s3_log.read_text(), procs["s3"], s3_log, 60)
        connect_log = logs / "stack-spark-connect.log"
        ready = lambda: answers(connect_port)  # noqa: E731
        _wait("Spark Connect", ready, procs["spark-connect"], connect_log, 120)
        mlflow_log = logs / "stack-mlflow.log"
        mlflow_health = f"http://127.0.0.1:{MLFLOW_PORT}/health"
        _wait("MLflow", lambda: _http_ok(mlflow_health), procs["mlflow"], mlflow_log, 120)
        api_log = logs / "stack-api-server.log"
        _wait("Airflow", _airflow_healthy, procs["api-server"], api_log, 240)
        processor_log = logs / "stack-dag-processor.log"
        _wait(f"the {DAG_ID} DAG", _dag_listed, procs["dag-processor"], processor_log, 180)
    except BaseException:
        down()
        raise
    first = last_day - timedelta(days=days - 1)
    print(f"""[up] the stack is up in {time.monotonic() - started:.0f}s (PIDs in {PIDS}):
  Airflow  http://127.0.0.1:{AIRFLOW_PORT}   user {USER}, password {PASSWORD}
  MLflow   http://127.0.0.1:{MLFLOW_PORT}
  S3       {cfg.storage.endpoint_url}   bucket {cfg.storage.bucket} (any access key)
  Spark    {connect_url(cfg)}   Spark Connect: the night's Spark stages share this driver
Landed days with data: {first} .. {last_day}. Trigger {DAG_ID} for one of them, or backfill:
  .venv/bin/airflow backfill create --dag-id {DAG_ID} --from-date {first} --to-date {last_day}
  (with AIRFLOW_HOME={airflow_home}), or from the UI: {DAG_ID} -> Trigger / Backfill.
The export reaches S3 through the Airflow connection {cfg.storage.aws_conn_id} (environment).
Unpause example_reload_on_publish to see a DAG run on each publication (the published Assets).
After a run, `make screenshots` looks at both UIs in headless Chromium.
Logs: {logs}/stack-*.log.  Stop everything: make down""")
    return pids


def down() -> list[str]:
    """Stop every process group in pids.json; returns the names that had to be killed."""
    if not PIDS.exists():
        print("[down] nothing to stop")
        return []
    pids = json.loads(PIDS.read_text())
    killed = []
    for name in sorted(pids, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1):
        if stop_group(pids[name], timeout=60):
            killed.append(name)
    left = [name for name, pid in pids.items() if group_members(pid)]
    if left:
        raise StackError(f"still running after SIGKILL: {left}")
    PIDS.unlink()
    print(f"[down] stopped {', '.join(pids)}" + (f" (killed: {killed})" if killed else ""))
    return killed


def status() -> dict[str, dict]:
    """Each service of the running stack: PID, live processes, resident memory (MB)."""
    if not PIDS.exists():
        return {}
    return {
        name: {"pid": pid, "processes": len(group_members(pid)), "rss_mb": group_rss_mb(pid)}
        for name, pid in json.loads(PIDS.read_text()).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "local.yaml")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--last-day", type=date.fromisoformat, default=date(2015, 9, 18))
    parser.add_argument(
        "--days", type=int, default=3, help="landed days with data, up to --last-day"
    )
    args = parser.parse_args(argv)
    if args.action == "down":
        down()
        return 0
    if args.action == "status":
        services = status()
        for name, figures in services.items():
            print(
                f"{name:14} pid {figures['pid']:>7}  processes {figures['processes']:>3}  "
                f"rss {figures['rss_mb']:>8.1f} MB"
            )
        total = sum(f["rss_mb"] for f in services.values())
        print(f"{'total':14} rss {total:.1f} MB" if services else "[status] not running")
        return 0
    up(args.config.resolve(), args.scale, args.seed, args.last_day, args.days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
