"""The Spark Connect server's command line, environment and token."""

from __future__ import annotations

import socket
import stat
from datetime import date

import pytest

from jobs.infra.config import SparkConfig
from jobs.tools.spark_connect import (
    TOKEN_ENV,
    ConnectServerError,
    local_port,
    new_token,
    server_command,
    server_env,
    start,
)

SPARK = SparkConfig(
    master="local[2]",
    conf={"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "4"},
)


def _conf(command: list[str]) -> dict[str, str]:
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_server_runs_the_configs_application_on_loopback_only():
    command = server_command(SPARK, 15002, local_ip=None)
    assert command[command.index("--master") + 1] == "local[2]"
    assert _conf(command) == {
        "spark.log.level": "WARN",
        "spark.driver.memory": "3g",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": "15002",
    }


def test_the_servers_heap_is_the_configs_driver_memory_whatever_the_shell_says():
    env = server_env(SPARK, "t0k", {"SPARK_DAEMON_MEMORY": "512m", "PATH": "/bin"})
    assert env == {"SPARK_DAEMON_MEMORY": "3g", "PATH": "/bin", TOKEN_ENV: "t0k"}
    # Without a configured driver memory, Spark's own default applies, not the shell's.
    assert "SPARK_DAEMON_MEMORY" not in server_env(
        SparkConfig(), "t", {"SPARK_DAEMON_MEMORY": "1g"}
    )


def test_the_token_file_is_private_and_new_each_time(tmp_path):
    first = new_token(tmp_path)
    second = new_token(tmp_path)
    assert first != second and len(second) >= 40
    token = tmp_path / "token"
    assert token.read_text() == second
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "url", ["sc://127.0.0.1:15002", "sc://spark.internal:15002", "sc://localhost"]
)
def test_only_a_server_named_localhost_with_a_port_can_be_started_here(url, tmp_path):
    with pytest.raises(ValueError, match="sc://localhost:PORT"):
        local_port(url)
    with pytest.raises(ValueError, match="sc://localhost:PORT"):
        start(SPARK, url, tmp_path)
    assert local_port("sc://localhost:15002") == 15002


def test_a_second_start_in_one_workdir_is_refused(tmp_path):
    (tmp_path / "server.json").write_text("{}")
    with pytest.raises(ConnectServerError, match="a server is up"):
        start(SPARK, "sc://localhost:15002", tmp_path)


def test_the_stack_refuses_a_connect_port_something_already_listens_on(
    tmp_path, write_overlay, monkeypatch
):
    from jobs.tools import stack

    monkeypatch.setattr(stack, "PIDS", tmp_path / "stack" / "pids.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = f"spark:\n  remote: sc://localhost:{port}\n"
        config = write_overlay("http://127.0.0.1:9", "recs", extra=extra)

        with pytest.raises(stack.StackError, match=f"port {port} is in use"):
            stack.up(config, scale=0.01, seed=42, last_day=date(2015, 9, 18), days=1)

    assert not (tmp_path / "landing").exists()  # refused before preparing anything
