"""jobs/tools/bench.py: what a measured command reports (no timings asserted, only accounting)."""

import sys

import pytest

from jobs.tools.bench import measured

# Holds 200 MB for a moment and burns CPU in a grandchild, so both show in the parent's figures.
CHILD = """
import time
block = bytearray(200 * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
started = time.process_time()
while time.process_time() - started < 0.5:
    pass
"""
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}], check=True)"


def test_cpu_and_peak_memory_include_the_waited_for_descendants(tmp_path):
    figures = measured([sys.executable, "-c", PARENT], {}, tmp_path / "log")

    assert figures["peak_rss_mb"] >= 200
    assert figures["cpu_seconds"] >= 0.5
    assert figures["seconds"] > 0


def test_a_process_the_command_never_waits_for_is_counted_too(tmp_path):
    # As a Spark stage's JVM: started by the command, not waited for, ending after it.
    orphan = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {CHILD!r}])"

    figures = measured([sys.executable, "-c", orphan], {}, tmp_path / "log")

    assert figures["peak_rss_mb"] >= 200
    assert figures["cpu_seconds"] >= 0.4  # sampled: the last fraction of a second may be missed


def test_a_failing_command_names_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="failed \\(3\\); see .*log"):
        measured([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "log")
