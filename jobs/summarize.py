"""Summarize: one screen about a nightly run, from the stage reports of its logical date.

Prints rows per stage, model vs baseline metrics, the gate's decision, users with
recommendations, the S3 URIs written and where to look next. The last line is the same summary
as compact JSON (the Airflow task's XCom).

Run alone:
    python -m jobs.summarize --run-date 2015-09-18 --config configs/local.yaml
"""

from __future__ import annotations

import json
from datetime import date

from jobs.infra.cli import parse_stage_args
from jobs.infra.config import Config
from jobs.infra.paths import Lake

STAGES = ("ingest", "clean", "validate", "split", "train", "evaluate", "gate", "export")


def collect(lake: Lake, run_date: date) -> dict:
    """The stage reports that exist for run_date, by stage name."""
    return {
        s: lake.read_stage_report(run_date, s)
        for s in STAGES
        if lake.stage_report(run_date, s).is_file()
    }


def render(reports: dict, run_date: date, mlflow_uri: str) -> str:
    """Human-readable summary of the reports (missing stages are shown as not run)."""
    lines = [f"nightly_recs {run_date}"]
    ing = reports.get("ingest")
    if ing:
        lines.append(
            f"  ingest    {ing['raw_rows']:>10,} raw rows -> {ing['accepted']:,} accepted, "
            f"{ing['quarantined']:,} quarantined {ing['quarantine_reasons']}, "
            f"{ing['duplicates']:,} duplicates, {ing['ignored']:,} ignored, "
            f"{ing['erased']:,} erased"
            + ("  (empty day: no files landed)" if ing["empty_day"] else "")
        )
    cl = reports.get("clean")
    if cl:
        lines.append(
            f"  clean     {cl['rows_out']:>10,} events kept, {cl['removed_events']:,} "
            f"removed from {cl['removed_visitors']:,} visitors (bots, test traffic)"
        )
    va = reports.get("validate")
    if va:
        lines.append(
            f"  validate  {'passed' if va.get('success') else 'FAILED':>10}  "
            f"report: {va['data_docs_index']}"
        )
    sp = reports.get("split")
    if sp:
        lines.append(
            f"  split     {sp['train']['rows']:>10,} train / {sp['test']['rows']:,} test "
            f"events, cutoff {sp['cutoff']}"
        )
    tr = reports.get("train")
    if tr:
        lines.append(
            f"  train     {tr['nnz']:>10,} interactions, {tr['visitors']:,} visitors x "
            f"{tr['items']:,} items, fit {tr['fit_seconds']}s -> {tr['model_uri']}"
        )
    ev = reports.get("evaluate")
    if ev:
        models = {"challenger": ev.get("challenger"), **ev.get("baselines", {})}
        models |= {"champion": ev.get("champion"), "oracle": ev.get("oracle")}
        for name, m in models.items():
            if m:
                lines.append(
                    f"  evaluate  {name:>17}: NDCG@10 {m['ndcg_at_10']:.4f}  "
                    f"precision@10 {m['precision_at_10']:.4f}  "
                    f"recall@20 {m['recall_at_20']:.4f}  ({m['users']:,} warm users)"
                )
        if ev.get("share_of_oracle_ndcg_at_10") is not None:
            lines.append(
                f"  evaluate  challenger NDCG@10 = {ev['share_of_oracle_ndcg_at_10']:.2f} x oracle"
            )
    ga = reports.get("gate")
    if ga:
        lines.append(
            f"  gate      {ga['decision']:>10}: challenger version {ga['model_version']}, "
            f"champion {ga.get('champion_version')}; " + "; ".join(ga["reasons"])
        )
    ex = reports.get("export")
    if ex:
        recs, sims = ex["recommendations"], ex["similar_items"]
        lines.append(
            f"  export    {recs['users']:>10,} users x {recs['list_length']} items "
            f"{recs['rows_by_source']} (model version {ex['model_version']})"
        )
        lines.append(f"            latest: {recs['latest']['manifest']}")
        lines.append(
            f"  export    {sims['items']:>10,} items x {sims['list_length']} similar items "
            f"{sims['rows_by_source']}"
        )
        lines.append(f"            latest: {sims['latest']['manifest']}")
    missing = [s for s in STAGES if s not in reports]
    if missing:
        lines.append(f"  not run: {', '.join(missing)}")
    lines.append(f"  MLflow UI: make mlflow-ui, then http://127.0.0.1:5000 (store {mlflow_uri})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__)
    print(json.dumps(run(args.cfg, args.run_date), sort_keys=True))
    return 0


def run(cfg: Config, run_date: date) -> dict:
    """Print the night's summary; return its compact form (the task's XCom)."""
    reports = collect(Lake(cfg.paths.lake), run_date)
    print(render(reports, run_date, cfg.mlflow.tracking_uri))
    return {
        "run_date": run_date.isoformat(),
        "gate": reports.get("gate", {}).get("decision"),
        "ndcg_at_10": reports.get("evaluate", {}).get("challenger", {}).get("ndcg_at_10"),
        "users_exported": reports.get("export", {}).get("recommendations", {}).get("users"),
        "latest": reports.get("export", {}).get("recommendations", {}).get("latest", {}),
    }


if __name__ == "__main__":
    raise SystemExit(main())
