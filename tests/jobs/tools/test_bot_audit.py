"""jobs/tools/bot_audit.py: recall and false-positive rate per rule, exact on a tiny population."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from jobs.tools.bot_audit import AuditInputError, audit_rules, format_tables, main

PROJECT_ROOT = Path(__file__).resolve().parents[3]
RULES = ("test_account", "events_per_day", "catalog_sweep")
SEEN = set(range(1, 11)) | {101, 102, 103, 900}  # 10 real visitors, 3 bots, 1 QA account
BOTS = {101: "crawler", 102: "sweeper", 103: "scalper", 555: "crawler"}  # 555 never seen
REMOVED = {
    101: ("events_per_day", "catalog_sweep"),
    102: ("catalog_sweep",),
    900: ("test_account",),
    5: ("events_per_day",),  # a real visitor removed by mistake
}


def test_audit_counts_each_rule_and_the_union_against_the_seen_population():
    audit = audit_rules(SEEN, REMOVED, BOTS, {900, 901}, RULES)
    assert audit["seen"] == {"bots": 3, "real_visitors": 10, "test_accounts": 1}
    assert audit["rules"] == {
        "test_account": {
            "bots_removed": 0,
            "bot_recall": 0.0,
            "real_removed": 0,
            "false_positive_rate": 0.0,
            "test_accounts_removed": 1,
        },
        "events_per_day": {
            "bots_removed": 1,
            "bot_recall": pytest.approx(1 / 3, abs=1e-6),
            "real_removed": 1,
            "false_positive_rate": 0.1,
            "test_accounts_removed": 0,
        },
        "catalog_sweep": {
            "bots_removed": 2,
            "bot_recall": pytest.approx(2 / 3, abs=1e-6),
            "real_removed": 0,
            "false_positive_rate": 0.0,
            "test_accounts_removed": 0,
        },
    }
    assert audit["overall"] == {
        "bots_removed": 2,
        "bot_recall": pytest.approx(2 / 3, abs=1e-6),
        "real_removed": 1,
        "false_positive_rate": 0.1,
        "test_accounts_removed": 1,
    }
    assert audit["by_kind"]["crawler"] == {
        "seen": 1,
        "removed": 1,
        "recall": 1.0,
        "by_rule": {"test_account": 0, "events_per_day": 1, "catalog_sweep": 1},
        "missed": [],
    }
    assert audit["by_kind"]["scalper"]["missed"] == [103]


def test_audit_refuses_inputs_that_do_not_describe_the_same_visitors():
    with pytest.raises(AuditInputError, match=r"1 removed visitors never appear in bronze"):
        audit_rules(SEEN, {**REMOVED, 77: ("catalog_sweep",)}, BOTS, set(), RULES)
    with pytest.raises(AuditInputError, match=r"unknown rules \['typo'\]"):
        audit_rules(SEEN, {5: ("typo",)}, BOTS, set(), RULES)
    with pytest.raises(AuditInputError, match="pseudonymized"):
        audit_rules(SEEN, REMOVED, {555: "crawler"}, set(), RULES)


def test_tables_show_percentages_and_a_row_per_rule_and_kind():
    text = format_tables(audit_rules(SEEN, REMOVED, BOTS, {900}, RULES))
    assert "| events_per_day | 1 | 33.33 % | 1 | 10.00 % | 0 |" in text
    assert "| all rules | 2 | 66.67 % | 1 | 10.00 % | 1 |" in text
    assert "| scalper | 1 | 0 | 0.00 % | 0 | 0 | 0 |" in text


def test_main_reads_the_lake_and_ground_truth_and_writes_json(tmp_path, capsys):
    lake = tmp_path / "lake"
    overlay = tmp_path / "configs" / "audit.yaml"
    overlay.parent.mkdir()
    overlay.write_text(
        f"extends: {PROJECT_ROOT / 'configs' / 'test.yaml'}\npaths: {{lake: {lake}}}\n"
    )
    for day, visitors in ((date(2015, 9, 17), [1, 2, 101]), (date(2015, 9, 18), [2, 3, 900])):
        part = lake / "bronze" / "events" / f"dt={day}"
        part.mkdir(parents=True)
        pd.DataFrame({"visitor_id": visitors}).to_parquet(part / "part-0.parquet")
        (part / "_SUCCESS").touch()
    removed = lake / "silver" / "removed_visitors" / "dt=2015-09-18"
    removed.mkdir(parents=True)
    pd.DataFrame(
        {
            "visitor_id": [101, 900],
            "rule": ["catalog_sweep", "test_account"],
            "rules": [["catalog_sweep", "views_without_conversion"], ["test_account"]],
        }
    ).to_parquet(removed / "part-0.parquet")
    truth = tmp_path / "ground_truth"
    truth.mkdir()
    (truth / "bots.csv").write_text("visitorid,kind\n101,sweeper\n102,crawler\n")
    (truth / "test_accounts.csv").write_text("visitorid\n900\n")
    out = tmp_path / "audit.json"

    argv = ["--run-date", "2015-09-18", "--config", str(overlay), "--ground-truth", str(truth)]
    assert main([*argv, "--out", str(out)]) == 0

    audit = json.loads(out.read_text())
    assert audit["run_date"] == "2015-09-18"
    assert audit["seen"] == {"bots": 1, "real_visitors": 3, "test_accounts": 1}
    assert audit["overall"]["bot_recall"] == 1.0
    assert audit["rules"]["views_without_conversion"]["bots_removed"] == 1
    assert audit["rules"]["events_per_day"]["bot_recall"] == 0.0
    assert "| all rules | 1 | 100.00 % | 0 | 0.00 % | 1 |" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="ground truth files not found"):
        main([*argv[:-1], str(tmp_path / "nowhere")])
