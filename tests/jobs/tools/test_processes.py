"""Process groups as the local stack supervises them: members, usage, and stopping them all."""

from __future__ import annotations

import os
import sys
import time

import pytest

from jobs.tools.processes import group_members, group_rss_mb, group_usage, start_group, stop_group

# The leader spends 0.3 s of CPU, starts one child in its own group, prints its pid, then waits.
PARENT_AND_CHILD = """
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _start(tmp_path, mode: str = "polite"):
    log = tmp_path / "group.log"
    proc = start_group(
        [sys.executable, "-c", PARENT_AND_CHILD, mode], dict(os.environ), tmp_path, log
    )
    deadline = time.monotonic() + 30
    while not log.read_text().strip():
        assert time.monotonic() < deadline, "the group never started its child"
        time.sleep(0.05)
    return proc, int(log.read_text())


def test_a_group_is_its_leader_and_what_it_spawned_until_stopped(tmp_path):
    proc, child = _start(tmp_path)
    try:
        assert sorted(group_members(proc.pid)) == sorted([proc.pid, child])
        usage = group_usage(proc.pid)
        assert sorted(usage) == sorted([proc.pid, child])
        # CPU in seconds (not clock ticks), resident memory in bytes (not pages).
        assert 0.3 <= usage[proc.pid][0] < 5 and 0 <= usage[child][0] < 5
        assert all(1_000_000 < rss < 2**30 for _, rss in usage.values())
        # Two Python interpreters: a few MB each, far below a GB.
        assert 2 < group_rss_mb(proc.pid) < 1024
        assert group_members(os.getpgid(0)) and proc.pid not in group_members(os.getpgid(0))
    finally:
        killed = stop_group(proc.pid, timeout=10)
    assert not killed  # SIGTERM was enough
    assert group_members(proc.pid) == [] and group_rss_mb(proc.pid) == 0.0
    assert proc.poll() is not None  # reaped: not left a zombie


def test_a_group_ignoring_sigterm_is_killed(tmp_path):
    proc, child = _start(tmp_path, "stubborn")
    assert stop_group(proc.pid, timeout=0.5)
    assert group_members(proc.pid) == []


def test_an_exited_leader_is_not_a_member_even_before_it_is_reaped(tmp_path):
    proc = start_group([sys.executable, "-c", "pass"], dict(os.environ), tmp_path, tmp_path / "l")
    deadline = time.monotonic() + 30
    while group_members(proc.pid, reap_leader=False):  # a zombie until reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.poll() == 0


@pytest.mark.parametrize("fn", [group_members, group_usage, group_rss_mb])
def test_a_group_that_does_not_exist_is_empty(fn):
    assert not fn(2**22 + 12345)  # above Linux's default pid_max: never a live group
