from datetime import date

import pandas as pd
import pytest

from jobs.core.config import RerankWeights
from jobs.core.metrics import ItemContext
from jobs.core.rerank import Reranker
from jobs.evaluate import compare_reranking, exposure_by_popularity_decile, truth_sets


def test_truth_sets_split_warm_and_cold_and_keep_main_to_warm_items():
    train = pd.DataFrame({"visitor_id": [1, 1, 2], "item_id": [10, 11, 10]})
    test = pd.DataFrame(
        {
            "visitor_id": [1, 1, 1, 2, 3, 3],
            "item_id": [11, 12, 11, 10, 10, 13],  # (1, 11) twice; 12 and 13 are new items
        }
    )
    sets = truth_sets(train, test)
    pairs = {name: sorted(map(tuple, t.to_numpy())) for name, t in sets.items()}
    assert pairs["main"] == [(1, 11), (2, 10)]  # warm visitor, warm item
    assert pairs["warm"] == [(1, 11), (1, 12), (2, 10)]
    assert pairs["cold"] == [(3, 10), (3, 13)]
    assert pairs["all"] == sorted(pairs["warm"] + pairs["cold"])


def test_exposure_by_popularity_decile_counts_top_k_only():
    # Ten items, item i seen by i visitors: item i is in decile i - 1.
    popularity = pd.Series(range(1, 11), index=range(1, 11))
    recs = pd.DataFrame(
        {
            "visitor_id": [7, 7, 7, 8, 8],
            "rank": [1, 2, 3, 1, 2],
            "item_id": [10, 10, 1, 10, 99],  # item 99 unseen in training: decile 0
        }
    )
    shares = exposure_by_popularity_decile(recs, popularity, k=2)
    # Top-2 rows: 10, 10, 10, 99 -> decile 9 three times, decile 0 once.
    assert shares == [0.25, 0, 0, 0, 0, 0, 0, 0, 0, 0.75]


def test_compare_reranking_scores_each_configuration_on_the_same_candidates():
    # Visitor 1's model order: items 1-10 (category 100), then 11-12 (category 200). In the test
    # window they bought item 11, which only a diversified list reaches in its top 10.
    catalog = pd.DataFrame(
        {
            "item_id": range(1, 13),
            "category_id": [100] * 10 + [200] * 2,
            "first_seen_ts": pd.Timestamp("2015-01-01", tz="UTC"),
        }
    )
    candidates = pd.DataFrame(
        {"visitor_id": 1, "rank": range(1, 13), "item_id": range(1, 13), "score": 1.0}
    ).assign(source="als")
    truth = pd.DataFrame({"visitor_id": [1], "item_id": [11]})
    truths = {"main": truth, "all": truth}
    context = ItemContext(
        categories=catalog.set_index("item_id")["category_id"],
        popularity=pd.Series(1, index=range(1, 13)),
        n_visitors=1,
        catalog_size=12,
    )
    as_of, day = pd.Timestamp("2015-09-04", tz="UTC"), date(2015, 9, 18)
    rerankers = {
        name: Reranker.from_catalog(RerankWeights(diversity=d), catalog, as_of, day, 12)
        for name, d in (("configured", 0.0), ("diverse", 1.0))
    }
    table = compare_reranking(candidates, rerankers, truths, (10,), context, None)
    assert table["configured"]["ndcg_at_10"] == 0
    assert table["diverse"]["ndcg_at_10"] == pytest.approx(0.63093, abs=1e-5)  # hit at rank 2
    assert table["diverse"]["all_visitors_ndcg_at_10"] == pytest.approx(0.63093, abs=1e-5)
    assert table["configured"]["diversity_at_10"] == 0
    assert table["diverse"]["diversity_at_10"] == pytest.approx(0.2)  # 1 - 36 / 45 pairs
    assert table["configured"]["coverage_at_10"] == table["diverse"]["coverage_at_10"] == 10 / 12
