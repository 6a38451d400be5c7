"""The demo: a synthetic shop, the local S3 endpoint, and one nightly run through Airflow.

Generates the shop (once per scale and seed), lands it as daily arrivals from DATE and loads the
history before DATE once (jobs/shop/land.py, then ingest for DATE - 1), starts the S3 endpoint,
runs
``airflow dags test nightly_recs DATE`` in a private AIRFLOW_HOME under .local/, prints the run's
summary and the published latest.json, and stops what it started, whatever happens.

    python -m jobs.tools.demo --config configs/local.yaml --scale 0.05 --date 2015-09-18
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from jobs.infra.config import Config, load_config
from jobs.infra.paths import Lake
from jobs.shop.land import land
from jobs.tools.s3_server import LOCAL_CREDENTIALS

PROJECT = Path(__file__).resolve().parents[2]
DAG_ID = "nightly_recs"


def airflow_env(cfg: Config, config_path: Path, airflow_home: Path) -> dict[str, str]:
    """Environment for Airflow and the tasks it starts: private home, SQLite, local Spark."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": cfg.spark.master, "extra": {"deploy-mode": "client"}}
        ),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "OPENBLAS_NUM_THREADS": "1",
        # The DAG reads its schedule from this config when Airflow parses it.
        "RECS_CONFIG": str(config_path),
    }
    if cfg.storage.aws_conn_id:
        # The export under Airflow takes S3 from this connection; the local endpoint takes any keys.
        env[f"AIRFLOW_CONN_{cfg.storage.aws_conn_id.upper()}"] = local_s3_connection(cfg)
    for key, value in LOCAL_CREDENTIALS.items():
        env.setdefault(key, value)
    return env


def local_s3_connection(cfg: Config) -> str:
    """The Airflow `aws` connection to the local S3 endpoint, as AIRFLOW_CONN_<ID> JSON."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "password": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "extra": {"endpoint_url": cfg.storage.endpoint_url, "region_name": cfg.storage.region},
        }
    )


@contextmanager
def s3_endpoint(config_path: Path, log_path: Path, env: dict[str, str] | None = None):
    """Run the local S3 endpoint for the duration of the block; SIGTERM saves its objects."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.tools.s3_server", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while "up, bucket" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the S3 endpoint did not start; see {log_path}")
            time.sleep(0.3)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# What each stage's report says it did, for the progress lines: report key path, label.
STAGE_FACTS = {
    "ingest": (("accepted",), "rows accepted"),
    "clean": (("rows_out",), "rows kept"),
    "split": (("train", "rows"), "training rows"),
    "train": (("visitors",), "visitors modelled"),
    "export": (("recommendations", "users"), "visitors' lists published"),
}


def stage_fact(report: dict, stage: str) -> str | None:
    """The report's headline figure for `stage`, e.g. '12,345 rows accepted'; None if absent."""
    if stage not in STAGE_FACTS:
        return None
    path, label = STAGE_FACTS[stage]
    value: object = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return f"{value:,} {label}" if isinstance(value, int) else None


def task_changes(db: Path, dag_id: str, seen: dict[str, str]) -> list[tuple[str, str, float]]:
    """(task, state, seconds) for each task of the newest run of `dag_id` that started and whose
    state changed since `seen` (task -> state, updated in place), in start order; reads
    Airflow's SQLite DB. Queued and scheduled are left out: a person watches runs and ends."""
    import sqlite3

    if not db.is_file():
        return []
    query = (
        "SELECT ti.task_id, ti.state, ti.duration FROM task_instance ti "
        "WHERE ti.dag_id = ? AND ti.run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? "
        "ORDER BY id DESC LIMIT 1) AND ti.state IN ('running', 'success', 'failed', 'skipped', "
        "'upstream_failed', 'up_for_retry') ORDER BY ti.start_date, ti.task_id"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(query, (dag_id, dag_id)).fetchall()
    except sqlite3.Error:  # the database is being migrated or written: ask again later
        return []
    changed = []
    for task, state, seconds in rows:
        if seen.get(task) != state:
            seen[task] = state
            changed.append((task, state, seconds or 0.0))
    return changed


def _watch_dag(cmd: list[str], env: dict[str, str], log_path: Path, lake: Lake, day: date):
    """Run `airflow dags test`, printing each task as it starts and ends with its duration and
    headline figure; on failure, the log's last lines."""
    db, seen = Path(env["AIRFLOW_HOME"]) / "airflow.db", {}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
        while True:
            finished = proc.poll() is not None
            for task, state, seconds in task_changes(db, DAG_ID, seen):
                line = f"[demo] {time.strftime('%H:%M:%S')} {task}: {state}"
                if state in ("success", "failed", "skipped", "upstream_failed"):
                    line += f" after {seconds:.0f} s"
                report = lake.stage_report(day, task)
                if state == "success" and report.is_file():
                    fact = stage_fact(json.loads(report.read_text()), task)
                    line += f", {fact}" if fact else ""
                print(line, flush=True)
            if finished:
                break
            time.sleep(2)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise SystemExit(
            f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log_path}:\n{tail}"
        )


def _run(cmd: list[str], env: dict[str, str], log_path: Path) -> None:
    with log_path.open("w") as log:
        done = subprocess.run(cmd, env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise SystemExit(
            f"{' '.join(cmd)} failed (exit {done.returncode}); log {log_path}:\n{tail}"
        )


def prepare_shop(
    cfg: Config,
    config_path: Path,
    scale: float,
    seed: int,
    first_day: date,
    env: dict[str, str],
    logs: Path,
) -> None:
    """Generate the synthetic shop (once per scale and seed), land it as daily arrivals from
    `first_day` on, and load the history before `first_day` once (bronze dt=first_day - 1)."""
    marker = cfg.paths.raw / "ground_truth" / "summary.json"
    wanted = {"scale": scale, "seed": seed}
    generated = (
        not marker.is_file() or {k: json.loads(marker.read_text()).get(k) for k in wanted} != wanted
    )
    if generated:
        print(f"[demo] generating the synthetic shop (scale {scale}) into {cfg.paths.raw}")
        _run(
            [sys.executable, "-m", "jobs.shop.generate", "--out", str(cfg.paths.raw)]
            + ["--scale", str(scale), "--seed", str(seed)],
            env,
            logs / "generate.log",
        )
    history = first_day - timedelta(days=1)
    history_partition = Lake(cfg.paths.lake).partition("bronze", "events", history)
    if generated or not (history_partition / "_SUCCESS").exists():
        landing = cfg.paths.landing / cfg.ingest.sources[0].name
        print(
            f"[demo] landing the export in {landing} as daily arrivals from {first_day}, and "
            f"loading the history before it once (bronze dt={history})"
        )
        land(cfg.paths.raw, landing, first_day)
        _run(
            [sys.executable, "-m", "jobs.ingest", "--run-date", history.isoformat()]
            + ["--config", str(config_path)],
            env,
            logs / "ingest-history.log",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the nightly DAG once on a synthetic shop.")
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2015, 9, 18))
    args = parser.parse_args(argv)
    config_path = Path(args.config).resolve()
    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    cfg = load_config(config_path)
    local = cfg.paths.lake.parent
    logs = local / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = airflow_env(cfg, config_path, local / "airflow")
    started = time.monotonic()

    prepare_shop(cfg, config_path, args.scale, args.seed, args.date, env, logs)
    print("[demo] preparing Airflow's metadata database")
    _run(["airflow", "db", "migrate"], env, logs / "airflow-db.log")
    with s3_endpoint(config_path, logs / "s3.log"):
        print(
            f"[demo] S3 endpoint up at {cfg.storage.endpoint_url}; running {DAG_ID} for "
            f"{args.date} through Airflow (log: {logs / 'dag.log'})"
        )
        _watch_dag(
            ["airflow", "dags", "test", DAG_ID, args.date.isoformat()],
            env,
            logs / "dag.log",
            Lake(cfg.paths.lake),
            args.date,
        )
        summary = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobs.summarize",
                "--run-date",
                args.date.isoformat(),
                "--config",
                str(config_path),
            ],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        )
        print("\n".join(summary.stdout.splitlines()[-20:-1]))
        print("\nlatest.json (the release: both datasets' runs of one export):")
        print(json.dumps(_read_release(cfg), indent=2))
    print(f"\nValidation report: {cfg.paths.reports / 'validation' / f'dt={args.date}'}/index.html")
    print("Browse the export: `make s3` serves it again; see README.md, 'Where results appear'.")
    print(f"[demo] done in {time.monotonic() - started:.0f}s; services stopped")
    return 0


def _read_release(cfg: Config) -> dict:
    from jobs.infra.storage import release_key, s3_client

    client = s3_client(cfg.storage)
    key = release_key(cfg.storage)
    return json.loads(client.get_object(Bucket=cfg.storage.bucket, Key=key)["Body"].read())


if __name__ == "__main__":
    raise SystemExit(main())
