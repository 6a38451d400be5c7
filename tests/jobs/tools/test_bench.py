"""jobs/tools/bench.py: what a measured command reports (no timings asserted, only accounting)."""

import json
import os
import sys
import time
from datetime import date

import pytest

from jobs.infra import spark
from jobs.tools import bench
from jobs.tools.bench import measured, repeated
from jobs.tools.processes import start_group, stop_group

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


def test_a_service_the_command_works_through_counts_as_its_own(tmp_path):
    # As the night's Spark Connect server: started before the command, working for it.
    ready, go, done = (tmp_path / name for name in ("ready", "go", "done"))
    service = f"""
import time
from pathlib import Path
block = bytearray(200 * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])
Path({str(ready)!r}).touch()
while not Path({str(go)!r}).exists():
    time.sleep(0.01)
started = time.process_time()
while time.process_time() - started < 0.5:
    pass
Path({str(done)!r}).touch()
time.sleep(60)
"""
    command = f"""
import time
from pathlib import Path
Path({str(go)!r}).touch()
while not Path({str(done)!r}).exists():
    time.sleep(0.01)
"""
    server = start_group([sys.executable, "-c", service], {}, bench.PROJECT, tmp_path / "s")
    try:
        while not ready.exists():
            time.sleep(0.01)

        figures = measured([sys.executable, "-c", command], {}, tmp_path / "log", beside=server.pid)
    finally:
        stop_group(server.pid, timeout=5)

    assert figures["peak_rss_mb"] >= 200
    assert figures["cpu_seconds"] >= 0.5  # the CPU it burned for the command


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


def test_nightly_totals_sum_the_nightly_stages_only():
    figures = {
        "ingest_history": {"seconds": 100.0, "cpu_seconds": 150.0, "peak_rss_mb": 9000.0},
        "ingest_day": {"seconds": 10.0, "cpu_seconds": 12.0, "peak_rss_mb": 800.0},
        "clean": {"seconds": 20.0, "cpu_seconds": 30.0, "peak_rss_mb": 1200.0},
        "train": {"seconds": 60.0, "cpu_seconds": 110.0, "peak_rss_mb": 2500.0},
        "train_reuse": {"seconds": 25.0, "cpu_seconds": 40.0, "peak_rss_mb": 2000.0},
        "export": {"seconds": 40.0, "cpu_seconds": 48.0, "peak_rss_mb": 900.0, "users": 2000},
        "bare_night": {"seconds": 50.0, "cpu_seconds": 90.0, "peak_rss_mb": 1500.0},
    }
    figures["ingest_day"]["spark_startup_s"] = 6.5
    figures["clean"]["spark_startup_s"] = 7.0
    figures["ingest_history"]["spark_startup_s"] = 99.0  # the history load is not nightly

    totals = bench.nightly_totals(figures)

    assert totals == {
        "seconds": 130.0,
        "other_nights_seconds": 95.0,  # train_reuse instead of train
        "bare_seconds": 50.0,  # the bare script is what a night is held against, not part of it
        "search_night_vs_bare": 2.6,
        "other_nights_vs_bare": 1.9,
        "cpu_seconds": 200.0,
        "peak_rss_mb": 2500.0,
        "cpu_seconds_per_1000_users": 100.0,
        "spark_startup_s": 13.5,
        "spark_sessions": 2,
    }


def test_spark_startup_is_read_from_the_stage_log(tmp_path):
    (tmp_path / "clean.0.log").write_text(
        "... INFO spark: " + spark.READY_MESSAGE % (4.25, 9.5) + "\n... INFO clean: done\n"
    )
    (tmp_path / "split.0.log").write_text("no session here\n")

    assert bench.spark_startup(tmp_path, "clean") == 9.5
    assert bench.spark_startup(tmp_path, "split") is None


def test_the_generated_shop_is_kept_for_the_next_run(tmp_path):
    shop = tmp_path / "shops" / "scale-0.001-seed-7-v"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ}

    first = bench.generated_shop(shop, 0.001, 7, env, logs)
    events = (shop / "events.csv").read_bytes()
    second = bench.generated_shop(shop, 0.001, 7, env, logs)

    assert first["seconds"] > 0 and (shop / "_COMPLETE").is_file()
    assert second == {"cached": str(shop)}
    assert (shop / "events.csv").read_bytes() == events
    assert not shop.with_name(shop.name + ".partial").exists()


def test_shops_are_kept_apart_by_scale_and_seed():
    assert bench.shop_path(1, 42) != bench.shop_path(2, 42) != bench.shop_path(2, 7)
    assert bench.shop_path(1, 42).name.startswith("scale-1-seed-42-")


def test_a_stopped_run_resumes_where_it_left_off(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "shop_path", lambda scale, seed: tmp_path / "shop")
    work, day = tmp_path / "work", date(2015, 9, 18)

    def run(**kwargs):
        return bench.run(0.001, 7, day, bench.PROJECT / "configs" / "local.yaml", work, **kwargs)

    first = run(until="generate")
    assert list(first) == ["generate"] and first["generate"]["seconds"] > 0
    (work / "kept").write_text("")

    second = run(until="land", resume=True)
    assert second["generate"] == first["generate"]  # not run again: it would say "cached"
    assert list(second) == ["generate", "land"] and (work / "kept").exists()
    assert any((work / "landing").rglob("*.csv"))
    assert json.loads((work / "figures.json").read_text()) == second

    fresh = run(until="generate")  # without --resume: a new workspace
    assert fresh == {"generate": {"cached": str(tmp_path / "shop")}}
    assert not (work / "kept").exists()
    with pytest.raises(ValueError, match="no step 'nope'"):
        run(until="nope", resume=True)


def test_the_real_export_table_names_what_was_published_and_its_share_of_the_best():
    from jobs.tools.bench_real import model_table

    evaluation = {
        "challenger": {"ndcg_at_10": 0.3},
        "baselines": {n: {"ndcg_at_10": v} for n, v in [("popularity", 0.1), ("item_knn", 0.25)]},
    }
    als = model_table(evaluation, {"promote": True, "published_family": "als"})
    assert als["published"] == "challenger (als)" and als["published_vs_best_baseline"] == 1.2
    knn = model_table(evaluation, {"promote": False, "published_family": "item_knn"})
    assert knn["published_ndcg_at_10"] == 0.25 and knn["best_baseline"] == "item_knn"
    gated = model_table(evaluation, {"promote": False, "published_family": None})
    assert gated["published"] is None and gated["published_vs_best_baseline"] is None


def test_the_night_table_lists_the_stages_in_order_then_both_nights_against_bare():
    figure = {"seconds": 10.0, "cpu_seconds": 10.0, "peak_rss_mb": 1500.0}
    stages = {step: dict(figure) for step in ("clean", "train", "train_reuse", "export")}
    stages["bare_night"] = dict(figure)
    stages["nightly"] = {
        "seconds": 30.0,
        "other_nights_seconds": 30.0,
        "bare_seconds": 10.0,
        "search_night_vs_bare": 3.0,
        "other_nights_vs_bare": 3.0,
        "peak_rss_mb": 1500.0,
    }

    rows = bench.night_table(stages).splitlines()[2:]

    assert [row.split(" | ")[0] for row in rows] == [
        "| clean",
        "| train, a search night",
        "| train, a night between searches",
        "| export",
        "| **a night between searches**",
        "| **a search night**",
        "| bare script (`jobs/tools/bare_night.py`)",
        "| **night / bare**: between searches, search night",
    ]
    assert rows[-1].endswith("| **3.00x**, **3.00x** | |")
