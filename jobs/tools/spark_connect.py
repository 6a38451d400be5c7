"""A Spark Connect server on 127.0.0.1 that a night's Spark stages share: one driver started
once, instead of a JVM and a session per stage.

The server is the config's Spark application (`spark.master`, `spark.conf`: driver memory and
the rest) run as the pyspark distribution's SparkConnectServer, listening on the port of
`spark.remote` (sc://localhost:PORT; default sc://localhost:15002) on 127.0.0.1 only. Clients
must present a token: a fresh random one per start, kept in `<workdir>/token` (mode 600) and
handed to the server and the stages as SPARK_CONNECT_AUTHENTICATE_TOKEN, never on a command
line. The server runs in its own process group; `stop` ends it and every process it started.
State (`server.json`: PID, URL) and the log (`server.log`) go to the work dir.

    python -m jobs.tools.spark_connect start --config configs/local.yaml  # prints what to export
    python -m jobs.tools.spark_connect status
    python -m jobs.tools.spark_connect stop

The stages then attach to it (jobs/infra/spark.py) when RECS__SPARK__REMOTE (or the config's
spark.remote) names it and the token is in their environment.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jobs.infra.config import SparkConfig, load_config
from jobs.infra.spark import session_conf
from jobs.tools.cluster import daemon_env, spark_home
from jobs.tools.processes import (
    HOST,
    group_members,
    group_rss_mb,
    load_state,
    save_state,
    start_group,
    stop_group,
)

DEFAULT_URL = "sc://localhost:15002"  # Spark Connect's own default port
DEFAULT_WORKDIR = Path(".local/spark-connect")
STATE_FILE, TOKEN_FILE, LOG_FILE = "server.json", "token", "server.log"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # read by the server and by pyspark's client
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class ConnectServerError(RuntimeError):
    """The server did not come up, or a process survived stopping it; the message says which."""


@dataclass
class ConnectServer:
    """A running server. `client_env()` is what a stage needs to attach; `stop()` ends it."""

    url: str  # sc://localhost:PORT, the spark.remote of the stages
    pid: int
    workdir: Path

    def client_env(self) -> dict[str, str]:
        """The variables a stage attaching to this server needs (the token and the URL)."""
        return {TOKEN_ENV: (self.workdir / TOKEN_FILE).read_text(), "RECS__SPARK__REMOTE": self.url}

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after `timeout` seconds.

        Raises ConnectServerError if any of its processes is still alive afterwards.
        """
        stop_group(self.pid, timeout)
        if group_members(self.pid):
            raise ConnectServerError(f"processes of group {self.pid} survived SIGKILL")
        for name in (STATE_FILE, TOKEN_FILE):
            (self.workdir / name).unlink(missing_ok=True)

    def save(self) -> Path:
        return save_state(self, self.workdir / STATE_FILE)

    @classmethod
    def load(cls, workdir: Path) -> ConnectServer:
        path = Path(workdir) / STATE_FILE
        if not path.is_file():
            raise ConnectServerError(f"no server state at {path}: is a server up in {workdir}?")
        return load_state(cls, path)


def local_port(url: str) -> int:
    """The port of a server this machine can start: `url` must be sc://localhost:PORT."""
    parts = urlsplit(url)
    if parts.scheme != "sc" or parts.hostname != "localhost" or parts.port is None:
        raise ValueError(f"{url!r}: a local Connect server is named sc://localhost:PORT")
    return parts.port


def server_command(spark: SparkConfig, port: int, local_ip: str | None) -> list[str]:
    """spark-submit of the Connect server: the config's master and settings, gRPC on
    127.0.0.1:`port`, and the driver bound as a local stage's would be (session_conf;
    `local_ip` is the SPARK_LOCAL_IP the server will run with)."""
    conf = {
        # The server lives for nights, and at INFO it logs every request's whole plan.
        "spark.log.level": "WARN",
        **session_conf(spark, spark.master, local_ip),
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
    }
    return [
        str(spark_home() / "bin" / "spark-submit"),
        *("--class", SERVER_CLASS, "--name", "Spark Connect server"),
        *("--master", spark.master),
        *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
    ]


def server_env(spark: SparkConfig, token: str, base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus the token, with the server's heap the config's spark.driver.memory."""
    env = {**base, TOKEN_ENV: token}
    # spark-submit sizes a Connect server's heap by SPARK_DAEMON_MEMORY before it reads
    # spark.driver.memory (as for the Thrift server), so the config's value must go there.
    env.pop("SPARK_DAEMON_MEMORY", None)
    if "spark.driver.memory" in spark.conf:
        env["SPARK_DAEMON_MEMORY"] = spark.conf["spark.driver.memory"]
    return env


def answers(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def new_token(workdir: Path) -> str:
    """A fresh random token, written to `workdir`/token readable by this user only."""
    token = secrets.token_urlsafe(32)
    path = Path(workdir) / TOKEN_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token


def start(
    spark: SparkConfig, url: str, workdir: Path = DEFAULT_WORKDIR, timeout: float = 120.0
) -> ConnectServer:
    """Start the server for `spark` on `url` (sc://localhost:PORT) and return once the port
    answers; on failure stop whatever started and raise ConnectServerError with the log tail."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = local_port(url)
    if (workdir / STATE_FILE).is_file():
        raise ConnectServerError(
            f"{workdir / STATE_FILE} exists: a server is up (or was not stopped); stop it first"
        )
    # Spark moves to the next port when one is taken: refuse instead, or the URL lies.
    if answers(port):
        raise ConnectServerError(f"port {port} on {HOST} is in use")
    log = workdir / LOG_FILE
    env = server_env(spark, new_token(workdir), daemon_env())
    command = server_command(spark, port, env["SPARK_LOCAL_IP"])
    proc = start_group(command, env, workdir, log, "a")
    server = ConnectServer(url, proc.pid, workdir)
    try:
        deadline = time.monotonic() + timeout
        while not answers(port):
            if proc.poll() is not None:
                raise ConnectServerError(f"the server exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise ConnectServerError(
                    f"port {port} not answering after {timeout:.0f} s:\n{_tail(log)}"
                )
            time.sleep(0.5)
    except BaseException:
        server.stop(10.0)
        raise
    server.save()
    return server


def stop(workdir: Path = DEFAULT_WORKDIR) -> None:
    """Stop the server whose state file is in workdir."""
    ConnectServer.load(workdir).stop()


def status(workdir: Path = DEFAULT_WORKDIR) -> dict | None:
    """The server started in workdir: URL, PID, live processes, resident MB, whether its port
    answers; None when none was started there."""
    if not (Path(workdir) / STATE_FILE).is_file():
        return None
    server = ConnectServer.load(workdir)
    return {
        "url": server.url,
        "pid": server.pid,
        "processes": len(group_members(server.pid)),
        "rss_mb": group_rss_mb(server.pid),
        "answers": answers(local_port(server.url)),
    }


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return f"--- {log}\n" + "\n".join(text[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.workdir)
        print(f"Spark Connect server in {args.workdir} stopped")
        return 0
    if args.action == "status":
        figures = status(args.workdir)
        print(json.dumps(figures) if figures else f"no Spark Connect server in {args.workdir}")
        return 0 if figures and figures["answers"] else 1
    cfg = load_config(args.config)
    server = start(cfg.spark, cfg.spark.remote or DEFAULT_URL, args.workdir)
    print(
        f"Spark Connect server {server.url} (pid {server.pid}), log {args.workdir / LOG_FILE}\n"
        f"export RECS__SPARK__REMOTE={server.url}\n"
        f'export {TOKEN_ENV}="$(cat {args.workdir / TOKEN_FILE})"',
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
