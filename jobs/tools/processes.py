"""Background processes the tools start: free ports, and stopping a whole process group.

Each service is started with `start_new_session=True`, so its PID is also its process group and
stopping the group ends everything it spawned (executors, LocalExecutor workers, JVMs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

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
    """Live (not zombie) processes in process group `pgid`, from /proc. The leader, when it is
    our exited child, is reaped first unless `reap_leader` is false (the caller waits for it)."""
    if reap_leader:
        reap(pgid)
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def group_usage(pgid: int) -> dict[int, tuple[float, int]]:
    """{pid: (CPU seconds so far, resident bytes)} of every live process in group `pgid`; the
    leader is left for the caller to wait for (and collect its rusage)."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    usage = {}
    for pid in group_members(pgid, reap_leader=False):
        with contextlib.suppress(OSError, IndexError):  # it ended while we looked
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # after the command: state(3) ... utime(14) stime(15) ... rss(24), 1-based
            usage[pid] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[21]) * page)
    return usage


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every live process in group `pgid`, summed, in MB (from /proc)."""
    total_kb = 0
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):  # the process ended while we looked
            status = Path(f"/proc/{pid}/status").read_text()
            total_kb += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")),
                0,
            )
    return round(total_kb / 1024, 1)


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
