"""jobs/tools/bench.py: what a measured command reports (no timings asserted, only accounting)."""

import sys

import pytest

from jobs.tools.bench import measured, repeated

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


def test_repeated_runs_the_command_each_time_and_reports_medians(tmp_path):
    counter = tmp_path / "count"
    bump = f"from pathlib import Path; p = Path({str(counter)!r}); "
    bump += "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')"

    figures = repeated([sys.executable, "-c", bump], {}, tmp_path / "stage", 3)

    assert counter.read_text() == "3"
    assert len(figures["runs"]) == 3
    for key in ("seconds", "cpu_seconds", "peak_rss_mb"):
        assert figures[key] == sorted(run[key] for run in figures["runs"])[1]
    assert sorted(p.name for p in tmp_path.glob("stage.*.log")) == [
        "stage.0.log",
        "stage.1.log",
        "stage.2.log",
    ]
