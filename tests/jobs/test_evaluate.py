from datetime import date

import pandas as pd
import pytest

from jobs.evaluate import compare_reranking, exposure_by_popularity_decile, truth_sets
from jobs.infra.config import RerankWeights
from jobs.recommenders.metrics import ItemContext
from jobs.recommenders.rerank import Reranker


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
    table = compare_reranking([candidates], rerankers, truths, (10,), context, None)
    # Visitor by visitor in batches, the same table as all at once.
    second = candidates.assign(visitor_id=2, item_id=candidates["item_id"][::-1].to_numpy())
    truth2 = pd.concat([truth, pd.DataFrame({"visitor_id": [2], "item_id": [1]})])
    both = {"main": truth2, "all": truth2}
    whole = compare_reranking(
        [pd.concat([candidates, second])], rerankers, both, (10,), context, None
    )
    assert compare_reranking([candidates, second], rerankers, both, (10,), context, None) == whole
    assert whole["configured"]["users"] == 2
    assert table["configured"]["ndcg_at_10"] == 0
    assert table["diverse"]["ndcg_at_10"] == pytest.approx(0.63093, abs=1e-5)  # hit at rank 2
    assert table["diverse"]["all_visitors_ndcg_at_10"] == pytest.approx(0.63093, abs=1e-5)
    assert table["configured"]["diversity_at_10"] == 0
    assert table["diverse"]["diversity_at_10"] == pytest.approx(0.2)  # 1 - 36 / 45 pairs
    assert table["configured"]["coverage_at_10"] == table["diverse"]["coverage_at_10"] == 10 / 12


def test_audit_lists_segments_by_tenure_and_attribute_and_warns_past_thresholds():
    from jobs.evaluate import audit_lists
    from jobs.infra.config import AuditConfig

    train = pd.DataFrame(
        {
            "visitor_id": [1, 2],
            "item_id": [10, 11],
            "event_ts": pd.to_datetime(["2015-09-01", "2015-06-01"], utc=True),
        }
    )
    truth = pd.DataFrame({"visitor_id": [1, 2, 3], "item_id": [10, 12, 10]})
    truths = {"main": truth[truth["visitor_id"] < 3], "all": truth}
    # Everyone gets item 10 first; only visitors 1 and 3 bought it.
    challenger = pd.DataFrame(
        {"visitor_id": [1, 2, 3], "rank": [1, 1, 1], "item_id": [10, 10, 10], "score": 1.0}
    )
    context = ItemContext(
        categories=pd.Series({10: 5, 11: 5, 12: 6}),
        popularity=pd.Series({10: 1, 11: 1}),
        n_visitors=2,
        catalog_size=3,
    )
    attributes = pd.DataFrame({"visitor_id": [1, 2], "region": ["north", "south"]})
    audit = audit_lists(
        {"challenger": challenger},
        {"new": {"ndcg_at_10": 0.5}},
        truths,
        (10,),
        context,
        train,
        pd.Timestamp("2015-09-04", tz="UTC"),
        AuditConfig(max_exposure_gini=0.5),
        attributes,
    )
    tenure = {label: m["ndcg_at_10"] for label, m in audit["segments"]["tenure"].items()}
    assert tenure == {"over_30_days": 0.0, "under_7_days": 1.0, "unseen": 1.0}
    region = {label: m["ndcg_at_10"] for label, m in audit["segments"]["region"].items()}
    assert region == {"north": 1.0, "south": 0.0, "unknown": 1.0}
    # One item of three takes every slot: Gini (2*3 - 3 - 1) * 3 / (3 * 3) = 2/3.
    assert audit["exposure_gini"]["challenger"] == pytest.approx(2 / 3, abs=1e-6)
    assert audit["exposure_by_category"]["challenger"] == {"5": 1.0}
    assert [w.split(" ")[0] for w in audit["warnings"]] == ["exposure", "tenure", "region"]


def test_repeat_shares_count_what_visitors_had_already_touched_or_bought():
    import pandas as pd

    from jobs.evaluate import repeat_shares

    columns = ["visitor_id", "item_id", "event_type"]
    train = pd.DataFrame([(1, 10, "purchase"), (1, 11, "view"), (2, 12, "view")], columns=columns)
    test = pd.DataFrame(
        [(1, 10, "purchase"), (1, 11, "purchase"), (2, 13, "view"), (3, 12, "view")],
        columns=columns,
    )
    # Pairs: (1,10) and (1,11) seen of 4; purchases: (1,10) rebought of 2.
    assert repeat_shares(train, test) == {"pairs": 0.5, "purchases": 0.5}
    assert repeat_shares(train, test[test["event_type"] == "view"])["purchases"] is None


def test_diagnostics_sample_is_seeded_by_the_date_and_keeps_the_main_visitors_share():
    import numpy as np

    from jobs.evaluate import diagnostics_sample

    visitors, main = np.arange(1000, 0, -1), np.arange(1, 101)  # a tenth are main visitors
    day = date(2015, 9, 18)
    sample = diagnostics_sample(visitors, main, 50, day)
    assert len(np.unique(sample)) == 50 and (np.diff(sample) > 0).all()
    assert np.isin(sample, main).sum() == 5
    # A rerun of the date draws the same visitors, the next day others.
    assert (diagnostics_sample(visitors, main, 50, day) == sample).all()
    assert set(diagnostics_sample(visitors, main, 50, date(2015, 9, 19))) != set(sample)
    # 0, or a sample as large as the test window, is every visitor.
    for size in (0, 1000, 5000):
        assert (diagnostics_sample(visitors, main, size, day) == np.arange(1, 1001)).all()
    # One main visitor in a thousand still gets a place in a sample of ten (the share rounds up).
    assert np.isin(diagnostics_sample(visitors, main[:1], 10, day), main[:1]).sum() == 1


def test_score_model_main_metrics_on_every_main_visitor_the_rest_on_the_sample():
    import numpy as np

    from jobs.evaluate import restrict, score_model
    from jobs.recommenders.metrics import segment_visitors

    recs = pd.DataFrame(
        {"visitor_id": [1, 1, 2, 2, 3], "rank": [1, 2, 1, 2, 1], "item_id": [10, 11, 12, 10, 10]}
    )
    warm = pd.DataFrame({"visitor_id": [1, 2], "item_id": [10, 10]})
    cold = pd.DataFrame({"visitor_id": [3], "item_id": [13]})
    truths = {"main": warm, "warm": warm, "cold": cold, "all": pd.concat([warm, cold])}
    context = ItemContext(
        categories=pd.Series({10: 1, 11: 1, 12: 2}),
        popularity=pd.Series({10: 2, 11: 1, 12: 1}),
        n_visitors=2,
        catalog_size=4,
    )
    sample = np.array([2, 3])
    segments = segment_visitors(pd.Series({1: 30, 2: 3}), sample)
    result = score_model(
        recs, truths["main"], restrict(truths, sample), (2,), context, segments, None
    )
    # Main: visitor 1 hits at rank 1 (NDCG 1), visitor 2 at rank 2 (1 / log2(3)).
    assert result["users"] == 2
    assert result["ndcg_at_2"] == pytest.approx((1 + 0.63093) / 2, abs=1e-5)
    # Groups and segments: visitors 2 (warm) and 3 (cold, no hit) of the sample only.
    groups = {g: (m["users"], m["ndcg_at_2"]) for g, m in result["groups"].items()}
    assert groups == {
        "all": (2, pytest.approx(0.63093 / 2, abs=1e-5)),
        "warm": (1, pytest.approx(0.63093, abs=1e-5)),
        "cold": (1, 0.0),
    }
    assert list(result["segments"]) == ["new"] and result["segments"]["new"]["users"] == 2


def test_split_by_scope_keeps_the_gate_models_main_metrics_apart_from_the_sample():
    from jobs.evaluate import split_by_scope

    groups = {"all": {"ndcg_at_10": 0.1}}
    results = {
        "challenger": {"users": 5, "ndcg_at_10": 0.2, "groups": groups, "segments": groups},
        "user_knn": {"users": 2, "ndcg_at_10": 0.3, "groups": groups},
        "oracle": {"users": 5, "ndcg_at_10": 0.4},
    }
    full, sample = split_by_scope(results)
    assert full == {
        "challenger": {"users": 5, "ndcg_at_10": 0.2},
        "oracle": {"users": 5, "ndcg_at_10": 0.4},
    }
    assert sample == {
        "challenger": {"groups": groups, "segments": groups},
        "user_knn": results["user_knn"],
    }
