"""Benchmark the pipeline's stages on a generated shop, with the bot and model-quality figures.

Generates the synthetic shop at --scale (kept in .local/bench/shops/ by scale, seed and generator
version, so the next run reuses it), lands it as daily arrivals from --date in a private workspace
(.local/bench/scale-<s>/), then runs each stage the way the DAG does, as its own
process (the Spark ones with their own session, so JVM start is counted):

    ingest (history: every day before --date, one partition), ingest (the day), clean, validate,
    split, train (a search night, --retune), train again (a night that reuses the search),
    evaluate, gate, export (to a local S3 endpoint), summarize, monitor

and measures each one: wall seconds, CPU seconds and peak resident memory of its whole process
group (the stage's Python and its JVM); with --repeat N each stage runs N times in a row and
the medians are reported. Throughput is rows handled per wall second. The bot audit compares
what clean removed with the generator's ground truth; the quality table is every model's main
metrics from evaluate (challenger, baselines, oracle). `--until STEP` stops after a step
(`--until bot_audit`: the data stages only); each step's figures are saved in the workspace as it
ends, and `--resume` continues a stopped run where it left off (a scale-10 run over several
sittings).
Figures go to --out as JSON and to stdout as Markdown tables for docs/benchmarks.md.

    python -m jobs.tools.bench --scale 1 --out docs/benchmarks/stages-scale1.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from jobs.gate import GATED_EXIT_CODE
from jobs.infra.config import load_config
from jobs.infra.paths import Lake
from jobs.shop.land import land
from jobs.tools import spark_connect
from jobs.tools.demo import s3_endpoint
from jobs.tools.processes import free_port, group_usage, start_group
from jobs.tools.s3_server import LOCAL_CREDENTIALS

PROJECT = Path(__file__).resolve().parents[2]


def machine() -> dict:
    """What the figures were measured on."""
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else None,
        "platform": platform.platform(),
    }


def measured(
    cmd: list[str],
    env: dict,
    log: Path,
    every: float = 0.2,
    ok: tuple[int, ...] = (0,),
    beside: int | None = None,
) -> dict:
    """Run `cmd` to completion in its own process group: wall seconds, CPU seconds and peak
    resident memory of the whole group (the stage's Python and the JVM it starts, which Python
    never waits for, so the kernel's accounting of children alone would miss it).

    The group is sampled from /proc every `every` seconds until no member is left: CPU is the
    sum of each process's last reading (or the kernel's figure for the command and the children
    it waited for, when larger), peak memory the largest summed RSS seen (or the largest single
    process's peak, when larger). A process living less than `every` may be missed.

    `beside`: the process group of a service the command works through (the night's Spark
    Connect server): its CPU seconds during the run and its memory count as the command's.
    """
    started = time.perf_counter()
    cpu: dict[int, float] = {}
    peak_rss = 0
    service = group_usage(beside) if beside else {}
    service_cpu_before = sum(seconds for seconds, _ in service.values())
    proc = start_group(cmd, env, PROJECT, log)
    deadline, waited = None, None
    while True:
        usage = group_usage(proc.pid)
        for pid, (seconds, _) in usage.items():
            cpu[pid] = max(cpu.get(pid, 0.0), seconds)
        if beside:
            service = group_usage(beside)
        rss_beside = sum(rss for _, rss in service.values())
        peak_rss = max(peak_rss, sum(rss for _, rss in usage.values()) + rss_beside)
        if waited is None:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode, waited = os.waitstatus_to_exitcode(status), rusage
                deadline = time.monotonic() + 60  # let its JVM finish exiting
        if waited is not None and (not usage or time.monotonic() > deadline):
            break
        time.sleep(every)
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    service_cpu = sum(seconds for seconds, _ in service.values()) - service_cpu_before
    own_cpu = max(sum(cpu.values()), waited.ru_utime + waited.ru_stime)
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(own_cpu + service_cpu, 1),
        "peak_rss_mb": round(max(peak_rss / 1024**2, waited.ru_maxrss / 1024), 1),
    }


def repeated(cmd: list[str], env: dict, log: Path, repeat: int, **kwargs) -> dict:
    """`measured` `repeat` times in a row (every stage rewrites its own outputs, so each run does
    the same work): the median of each figure, and every run's figures under `runs`."""
    runs = [measured(cmd, env, log.with_suffix(f".{i}.log"), **kwargs) for i in range(repeat)]
    medians = {key: round(statistics.median(run[key] for run in runs), 1) for key in runs[0]}
    return {**medians, "runs": runs} if repeat > 1 else medians


def shop_path(scale: float, seed: int) -> Path:
    """Where the generated shop for (scale, seed) is kept between runs; the generator's source
    is part of the key, so a changed generator generates afresh."""
    source = (PROJECT / "jobs" / "shop" / "generate.py").read_bytes()
    version = hashlib.sha256(source).hexdigest()[:12]
    return PROJECT / ".local" / "bench" / "shops" / f"scale-{scale:g}-seed-{seed}-{version}"


def generated_shop(shop: Path, scale: float, seed: int, env: dict, logs: Path) -> dict:
    """Generate the shop into `shop` unless an earlier run completed it there: the generator's
    figures, or where the cached shop is."""
    done = shop / "_COMPLETE"
    if done.is_file():
        return {"cached": str(shop)}
    partial = shop.with_name(shop.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.shop.generate", "--out", str(partial)]
    figures = measured(cmd + ["--scale", str(scale), "--seed", str(seed)], env, logs / "gen.log")
    (partial / "_COMPLETE").write_text(json.dumps(figures) + "\n")
    shutil.rmtree(shop, ignore_errors=True)
    partial.rename(shop)
    return figures


def _stage(name: str, run_date: date, config: Path) -> list[str]:
    return [sys.executable, "-m", f"jobs.{name}", "--run-date", run_date.isoformat()] + [
        "--config",
        str(config),
    ]


def run(
    scale: float,
    seed: int,
    run_date: date,
    config: Path,
    workdir: Path,
    until: str | None = None,
    repeat: int = 1,
    side_repeat: int = 0,
    resume: bool = False,
    own_sessions: bool = False,
) -> dict:
    """Every step of the `steps` table below, in order, each measured; stops after step
    `until` when given.

    Each step's figures are saved to <workdir>/figures.json as soon as it ends; with `resume`,
    the workspace is kept and the steps found there are not run again, so a long run (scale 10)
    can be continued later, a step at a time.

    The night's Spark stages attach to one Spark Connect server (jobs.tools.spark_connect),
    started before the first of them (`spark_server`: its start is a nightly cost) and counted
    beside every stage after it; `own_sessions` gives each its own session instead.
    """
    if not resume:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECS__PATHS__LAKE": str(workdir / "lake"),
        "RECS__PATHS__LANDING": str(workdir / "landing"),
        "RECS__PATHS__RAW": str(shop_path(scale, seed)),
        "RECS__PATHS__REPORTS": str(workdir / "reports"),
        "RECS__MLFLOW__TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "RECS__MLFLOW__ARTIFACT_ROOT": str(workdir / "mlflow-artifacts"),
        # Its own S3 endpoint, on a free port: a running `make up` keeps its own.
        "RECS__STORAGE__ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        **LOCAL_CREDENTIALS,
    }
    cfg = load_config(config, environ=env)
    lake, logs = Lake(cfg.paths.lake), workdir / "logs"
    logs.mkdir(exist_ok=True)
    checkpoint = workdir / "figures.json"
    figures: dict = json.loads(checkpoint.read_text()) if checkpoint.is_file() else {}

    server: list[spark_connect.ConnectServer] = []

    def stage(
        name: str, args: tuple[str, ...] = (), times: int = repeat, day: date = run_date, **kw
    ) -> dict:
        # The step's name is the job's, but for a suffix saying which run of it this is.
        job = name.removesuffix("_reuse").removesuffix("_history").removesuffix("_day")
        cmd = _stage(job, day, config) + list(args)
        beside = server[0].pid if server else None
        return repeated(cmd, env, logs / name, times, beside=beside, **kw)

    def spark_server() -> dict:
        # One Spark application for the night's Spark stages, as `make up` runs it; its start
        # is a nightly cost. The history load before it had a session of its own (cold JIT).
        started = time.perf_counter()
        url = f"sc://localhost:{free_port()}"
        server.append(spark_connect.start(cfg.spark, url, workdir / "spark-connect"))
        services.callback(server[0].stop)
        env.update(server[0].client_env())
        seconds = time.perf_counter() - started
        usage = group_usage(server[0].pid).values()
        return {
            "seconds": round(seconds, 1),
            "cpu_seconds": round(sum(cpu for cpu, _ in usage), 1),
            "peak_rss_mb": round(sum(rss for _, rss in usage) / 1024**2, 1),
        }

    def with_rows(figure: dict, rows: int) -> dict:
        return {**figure, "rows": rows, "rows_per_second": round(rows / figure["seconds"])}

    def ingest(day: date, name: str) -> dict:
        figure = stage(name, day=day)
        return with_rows(figure, lake.read_stage_report(day, "ingest")["raw_rows"])

    def landed() -> dict:
        started = time.perf_counter()
        land(cfg.paths.raw, cfg.paths.landing / cfg.ingest.sources[0].name, run_date)
        return {"seconds": round(time.perf_counter() - started, 1)}

    def bot_audit() -> dict:
        out = workdir / "bot_audit.json"
        cmd = [sys.executable, "-m", "jobs.tools.bot_audit", "--run-date", run_date.isoformat()]
        cmd += ["--config", str(config), "--ground-truth", str(cfg.paths.raw / "ground_truth")]
        figure = measured(cmd + ["--out", str(out)], env, logs / "bot_audit.log")
        return {**figure, "result": json.loads(out.read_text())}

    def train() -> dict:
        # A search night: --retune, so that every repetition searches.
        figure = stage("train", args=("--retune",))
        trained = lake.read_stage_report(run_date, "train")
        keep = ("params", "tuning", "fit_seconds")
        return {**figure, **{key: trained[key] for key in keep}}

    def train_reuse() -> dict:
        # A night that refits the search's parameters, as the nights between searches do.
        return {
            **stage("train_reuse"),
            "tuned_on": lake.read_stage_report(run_date, "train")["tuned_on"],
        }

    def evaluate() -> dict:
        figure = stage("evaluate")
        evaluation = lake.read_stage_report(run_date, "evaluate")
        return {
            **figure,
            "quality": quality_table(evaluation),
            "share_of_oracle_ndcg_at_10": evaluation["share_of_oracle_ndcg_at_10"],
            "visitors": evaluation["visitors"],
        }

    def export() -> dict:
        figure = stage("export", args=("--run-id", "bench"))
        return {
            **figure,
            "users": lake.read_stage_report(run_date, "export")["recommendations"]["users"],
        }

    steps = {
        "generate": lambda: generated_shop(cfg.paths.raw, scale, seed, env, logs),
        "land": landed,
        "ingest_history": lambda: ingest(run_date - timedelta(days=1), "ingest_history"),
        "ingest_day": lambda: ingest(run_date, "ingest_day"),
        "clean": lambda: with_rows(
            stage("clean"), lake.read_stage_report(run_date, "clean")["rows_in"]
        ),
        "validate": lambda: with_rows(
            stage("validate"),
            sum(lake.read_stage_report(run_date, "validate")["rows_validated"].values()),
        ),
        "bot_audit": bot_audit,
        "split": lambda: stage("split"),
        "train": train,
        "train_reuse": train_reuse,
        "evaluate": evaluate,
        "gate": lambda: stage("gate", ok=(0, GATED_EXIT_CODE)),
        "export": export,
        "summarize": lambda: stage("summarize", times=1),
        "monitor": lambda: stage("monitor", times=1),
        "bare_night": lambda: bare_night(run_date, config, env, workdir, repeat),
    }
    if side_repeat:
        steps["vs_bare_implicit"] = lambda: side_by_side(
            run_date, config, env, workdir, side_repeat
        )
    started: list[str] = []
    if until is not None and until not in steps:
        raise ValueError(f"no step {until!r}; the steps are {', '.join(steps)}")
    with contextlib.ExitStack() as services:
        for name, measure in steps.items():
            # Started before the first night Spark stage still to run (again, when resumed).
            if name in NIGHT_SPARK and name not in figures and not (own_sessions or server):
                figures["spark_server"] = spark_server()
            if name not in figures:
                if name in S3_STEPS and not any(n in S3_STEPS for n in started):
                    services.enter_context(s3_endpoint(config, logs / "s3.log", env))
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                started.append(name)
                figures[name] = measure()
                if name in SPARK_STAGES:
                    figures[name]["spark_startup_s"] = spark_startup(logs, name)
                checkpoint.write_text(json.dumps(figures, indent=2) + "\n")
            if name == until:
                break
    if "export" in figures:
        figures["nightly"] = nightly_totals(figures)
    return figures


# The steps that publish or read the published lists need the S3 endpoint.
S3_STEPS = ("gate", "export", "summarize")


def bare_night(run_date: date, config: Path, env: dict, workdir: Path, repeat: int) -> dict:
    """The bare script (jobs.tools.bare_night) on this run's training split and parameters,
    measured like a stage: what a night is held against."""
    out = workdir / "bare_night.parquet"
    cmd = [sys.executable, "-m", "jobs.tools.bare_night", "--config", str(config)]
    cmd += ["--run-date", run_date.isoformat(), "--out", str(out)]
    figure = repeated(cmd, env, workdir / "logs" / "bare_night", repeat)
    log = (workdir / "logs" / "bare_night.0.log").read_text().strip().splitlines()
    out.unlink(missing_ok=True)
    return {**figure, **json.loads(log[-1])}


def side_by_side(run_date: date, config: Path, env: dict, workdir: Path, repeat: int) -> dict:
    """The train and export steps against bare implicit on this run's lake and champion, each
    pair alternating in one process (jobs.tools.bench_train, jobs.tools.bench_export)."""
    figures = {}
    for name, args in (
        ("train", ["--run-date", run_date.isoformat()]),
        ("export", ["--date", run_date.isoformat(), "--users", str(EXPORT_SAMPLE)]),
    ):
        out = workdir / f"vs_bare_{name}.json"
        cmd = [sys.executable, "-m", f"jobs.tools.bench_{name}", "--config", str(config), *args]
        cmd += ["--repeat", str(repeat), "--out", str(out)]
        with (workdir / "logs" / f"vs_bare_{name}.log").open("w") as log:
            subprocess.run(cmd, env=env, cwd=PROJECT, stdout=log, stderr=log, check=True)
        figures[name] = json.loads(out.read_text())
    return figures


SPARK_STAGES = ("ingest_history", "ingest_day", "clean", "validate", "split")
# The night's Spark stages: they share one Spark Connect server unless --own-sessions.
NIGHT_SPARK = SPARK_STAGES[1:]


def spark_startup(logs: Path, name: str) -> float | None:
    """Seconds from process start to a ready Spark session in stage `name`'s first run, from
    the line jobs.infra.spark logs (Python imports, JVM start, session)."""
    pattern = re.compile(r"spark session ready: [\d.]+ s to start, ([\d.]+) s after")
    found = pattern.search((logs / f"{name}.0.log").read_text())
    return float(found.group(1)) if found else None


# Visitors the export side by side scores (an evenly spaced sample of those the model knows).
EXPORT_SAMPLE = 150_000

# The night as docs show it, step by step: what the DAG runs every night (the history load and
# the bench's own steps are not part of it), train once per kind of night.
NIGHT_ROWS = (
    ("Spark Connect server start", "spark_server"),
    ("ingest (the day)", "ingest_day"),
    ("clean", "clean"),
    ("validate", "validate"),
    ("split", "split"),
    ("train, a search night", "train"),
    ("train, a night between searches", "train_reuse"),
    ("evaluate", "evaluate"),
    ("gate", "gate"),
    ("export", "export"),
    ("summarize", "summarize"),
    ("monitor", "monitor"),
)
# A search night's steps.
NIGHTLY = tuple(step for _, step in NIGHT_ROWS if step != "train_reuse")


def nightly_totals(figures: dict) -> dict:
    """The nightly run as one: wall and CPU seconds summed over its stages, the largest peak
    memory, and CPU seconds per 1,000 users exported (multiply by a CPU-second's price). The
    figures are for a search night; `other_nights_seconds` has train refitting the last search's
    parameters instead (`train_reuse`), as on the nights between searches."""
    stages = [figures[name] for name in NIGHTLY if name in figures]
    cpu = sum(f["cpu_seconds"] for f in stages)
    users = figures.get("export", {}).get("users")
    startup = [f["spark_startup_s"] for f in stages if f.get("spark_startup_s") is not None]
    seconds = sum(f["seconds"] for f in stages)
    other_nights = None
    if "train" in figures and "train_reuse" in figures:
        other_nights = seconds - figures["train"]["seconds"] + figures["train_reuse"]["seconds"]
    bare = figures.get("bare_night", {}).get("seconds")

    def versus_bare(night: float | None) -> float | None:
        return None if night is None or not bare else round(night / bare, 2)

    return {
        "seconds": round(seconds, 1),
        "other_nights_seconds": None if other_nights is None else round(other_nights, 1),
        "bare_seconds": bare,
        "search_night_vs_bare": versus_bare(seconds),
        "other_nights_vs_bare": versus_bare(other_nights),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": max(f["peak_rss_mb"] for f in stages),
        "cpu_seconds_per_1000_users": round(cpu / users * 1000, 3) if users else None,
        "spark_startup_s": round(sum(startup), 1),
        "spark_sessions": len(startup),
    }


QUALITY_METRICS = ("ndcg_at_10", "recall_at_20", "precision_at_10", "map_at_10", "mrr_at_10")
QUALITY_METRICS += ("coverage_at_10", "diversity_at_10", "novelty_at_10")


def quality_table(evaluation: dict) -> dict[str, dict]:
    """Main metrics per model (warm visitors x warm items), from evaluate's stage report."""
    models = {"challenger": evaluation["challenger"], **evaluation["baselines"]}
    if evaluation.get("candidate_pool"):
        models["challenger_every_item"] = evaluation["candidate_pool"][
            "challenger_ranking_every_item"
        ]
    if evaluation.get("oracle"):
        models["oracle"] = evaluation["oracle"]
    return {
        name: {m: metrics.get(m) for m in QUALITY_METRICS} | {"users": metrics["users"]}
        for name, metrics in models.items()
    }


# docs/benchmarks.md's table of a night: (label, step) in the night's order.


def night_table(stages: dict) -> str:
    """The night stage by stage, both kinds of night and the bare script, as docs show it."""

    def peak(mb: float) -> str:
        return f"{mb / 1000:.2f} GB"

    rows = ["| part | wall | peak memory |", "|---|---:|---:|"]
    for label, step in NIGHT_ROWS:
        if step in stages:
            figure = stages[step]
            rows.append(f"| {label} | {figure['seconds']:.1f} s | {peak(figure['peak_rss_mb'])} |")
    night = stages.get("nightly")
    if night and night.get("bare_seconds"):
        rows += [
            f"| **a night between searches** | **{night['other_nights_seconds']:.1f} s** | |",
            f"| **a search night** | **{night['seconds']:.1f} s** | {peak(night['peak_rss_mb'])} |",
            f"| bare script (`jobs/tools/bare_night.py`) | {night['bare_seconds']:.1f} s | "
            f"{peak(stages['bare_night']['peak_rss_mb'])} |",
            f"| **night / bare**: between searches, search night | "
            f"**{night['other_nights_vs_bare']:.2f}x**, "
            f"**{night['search_night_vs_bare']:.2f}x** | |",
        ]
    return "\n".join(rows)


def render(result: dict) -> str:
    rows = [
        "| stage | wall | CPU | peak RSS | rows | rows/s |",
        "|---|---|---|---|---|---|",
    ]
    quality = result["stages"].get("evaluate", {}).get("quality")
    for name, figure in result["stages"].items():
        if name in ("nightly", "vs_bare_implicit"):
            continue  # below the table
        if "cached" in figure:
            rows.append(f"| {name} | cached: {figure['cached']} | | | | |")
            continue
        cpu, peak = figure.get("cpu_seconds"), figure.get("peak_rss_mb")
        cells = f"| {name} | {figure['seconds']} s | {'' if cpu is None else f'{cpu} s'} | "
        cells += f"{'' if peak is None else f'{peak} MB'} |"
        if "rows" in figure:
            rows.append(f"{cells} {figure['rows']:,} | {figure['rows_per_second']:,} |")
        else:
            rows.append(f"{cells} | |")
    nightly = result["stages"].get("nightly")
    if nightly and nightly["cpu_seconds_per_1000_users"] is not None:
        rows += [
            "",
            f"Nightly run ({', '.join(NIGHTLY)}): {nightly['seconds']} s wall, "
            f"{nightly['cpu_seconds']} CPU s, peak {nightly['peak_rss_mb']} MB; "
            f"**{nightly['cpu_seconds_per_1000_users']} CPU s per 1,000 users exported** "
            f"({result['stages']['export']['users']:,} users); start-up of its "
            f"{nightly['spark_sessions']} Spark sessions (process start to session ready): "
            f"{nightly['spark_startup_s']} s.",
        ]
        if nightly.get("other_nights_seconds") is not None:
            rows.append(
                f"The nights between searches (train refits the last search's parameters): "
                f"**{nightly['other_nights_seconds']} s** wall."
            )
        if nightly.get("bare_seconds"):
            rows.append(
                f"The bare script (jobs/tools/bare_night.py): {nightly['bare_seconds']} s; "
                f"a search night is **{nightly['search_night_vs_bare']}x** it, a night between "
                f"searches **{nightly['other_nights_vs_bare']}x**."
            )
    versus = result["stages"].get("vs_bare_implicit")
    if versus:
        train, export = versus["train"], versus["export"]
        rows += [
            "",
            f"Train fit vs bare implicit fit: {train['median_s']['pipeline_fit']:.1f} s vs "
            f"{train['median_s']['bare_fit']:.1f} s, **ratio {train['ratio']}** (goal <= 1.15).",
            f"Export vs bare implicit recommend ({export['warm_users']:,} visitors): "
            f"{export['pipeline_users_per_s']:,} vs {export['bare_users_per_s']:,} visitors/s, "
            f"**ratio {export['throughput_ratio']}** (goal >= 0.8).",
        ]
    if nightly:
        rows += ["", night_table(result["stages"])]
    if quality:
        rows += ["", "| model | " + " | ".join(QUALITY_METRICS) + " |"]
        rows.append("|---|" + "---:|" * len(QUALITY_METRICS))
        for name, metrics in quality.items():
            cells = ["" if metrics[m] is None else f"{metrics[m]:.4f}" for m in QUALITY_METRICS]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2015, 9, 18))
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "local.yaml")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    parser.add_argument(
        "--until", default=None, help="stop after this step (e.g. bot_audit: the data stages only)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the workspace and skip the steps its figures.json already has",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each stage (medians)")
    parser.add_argument(
        "--own-sessions",
        action="store_true",
        help="each Spark stage starts its own session (default: one Spark Connect server)",
    )
    parser.add_argument(
        "--side-repeat",
        type=int,
        default=0,
        help="pairs in the fit and export side by side with bare implicit (0: not run)",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or PROJECT / ".local" / "bench" / f"scale-{args.scale:g}"
    if args.repeat < 1 or args.side_repeat < 0:
        parser.error("--repeat must be at least 1 and --side-repeat at least 0")
    stages = run(
        args.scale,
        args.seed,
        args.date,
        args.config.resolve(),
        workdir,
        args.until,
        args.repeat,
        args.side_repeat,
        args.resume,
        args.own_sessions,
    )
    result = {
        "command": "python -m jobs.tools.bench " + " ".join(argv or sys.argv[1:]),
        "scale": args.scale,
        "seed": args.seed,
        "repeat": args.repeat,
        "side_repeat": args.side_repeat,
        "run_date": args.date.isoformat(),
        "config": str(args.config),
        "machine": machine(),
        "stages": stages,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    if "bot_audit" in stages:
        print(json.dumps(stages["bot_audit"]["result"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
