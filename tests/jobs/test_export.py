import json

import pandas as pd
import pytest

from jobs.export import to_export_rows, to_personalize_lines, write_files


@pytest.fixture()
def recs():
    return pd.DataFrame(
        {
            "visitor_id": [2, 1, 1, 3],
            "rank": [1, 2, 1, 1],
            "item_id": [30, 20, 10, 40],
            "score": [0.5, 0.25, 0.75, 1.0],
            "source": ["als", "popular", "als", "popular"],
        }
    )


def test_export_rows_have_the_published_columns_in_order(recs):
    rows = to_export_rows(recs, "7")
    assert list(rows.columns) == ["user_id", "rank", "item_id", "score", "source", "model_version"]
    assert rows[["user_id", "rank", "item_id"]].values.tolist() == [
        [1, 1, 10],
        [1, 2, 20],
        [2, 1, 30],
        [3, 1, 40],
    ]
    assert set(rows["model_version"]) == {"7"}


def test_personalize_lines_match_the_batch_output_shape(recs):
    lines = to_personalize_lines(to_export_rows(recs, "7"))
    assert json.loads(lines[0]) == {
        "input": {"userId": "1"},
        "output": {"recommendedItems": ["10", "20"], "scores": [0.75, 0.25]},
        "error": None,
    }
    assert len(lines) == 3


def test_files_hold_at_most_the_configured_number_of_users(recs, tmp_path):
    out = tmp_path / "export"
    (out / "stale").mkdir(parents=True)
    files = write_files(to_export_rows(recs, "7"), out, visitors_per_file=2)
    assert [f.name for f in files] == [
        "part-00000.parquet",
        "part-00000.jsonl",
        "part-00001.parquet",
        "part-00001.jsonl",
    ]
    assert not (out / "stale").exists()
    assert pd.read_parquet(files[0])["user_id"].unique().tolist() == [1, 2]
    assert files[3].read_text().count("\n") == 1
