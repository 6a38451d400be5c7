"""Background processes the tools start: free ports, and stopping a whole process group.

Each service is started with `start_new_session=True`, so its PID is also its process group and
stopping the group ends everything it spawned (executors, LocalExecutor workers, JVMs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict
from pathlib import Path

import psutil

HOST = "127.0.0.1"


def start_group(cmd: list[str], env: dict, cwd: Path, log: Path, mode: str = "w"):
    """Start `cmd` as the leader of a new process group (its PID is the group's id), output to
    `log`, no stdin. Stop it, and all it spawned, with `stop_group`."""
    import subprocess

    with log.open(mode) as out:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def group_members(pgid: int, reap_leader: bool = True) -> list[int]:
    """Live (not zombie) processes in process group `pgid`. The leader, when it is our exited
    child, is reaped first unless `reap_leader` is false (the caller waits for it)."""
    if reap_leader:
        reap(pgid)
    return [proc.pid for proc in _live_in_group(pgid)]


def group_usage(pgid: int) -> dict[int, tuple[float, int]]:
    """{pid: (CPU seconds so far, resident bytes)} of every live process in group `pgid`; the
    leader is left for the caller to wait for (and collect its rusage)."""
    usage = {}
    for proc in _live_in_group(pgid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # it just ended
            cpu = proc.cpu_times()
            usage[proc.pid] = (cpu.user + cpu.system, proc.memory_info().rss)
    return usage


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every live process in group `pgid`, summed, in MB."""
    reap(pgid)
    total = 0
    for proc in _live_in_group(pgid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # it just ended
            total += proc.memory_info().rss
    return round(total / 2**20, 1)


def _live_in_group(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["status"]):
        # psutil has no process-group attribute; os.getpgid reads it for any pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def stop_group(pgid: int, timeout: float) -> bool:
    """SIGTERM process group `pgid`, wait up to `timeout` s, then SIGKILL what is left.

    Returns True if SIGKILL was needed.
    """
    killed = False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        killed = sig == signal.SIGKILL
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
    reap(pgid)
    return killed


def reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child (else init does, and this is a no-op)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def save_state(service, path: Path) -> Path:
    """A service's dataclass (with a `workdir` Path) as JSON at `path`: `stop` may run in
    another process than `start`, and finds it with `load_state`."""
    state = {**asdict(service), "workdir": str(service.workdir)}
    path.write_text(json.dumps(state, indent=2) + "\n")
    return path


def load_state(cls, path: Path):
    """The `cls` instance `save_state` wrote at `path`."""
    state = json.loads(path.read_text())
    return cls(**{**state, "workdir": Path(state["workdir"])})
