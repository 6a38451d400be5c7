"""Bot audit: how well the clean stage's rules find the generator's bots, per rule and overall.

Reads what clean removed for D (`silver/removed_visitors/dt=D`: each visitor with every rule they
break), the visitors seen in bronze events up to D, and the generator's ground truth
(`ground_truth/bots.csv`: visitorid,kind; `ground_truth/test_accounts.csv`: visitorid). Every
seen visitor is a bot, a test account or a real visitor. Per rule and for all rules together:

- bot recall in [0, 1]: bots the rule removed / bots seen;
- false-positive rate in [0, 1]: real visitors the rule removed / real visitors seen;
- test accounts removed, reported apart (they are neither bots nor real visitors).

Recall per bot kind says which kinds each rule catches and which slip through. Prints markdown
tables and writes the figures as JSON to --out.

    python -m jobs.tools.bot_audit --run-date 2015-09-18 --config configs/local.yaml \\
        --ground-truth .local/raw/retailrocket/ground_truth --out .local/reports/bot_audit.json
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from jobs.clean import RULES, RULES_BROKEN
from jobs.infra.cli import parse_stage_args
from jobs.infra.paths import Lake, read_partition, write_json_atomic
from jobs.infra.schemas import VISITOR_ID

ALL_RULES = "all rules"


class AuditInputError(ValueError):
    """The lake and the ground truth do not describe the same visitors."""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def audit_rules(
    seen: Iterable[int],
    removed: Mapping[int, Iterable[str]],
    bots: Mapping[int, str],
    test_accounts: Iterable[int],
    rules: tuple[str, ...] = RULES,
) -> dict:
    """Recall and false-positive rate per rule, for all rules together, and recall per bot kind.

    seen: visitor ids with events up to the date; removed: visitor id -> the rules they break;
    bots: visitor id -> kind; test_accounts: QA visitor ids. Bots and test accounts never seen
    are left out of every denominator. Rates are None when their denominator is 0.
    Raises AuditInputError if a removed visitor was never seen, a rule is unknown, or bots are
    listed but none is seen (the ids differ, e.g. pseudonymized at ingest).
    """
    seen = set(seen)
    removed = {v: tuple(r) for v, r in removed.items()}
    unseen = sorted(set(removed) - seen)
    if unseen:
        raise AuditInputError(
            f"{len(unseen)} removed visitors never appear in bronze (first {unseen[:5]}): "
            "removed_visitors and bronze are not from the same lake and date"
        )
    unknown = sorted({r for broken in removed.values() for r in broken} - set(rules))
    if unknown:
        raise AuditInputError(f"removed visitors name unknown rules {unknown}; known: {rules}")
    bots = {v: k for v, k in bots.items() if v in seen}
    tests = set(test_accounts) & seen
    if not bots and seen and removed:
        raise AuditInputError(
            "no bot of the ground truth appears in bronze: are visitor ids pseudonymized "
            "(ingest.pseudonymize_visitor_ids) or is the ground truth from another shop?"
        )
    n_real = len(seen) - len(bots) - len(tests)

    def figures(caught: set[int]) -> dict:
        bots_removed = len(caught & bots.keys())
        tests_removed = len(caught & tests)
        real_removed = len(caught) - bots_removed - tests_removed
        return {
            "bots_removed": bots_removed,
            "bot_recall": _share(bots_removed, len(bots)),
            "real_removed": real_removed,
            "false_positive_rate": _share(real_removed, n_real),
            "test_accounts_removed": tests_removed,
        }

    by_rule = {rule: {v for v, broken in removed.items() if rule in broken} for rule in rules}
    kinds: dict[str, dict] = {}
    for kind in sorted(set(bots.values())):
        members = {v for v, k in bots.items() if k == kind}
        caught = members & removed.keys()
        kinds[kind] = {
            "seen": len(members),
            "removed": len(caught),
            "recall": _share(len(caught), len(members)),
            "by_rule": {rule: len(members & by_rule[rule]) for rule in rules},
            "missed": sorted(members - caught),
        }
    return {
        "seen": {"bots": len(bots), "real_visitors": n_real, "test_accounts": len(tests)},
        "rules": {rule: figures(by_rule[rule]) for rule in rules},
        "overall": figures(set(removed)),
        "by_kind": kinds,
    }


def format_tables(audit: dict) -> str:
    """The audit as two markdown tables: per rule (and overall), and per bot kind."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f} %"

    seen = audit["seen"]
    lines = [
        f"Seen: {seen['bots']} bots, {seen['real_visitors']:,} real visitors, "
        f"{seen['test_accounts']} test accounts.",
        "",
        "| rule | bots removed | bot recall | real removed | false-positive rate | "
        "test accounts removed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [*audit["rules"].items(), (ALL_RULES, audit["overall"])]
    for rule, f in rows:
        lines.append(
            f"| {rule} | {f['bots_removed']} | {pct(f['bot_recall'])} | {f['real_removed']} | "
            f"{pct(f['false_positive_rate'])} | {f['test_accounts_removed']} |"
        )
    rules = list(audit["rules"])
    lines += ["", "| bot kind | seen | removed | recall | " + " | ".join(rules) + " |"]
    lines.append("|---|---:|---:|---:|" + "---:|" * len(rules))
    for kind, k in audit["by_kind"].items():
        caught = " | ".join(str(k["by_rule"][r]) for r in rules)
        lines.append(f"| {kind} | {k['seen']} | {k['removed']} | {pct(k['recall'])} | {caught} |")
    return "\n".join(lines)


def read_seen_visitors(lake: Lake, run_date: date) -> set[int]:
    """Distinct visitor ids of the bronze events partitions up to run_date."""
    dates = lake.dates_until("bronze", "events", run_date)
    if not dates:
        raise FileNotFoundError(
            f"no bronze events up to {run_date} under {lake.table('bronze', 'events')}"
        )
    ids = [
        pq.read_table(lake.partition("bronze", "events", d), columns=[VISITOR_ID])
        .column(VISITOR_ID)
        .to_numpy()
        for d in dates
    ]
    return set(np.unique(np.concatenate(ids)).tolist())


def read_ground_truth(folder: Path) -> tuple[dict[int, str], set[int]]:
    """(bot id -> kind, test account ids) from the generator's ground_truth folder."""
    files = {name: folder / name for name in ("bots.csv", "test_accounts.csv")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ground truth files not found: {missing}")
    bots = pd.read_csv(files["bots.csv"])
    tests = pd.read_csv(files["test_accounts.csv"])
    kinds = dict(zip(bots["visitorid"].tolist(), bots["kind"].astype(str), strict=True))
    return kinds, set(tests["visitorid"].tolist())


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--ground-truth", type=Path, required=True, help="the generator's ground_truth folder"
    )
    parser.add_argument("--out", type=Path, help="write the audit here as JSON")


def main(argv: list[str] | None = None) -> int:
    args = parse_stage_args(argv, __doc__, _add_arguments)
    lake, run_date = args.lake, args.run_date
    removed_rows = read_partition(lake, "silver", "removed_visitors", run_date)
    removed = dict(zip(removed_rows[VISITOR_ID].tolist(), removed_rows[RULES_BROKEN], strict=True))
    bots, tests = read_ground_truth(args.extras["ground_truth"])
    audit = {
        "run_date": run_date.isoformat(),
        **audit_rules(read_seen_visitors(lake, run_date), removed, bots, tests),
    }
    print(format_tables(audit))
    if args.extras["out"] is not None:
        write_json_atomic(args.extras["out"], audit)
        print(f"\nwritten to {args.extras['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
