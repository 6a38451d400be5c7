"""A Spark standalone cluster on 127.0.0.1 (one master, one worker) and the jobs zip it runs.

Both daemons come from the pyspark distribution in the venv (`spark-class ...Master` and
`...Worker`: the wheel's sbin/ ships no start-master.sh). Each runs in its own process group, so
stopping it also stops the executors its worker launched. Logs and the state file
(`cluster.json`: PIDs, master URL, web UI) go to the work dir.

    python -m jobs.tools.cluster up [--workdir .local/spark-cluster]     # prints the master URL
    python -m jobs.tools.cluster down [--workdir .local/spark-cluster]
    python -m jobs.tools.cluster package [--out .local/dist]             # -> .local/dist/jobs.zip

The jobs run there with the code shipped as a zip (docs/spark-cluster.md):

    spark-submit --master spark://127.0.0.1:PORT --py-files .local/dist/jobs.zip \\
        jobs/clean.py --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from jobs.tools.processes import (
    HOST,
    free_port,
    group_members,
    load_state,
    save_state,
    start_group,
    stop_group,
)

STATE_FILE = "cluster.json"
DEFAULT_WORKDIR = Path(".local/spark-cluster")
# Fixed entry timestamp and mode: the same sources always give the same zip, byte for byte.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o644 << 16


class ClusterError(RuntimeError):
    """The cluster did not come up, or a process survived stopping it; the message says which."""


@dataclass
class Cluster:
    """A running master + worker. `stop()` ends both and every process they started."""

    master_url: str  # spark://127.0.0.1:PORT, the --master of spark-submit
    web_ui: str  # http://127.0.0.1:PORT; /json/ lists the workers
    master_pid: int
    worker_pid: int
    workdir: Path

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM both process groups, SIGKILL what is left after `timeout` seconds.

        Raises ClusterError if any process of either group is still alive afterwards.
        """
        # Worker first: it kills its executors on the way down, then the master has no one left.
        for pid in (self.worker_pid, self.master_pid):
            stop_group(pid, timeout)
        survivors = [pid for pid in (self.worker_pid, self.master_pid) if group_members(pid)]
        if survivors:
            raise ClusterError(f"processes of groups {survivors} survived SIGKILL")
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    def save(self) -> Path:
        return save_state(self, self.workdir / STATE_FILE)

    @classmethod
    def load(cls, workdir: Path) -> Cluster:
        path = Path(workdir) / STATE_FILE
        if not path.is_file():
            raise ClusterError(f"no cluster state at {path}: is a cluster up in {workdir}?")
        return load_state(cls, path)


def start(
    workdir: Path,
    cores: int = 1,
    memory: str = "1g",
    port: int = 0,
    web_ui_port: int = 0,
    timeout: float = 90.0,
) -> Cluster:
    """Start a master and one worker (`cores` cores, `memory` for executors) on 127.0.0.1.

    Port 0 picks a free one. Returns once the worker has registered with the master (its web UI
    JSON lists it ALIVE); on failure stops whatever it started and raises ClusterError with the
    tail of the logs.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port, web_ui_port = port or free_port(), web_ui_port or free_port()
    # Spark silently moves to the next port when one is taken: refuse instead, or the URL lies.
    for wanted in (port, web_ui_port):
        if not _is_free(wanted):
            raise ClusterError(f"port {wanted} on {HOST} is in use")
    master_url, web_ui = f"spark://{HOST}:{port}", f"http://{HOST}:{web_ui_port}"
    master = _launch(
        "org.apache.spark.deploy.master.Master",
        ["--host", HOST, "--port", str(port), "--webui-port", str(web_ui_port)],
        workdir / "master.log",
    )
    worker = None
    try:
        worker = _launch(
            "org.apache.spark.deploy.worker.Worker",
            [master_url, "--host", HOST, "--cores", str(cores), "--memory", memory]
            + ["--webui-port", str(free_port()), "--work-dir", str(workdir / "work")],
            workdir / "worker.log",
        )
        cluster = Cluster(master_url, web_ui, master.pid, worker.pid, workdir)
        _wait_for_worker(cluster, (master, worker), timeout)
    except BaseException:
        for proc in (worker, master):
            if proc is not None:
                stop_group(proc.pid, 10.0)
        raise
    cluster.save()
    return cluster


def stop(workdir: Path = DEFAULT_WORKDIR) -> None:
    """Stop the cluster whose state file is in workdir (the `down` of the CLI)."""
    Cluster.load(workdir).stop()


# The demo, the stack and the benchmarks run where the repo is checked out, never on a cluster.
DEV_ONLY = ("tools",)


def package_jobs(out_dir: Path, source: Path | None = None) -> Path:
    """Zip the `jobs` package (its .py files, without the dev tools in jobs/tools) into
    out_dir/jobs.zip for `--py-files`.

    Deterministic: sorted entries, fixed timestamps and modes, so the same code gives the same
    sha256. `source` is the package folder (default: the one this module was imported from).
    """
    source = Path(source) if source is not None else Path(__file__).resolve().parents[1]
    if not (source / "__init__.py").is_file():
        raise FileNotFoundError(f"{source} is not a Python package (no __init__.py)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "jobs.zip"
    tmp = out_dir / ".jobs.zip.tmp"
    files = sorted(
        p
        for p in source.rglob("*.py")
        if not {"__pycache__", *DEV_ONLY} & set(p.relative_to(source).parts)
    )
    with zipfile.ZipFile(tmp, "w") as archive:
        for path in files:
            entry = zipfile.ZipInfo(f"jobs/{path.relative_to(source).as_posix()}", _ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = _ZIP_MODE
            archive.writestr(entry, path.read_bytes())
    os.replace(tmp, target)
    return target


def spark_home() -> Path:
    """The pyspark distribution's folder (bin/spark-class, jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def daemon_env() -> dict[str, str]:
    """Environment for the daemons and for spark-submit against them: loopback only, venv Python."""
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP=HOST,
        # Executors run Python (UDFs, GE) with the venv's interpreter and libraries.
        PYSPARK_PYTHON=sys.executable,
        # The daemons' own heap; executors get --memory of the worker.
        SPARK_DAEMON_MEMORY=env.get("SPARK_DAEMON_MEMORY", "512m"),
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _launch(main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    spark_class = spark_home() / "bin" / "spark-class"
    # spark-class execs java, so the PID is the JVM's, leader of its own process group.
    return start_group([str(spark_class), main_class, *args], daemon_env(), log.parent, log, "ab")


def _wait_for_worker(cluster: Cluster, procs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise ClusterError(
                    f"{proc.args[1]} exited with {proc.returncode}:\n{_log_tails(cluster.workdir)}"
                )
        if _alive_workers(cluster):
            return
        time.sleep(0.5)
    raise ClusterError(
        f"no worker registered with {cluster.master_url} within {timeout:.0f} s:\n"
        f"{_log_tails(cluster.workdir)}"
    )


def _alive_workers(cluster: Cluster) -> int:
    try:
        with urllib.request.urlopen(f"{cluster.web_ui}/json/", timeout=2) as response:
            status = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return 0  # the master's UI is not up yet
    if status.get("url") != cluster.master_url:
        raise ClusterError(f"{cluster.web_ui} serves master {status.get('url')}, not ours")
    return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


def _log_tails(workdir: Path, lines: int = 20) -> str:
    parts = []
    for name in ("master.log", "worker.log"):
        path = workdir / name
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path}\n" + "\n".join(tail))
    return "\n".join(parts)


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start master + worker, print the master URL")
    up.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    up.add_argument("--port", type=int, default=7077, help="master port (0: a free one)")
    # 0, not Spark's 8080: that is Airflow's API server port.
    up.add_argument("--web-ui-port", type=int, default=0, help="master web UI (0: a free one)")
    up.add_argument("--cores", type=int, default=1)
    up.add_argument("--memory", default="1g", help="executor memory of the worker, e.g. 2g")
    down = sub.add_parser("down", help="stop the cluster started with `up`")
    down.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    pack = sub.add_parser("package", help="write jobs.zip for --py-files")
    pack.add_argument("--out", type=Path, default=Path(".local/dist"))
    args = parser.parse_args(argv)

    if args.command == "package":
        print(package_jobs(args.out))
        return 0
    if args.command == "down":
        stop(args.workdir)
        print(f"Spark cluster in {args.workdir} stopped")
        return 0
    if (args.workdir / STATE_FILE).is_file():
        raise SystemExit(
            f"{args.workdir / STATE_FILE} exists: a cluster is up (or was not stopped); "
            "run `python -m jobs.tools.cluster down` first"
        )
    cluster = start(args.workdir, args.cores, args.memory, args.port, args.web_ui_port)
    conn = {"conn_type": "spark", "host": cluster.master_url, "extra": {"deploy-mode": "client"}}
    print(
        f"Spark master {cluster.master_url}, web UI {cluster.web_ui}, logs in {cluster.workdir}\n"
        f"export AIRFLOW_CONN_SPARK_DEFAULT='{json.dumps(conn)}'",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
