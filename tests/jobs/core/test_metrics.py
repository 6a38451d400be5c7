import pandas as pd
import pytest

from jobs.core.metrics import EmptyEvaluationError, ranking_metrics


def _recs(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "rank", "item_id"])


def _truth(rows):
    return pd.DataFrame(rows, columns=["visitor_id", "item_id"])


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


def test_items_outside_the_truth_users_do_not_count():
    recs = _recs([(1, 1, 10), (9, 1, 10)])
    m = ranking_metrics(recs, _truth([(1, 10)]), ks=(1,))
    assert m == {
        "users": 1,
        "precision_at_1": 1.0,
        "recall_at_1": 1.0,
        "ndcg_at_1": 1.0,
        "hit_rate_at_1": 1.0,
    }


def test_empty_truth_is_an_error():
    with pytest.raises(EmptyEvaluationError):
        ranking_metrics(_recs([(1, 1, 10)]), _truth([]), ks=(10,))
