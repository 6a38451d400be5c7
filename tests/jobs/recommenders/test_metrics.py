import math

import pandas as pd
import pytest

from jobs.recommenders.metrics import (
    EmptyEvaluationError,
    ItemContext,
    MetricInputError,
    beyond_accuracy_metrics,
    flatten_metrics,
    metrics_by_segment,
    offline_metrics,
    ranking_metrics,
    segment_visitors,
    segment_warm_cold,
)


def _recs(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "rank", "item_id"])


def _truth(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "item_id"])


def _lists(lists):
    """{visitor: [item at rank 1, item at rank 2, ...]} as a recs frame."""
    return _recs([(v, r, i) for v, items in lists.items() for r, i in enumerate(items, start=1)])


def test_exact_values_on_a_hand_computed_fixture():
    # Visitor 1: hits at ranks 1 and 3 of 3; relevant {10, 30, 99}.
    # Visitor 2: no hit; relevant {50}. Visitor 3: relevant {70} but no list at all.
    recs = _recs([(1, 1, 10), (1, 2, 20), (1, 3, 30), (2, 1, 40), (2, 2, 41), (2, 3, 42)])
    truth = _truth([(1, 10), (1, 30), (1, 99), (2, 50), (3, 70), (1, 10)])
    m = ranking_metrics(recs, truth, ks=(1, 3))
    assert m["users"] == 3
    assert m["precision_at_1"] == pytest.approx(1 / 3)
    assert m["precision_at_3"] == pytest.approx((2 / 3) / 3)
    assert m["recall_at_3"] == pytest.approx((2 / 3) / 3)
    # DCG_1 = 1 + 1/log2(4) = 1.5; IDCG_1 = 1 + 1/log2(3) + 1/2 = 2.1309298
    assert m["ndcg_at_3"] == pytest.approx((1.5 / 2.1309298) / 3, rel=1e-6)
    assert m["ndcg_at_1"] == pytest.approx(1 / 3)
    assert m["hit_rate_at_3"] == pytest.approx(1 / 3)
    # AP@3 of visitor 1 = (P@1 + P@3) / min(3, 3) = (1 + 2/3) / 3 = 5/9; the others 0.
    assert m["map_at_3"] == pytest.approx((5 / 9) / 3)
    assert m["mrr_at_3"] == pytest.approx(1 / 3)


# Visitor 1: list 11 12 13 14, relevant {13, 14}: hits at ranks 3, 4.
# Visitor 2: list 11 13 15 16, relevant {11, 15, 16, 17, 18}: hits at ranks 1, 3, 4.
# Visitor 3: list 12 11, relevant {19}: no hit.
MAP_RECS = {1: [11, 12, 13, 14], 2: [11, 13, 15, 16], 3: [12, 11]}
MAP_TRUTH = [(1, 13), (1, 14), (2, 11), (2, 15), (2, 16), (2, 17), (2, 18), (3, 19)]


def test_map_and_mrr_on_a_hand_computed_fixture():
    m = ranking_metrics(_lists(MAP_RECS), _truth(MAP_TRUTH), ks=(2, 4))
    # AP@2: v1 no hit in the top 2 -> 0; v2 P@1 = 1, / min(5, 2) -> 1/2; v3 0.
    assert m["map_at_2"] == pytest.approx((0 + 1 / 2 + 0) / 3)  # 1/6
    # AP@4: v1 (P@3 + P@4) / min(2, 4) = (1/3 + 2/4) / 2 = 5/12;
    #       v2 (P@1 + P@3 + P@4) / min(5, 4) = (1 + 2/3 + 3/4) / 4 = 29/48; v3 0.
    assert m["map_at_4"] == pytest.approx((5 / 12 + 29 / 48 + 0) / 3)  # 49/144
    # First hits: v1 rank 3, v2 rank 1, v3 none.
    assert m["mrr_at_2"] == pytest.approx((0 + 1 + 0) / 3)
    assert m["mrr_at_4"] == pytest.approx((1 / 3 + 1 + 0) / 3)  # 4/9
    assert "serendipity_at_2" not in m


def test_serendipity_counts_relevant_items_outside_the_expected_top_k():
    # Expected (popularity baseline) lists; visitor 3 has none.
    expected = _lists({1: [11, 12, 15, 16], 2: [13, 12, 11, 15]})
    m = ranking_metrics(_lists(MAP_RECS), _truth(MAP_TRUTH), ks=(2, 4), expected=expected)
    # k=2: v1 no hit in the top 2 -> 0; v2 hit 11 is expected only at rank 3, so not in the
    #      expected top 2 -> 1 unexpected hit / 2; v3 no hit -> 0.  (0 + 1/2 + 0) / 3 = 1/6
    assert m["serendipity_at_2"] == pytest.approx(1 / 6)
    # k=4: v1 hits 13, 14, neither expected -> 2/4; v2 hits 11, 15, 16, only 16 unexpected
    #      -> 1/4; v3 0.  (1/2 + 1/4 + 0) / 3 = 1/4
    assert m["serendipity_at_4"] == pytest.approx(1 / 4)
    # The accuracy metrics do not depend on `expected`.
    assert m["map_at_4"] == pytest.approx(49 / 144)


def test_items_outside_the_truth_users_do_not_count():
    recs = _recs([(1, 1, 10), (9, 1, 10)])
    m = ranking_metrics(recs, _truth([(1, 10)]), ks=(1,))
    assert m == {
        "users": 1,
        "precision_at_1": 1.0,
        "recall_at_1": 1.0,
        "ndcg_at_1": 1.0,
        "hit_rate_at_1": 1.0,
        "map_at_1": 1.0,
        "mrr_at_1": 1.0,
    }


def test_empty_truth_is_an_error():
    with pytest.raises(EmptyEvaluationError):
        ranking_metrics(_recs([(1, 1, 10)]), _truth([]), ks=(10,))


def test_a_list_repeating_an_item_is_an_error():
    recs = _recs([(1, 1, 10), (1, 2, 10)])
    with pytest.raises(MetricInputError, match="repeats a item_id"):
        ranking_metrics(recs, _truth([(1, 10)]), ks=(2,))


@pytest.mark.parametrize("ks", [(), (0,), (2.5,)])
def test_bad_ks_are_an_error(ks):
    with pytest.raises(MetricInputError, match="ks"):
        ranking_metrics(_recs([(1, 1, 10)]), _truth([(1, 10)]), ks=ks)


# 8 training visitors. Item: visitors -> p(i), -log2 p(i); category.
#   1: 4 -> 1/2, 1 bit; "a"      2: 2 -> 1/4, 2 bits; "a"      3: 1 -> 1/8, 3 bits; "b"
#   4: 8 -> 1,   0 bits; NaN     5: unseen -> p = 0 for ARP, 1/9 for novelty (log2 9 bits); absent
#   6: 2 -> 1/4, 2 bits; "b"     Catalog: 6 items.
CONTEXT = ItemContext(
    categories=pd.Series({1: "a", 2: "a", 3: "b", 4: None, 6: "b"}),
    popularity=pd.Series({1: 4, 2: 2, 3: 1, 4: 8, 6: 2}),
    n_visitors=8,
    catalog_size=6,
)
BEYOND_RECS = {1: [1, 2, 3], 2: [4, 5, 1], 3: [6]}


def test_beyond_accuracy_on_a_hand_computed_fixture():
    m = beyond_accuracy_metrics(_lists(BEYOND_RECS), ks=(2, 3), context=CONTEXT)
    # Coverage: top 2 {1, 2} + {4, 5} + {6} = 5 of 6 items; top 3 adds 3 -> 6 of 6.
    assert m["coverage_at_2"] == pytest.approx(5 / 6)
    assert m["coverage_at_3"] == pytest.approx(1.0)
    # Diversity (visitor 3's one-item list skipped):
    #   k=2: v1 (a, a) -> 0 of 1 pair differs; v2 (none, none) are two own categories -> 1.
    #   k=3: v1 (a, a, b) -> 2 of 3 pairs; v2 (none, none, a) -> 3 of 3.
    assert m["diversity_at_2"] == pytest.approx((0 + 1) / 2)
    assert m["diversity_at_3"] == pytest.approx((2 / 3 + 1) / 2)
    # Novelty: k=2: v1 (1 + 2)/2 = 1.5; v2 (0 + log2 9)/2; v3 2.
    #          k=3: v1 (1 + 2 + 3)/3 = 2; v2 (0 + log2 9 + 1)/3; v3 2.
    log2_9 = math.log2(9)
    assert m["novelty_at_2"] == pytest.approx((1.5 + log2_9 / 2 + 2) / 3)  # 1.6949875
    assert m["novelty_at_3"] == pytest.approx((2 + (1 + log2_9) / 3 + 2) / 3)  # 1.7966583
    # ARP: k=2: v1 (1/2 + 1/4)/2 = 3/8; v2 (1 + 0)/2 = 1/2; v3 1/4 -> 9/24 = 3/8.
    #      k=3: v1 (1/2 + 1/4 + 1/8)/3 = 7/24; v2 (1 + 0 + 1/2)/3 = 1/2; v3 1/4 -> 25/72.
    assert m["popularity_bias_at_2"] == pytest.approx(3 / 8)
    assert m["popularity_bias_at_3"] == pytest.approx(25 / 72)


def test_beyond_accuracy_of_one_item_lists_has_no_diversity():
    m = beyond_accuracy_metrics(_lists({1: [1], 2: [3]}), ks=(1,), context=CONTEXT)
    assert math.isnan(m["diversity_at_1"])
    assert m["coverage_at_1"] == pytest.approx(2 / 6)
    assert m["novelty_at_1"] == pytest.approx((1 + 3) / 2)


def test_beyond_accuracy_rejects_a_list_repeating_a_rank():
    with pytest.raises(MetricInputError, match="repeats a rank"):
        beyond_accuracy_metrics(_recs([(1, 1, 1), (1, 1, 2)]), ks=(2,), context=CONTEXT)


def test_item_context_from_training_counts_distinct_visitors():
    train = _truth([(1, 10), (1, 10), (2, 10), (2, 20), (3, 30)])
    context = ItemContext.from_training(train, pd.Series({10: "a"}), catalog_size=5)
    assert context.n_visitors == 3
    assert context.popularity.to_dict() == {10: 2, 20: 1, 30: 1}


def test_item_context_rejects_popularity_above_the_visitor_count():
    with pytest.raises(MetricInputError, match="popularity"):
        ItemContext(pd.Series(dtype=object), pd.Series({1: 9}), n_visitors=8, catalog_size=6)


def test_offline_metrics_describes_only_the_lists_of_test_visitors():
    # Visitor 9 is not in the truth: its item 3 must not raise coverage.
    recs = _lists({**BEYOND_RECS, 9: [3]})
    truth = _truth([(1, 2), (2, 6), (3, 6)])
    m = offline_metrics(recs, truth, ks=(1,), context=CONTEXT)
    # Top 1: v1 item 1, v2 item 4, v3 item 6 -> 3 of 6; only v3 hits at rank 1.
    assert m["coverage_at_1"] == pytest.approx(3 / 6)
    assert m["precision_at_1"] == pytest.approx(1 / 3)
    assert m["users"] == 3


def test_offline_metrics_of_an_empty_test_window_is_an_error():
    with pytest.raises(EmptyEvaluationError):
        offline_metrics(_lists(BEYOND_RECS), _truth([]), ks=(1,), context=CONTEXT)


def test_segment_visitors_at_the_thresholds():
    counts = pd.Series({1: 4, 2: 5, 3: 20, 4: 21})
    labels = segment_visitors(counts, visitors=[1, 2, 3, 4, 5])
    # 5 has no training interaction: cold, so 0 < 5 -> new.
    assert labels.to_dict() == {1: "new", 2: "casual", 3: "casual", 4: "power", 5: "new"}
    assert labels.index.name == "visitor_id"


def test_segment_visitors_rejects_negative_counts_and_reversed_thresholds():
    with pytest.raises(MetricInputError, match="counts"):
        segment_visitors(pd.Series({1: -1}))
    with pytest.raises(MetricInputError, match="thresholds"):
        segment_visitors(pd.Series({1: 1}), thresholds=(20, 5))


def test_segment_warm_cold():
    counts = pd.Series({1: 3, 2: 0})
    labels = segment_warm_cold(counts, visitors=[1, 2, 3])
    assert labels.to_dict() == {1: "warm", 2: "cold", 3: "cold"}
    with pytest.raises(MetricInputError, match="more than once"):
        segment_warm_cold(pd.Series([1, 2], index=[7, 7]), visitors=[7])


def test_metrics_by_segment_scores_each_segment_on_its_own_visitors():
    # MAP fixture: power = {1, 2}, new = {3}; "casual" has no test visitor.
    segments = pd.Series({1: "power", 2: "power", 3: "new", 4: "casual"})
    by = metrics_by_segment(_lists(MAP_RECS), _truth(MAP_TRUTH), (4,), segments)
    assert set(by) == {"new", "power"}
    assert by["power"]["users"] == 2
    # power: AP@4 (5/12 + 29/48) / 2 = 49/96; RR@4 (1/3 + 1) / 2 = 2/3; precision (2/4 + 3/4) / 2
    assert by["power"]["map_at_4"] == pytest.approx(49 / 96)
    assert by["power"]["mrr_at_4"] == pytest.approx(2 / 3)
    assert by["power"]["precision_at_4"] == pytest.approx(5 / 8)
    assert by["new"] == pytest.approx(
        {
            "users": 1,
            "precision_at_4": 0.0,
            "recall_at_4": 0.0,
            "ndcg_at_4": 0.0,
            "hit_rate_at_4": 0.0,
            "map_at_4": 0.0,
            "mrr_at_4": 0.0,
        }
    )


def test_metrics_by_segment_needs_a_label_for_every_test_visitor():
    segments = pd.Series({1: "power", 2: "power"})
    with pytest.raises(MetricInputError, match="1 test visitors have no segment"):
        metrics_by_segment(_lists(MAP_RECS), _truth(MAP_TRUTH), (4,), segments)


def test_flatten_metrics_joins_keys_with_dots():
    nested = {"ndcg_at_10": 0.4, "segment": {"power": {"ndcg_at_10": 0.5, "users": 2}}}
    assert flatten_metrics(nested) == {
        "ndcg_at_10": 0.4,
        "segment.power.ndcg_at_10": 0.5,
        "segment.power.users": 2.0,
    }


def test_flatten_metrics_rejects_clashing_keys_and_non_numbers():
    with pytest.raises(MetricInputError, match="segment.power"):
        flatten_metrics({"segment.power": 1, "segment": {"power": 2}})
    with pytest.raises(MetricInputError, match="not a number"):
        flatten_metrics({"champion": None})


def test_coverage_above_one_is_an_error_naming_the_counts():
    small = ItemContext(CONTEXT.categories, CONTEXT.popularity, n_visitors=8, catalog_size=4)
    # Top 3 lists hold 6 distinct items: a share of 6 / 4 would be no share at all.
    with pytest.raises(MetricInputError, match="6 distinct items, more than catalog_size 4"):
        beyond_accuracy_metrics(_lists(BEYOND_RECS), ks=(3,), context=small)
    assert (
        beyond_accuracy_metrics(_lists(BEYOND_RECS), ks=(2,), context=CONTEXT)["coverage_at_2"] <= 1
    )
