import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from jobs.export import (
    IdNames,
    to_export_rows,
    to_personalize_lines,
    write_recommendations,
)
from jobs.infra.config import RerankWeights
from jobs.infra.paths import Lake
from jobs.recommenders.base import Fallback
from jobs.recommenders.popularity import PopularityRecommender
from jobs.recommenders.rerank import Reranker, sample_visitors

D = date(2015, 9, 18)


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
    assert [json.loads(line)["input"]["userId"] for line in lines] == ["1", "2", "3"]
    sims = pd.DataFrame({"item_id": [5, 5], "similar_item_id": [6, 7], "score": [0.9, 0.8]})
    assert json.loads(to_personalize_lines(sims, "item_id", "itemId", "similar_item_id")[0]) == {
        "input": {"itemId": "5"},
        "output": {"recommendedItems": ["6", "7"], "scores": [0.9, 0.8]},
        "error": None,
    }


def test_every_visitor_gets_n_items_none_bought_none_unavailable_in_bounded_files(tmp_path):
    visitors = np.arange(1, 8)
    bought = pd.DataFrame({"visitor_id": [1, 1, 4], "item_id": [100, 101, 102]})
    unavailable = np.array([103])
    model = PopularityRecommender(np.arange(100, 110))
    out = tmp_path / "export"
    (out / "stale").mkdir(parents=True)
    files, counts = write_recommendations(
        model, visitors, 3, bought, unavailable, Fallback(model.popular_items), "7", out, per_file=3
    )
    assert [f.name for f in files] == [
        f"part-{p:05d}.{ext}" for p in range(3) for ext in ("parquet", "jsonl")
    ]
    assert not (out / "stale").exists()
    rows = pd.concat(pd.read_parquet(f) for f in files if f.suffix == ".parquet")
    assert rows.groupby("user_id").size().to_dict() == dict.fromkeys(range(1, 8), 3)
    assert not rows.duplicated(["user_id", "item_id"]).any()
    assert not rows["item_id"].eq(103).any()
    assert rows.loc[rows["user_id"] == 1, "item_id"].tolist() == [102, 104, 105]
    assert rows.loc[rows["user_id"] == 4, "item_id"].tolist() == [100, 101, 104]
    assert counts == {"users": 7, "rows": 21, "rows_by_source": {"popular": 21}}
    assert sum(f.read_text().count("\n") for f in files if f.suffix == ".jsonl") == 7


def test_a_diversity_weight_changes_the_written_lists(tmp_path):
    # Popularity order 100..109; 100-104 in category 1, 105-109 in category 2.
    model = PopularityRecommender(np.arange(100, 110))
    catalog = pd.DataFrame({"item_id": np.arange(100, 110), "category_id": [1] * 5 + [2] * 5})
    none = pd.DataFrame({"visitor_id": [], "item_id": []}, dtype=np.int64)

    def written(weights):
        reranker = Reranker.from_catalog(
            weights, catalog, pd.Timestamp("2015-09-19", tz="UTC"), date(2015, 9, 18), 10
        )
        files, _ = write_recommendations(
            model,
            np.array([1, 2]),
            4,
            none,
            np.array([], dtype=np.int64),
            Fallback(model.popular_items),
            "7",
            tmp_path / str(weights.diversity),
            per_file=10,
            reranker=reranker,
        )
        rows = pd.read_parquet(files[0])
        return rows.loc[rows["user_id"] == 2, ["rank", "item_id"]].to_numpy().tolist()

    assert written(RerankWeights()) == [[1, 100], [2, 101], [3, 102], [4, 103]]
    assert written(RerankWeights(diversity=1.0)) == [[1, 100], [2, 105], [3, 101], [4, 102]]


def test_the_shadow_sample_is_fixed_by_the_date():
    visitors = np.arange(1000, 2000)
    monday = sample_visitors(visitors, 10, date(2015, 9, 18))
    assert len(monday) == 10 and np.all(np.diff(monday) > 0) and np.isin(monday, visitors).all()
    assert np.array_equal(monday, sample_visitors(visitors[::-1], 10, date(2015, 9, 18)))
    assert not np.array_equal(monday, sample_visitors(visitors, 10, date(2015, 9, 19)))
    assert np.array_equal(sample_visitors(visitors[:5], 10, date(2015, 9, 18)), visitors[:5])


def test_text_ids_go_out_as_the_shop_wrote_them_in_both_file_kinds(tmp_path):
    # Visitor 1 and items 10, 20 came as text (the id dictionary); visitor 2, item 30 did not.
    names = IdNames(
        {
            "visitor_id": pd.Series({1: 'ann "the buyer"'}),
            "item_id": pd.Series({10: "85123A", 20: "Mug, blue"}),
        }
    )
    files, counts = write_recommendations(
        PopularityRecommender(np.array([10, 20, 30])),
        np.array([1, 2]),
        2,
        pd.DataFrame({"visitor_id": [2], "item_id": [10]}),
        np.array([], dtype=np.int64),
        Fallback(np.array([10, 20, 30])),
        "3",
        tmp_path / "out",
        100,
        names=names,
    )

    rows = pd.read_parquet(next(f for f in files if f.suffix == ".parquet"))
    assert rows[["user_id", "item_id"]].values.tolist() == [
        ['ann "the buyer"', "85123A"],
        ['ann "the buyer"', "Mug, blue"],
        ["2", "Mug, blue"],
        ["2", "30"],
    ]
    lines = [json.loads(line) for line in next(f for f in files if f.suffix == ".jsonl").open()]
    assert [(x["input"]["userId"], x["output"]["recommendedItems"]) for x in lines] == [
        ('ann "the buyer"', ["85123A", "Mug, blue"]),
        ("2", ["Mug, blue", "30"]),
    ]
    assert counts["users"] == 2 and counts["rows"] == 4


def test_ids_read_back_from_every_dictionary_partition_up_to_the_date(tmp_path):
    lake = Lake(tmp_path / "lake")
    for day, rows in [(date(2015, 9, 17), [("item_id", 10, "A")]), (D, [("item_id", 11, "B")])]:
        part = lake.partition("bronze", "id_dictionary", day)
        part.mkdir(parents=True)
        pd.DataFrame(rows, columns=["id_column", "id", "raw_id"]).to_parquet(part / "p.parquet")
        (part / "_SUCCESS").touch()

    assert IdNames.read(lake, D).by_column["item_id"].to_dict() == {10: "A", 11: "B"}
    assert IdNames.read(lake, date(2015, 9, 17)).by_column["item_id"].to_dict() == {10: "A"}
