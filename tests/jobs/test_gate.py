import pytest

from jobs.gate import decide
from jobs.infra.config import GateConfig

RULES = GateConfig(min_lift_over_popularity=0.10, max_regression_vs_champion=0.02)


def _m(ndcg):
    return {"ndcg_at_10": ndcg}


def test_first_model_passes_when_it_beats_popularity_by_the_margin():
    decision = decide(_m(0.12), _m(0.10), None, RULES)
    assert decision.promote
    assert decision.reasons[1] == "no champion yet"


@pytest.mark.parametrize(
    ("challenger", "popularity", "champion", "promote"),
    [
        (0.109, 0.10, None, False),  # beats popularity, but by less than 10 %
        (0.111, 0.10, None, True),  # just over the margin
        (0.20, 0.10, 0.204, True),  # 2 % under the champion is tolerated
        (0.20, 0.10, 0.21, False),  # 4.8 % under the champion is not
        (0.0, 0.0, None, False),  # a model that finds nothing never passes
    ],
)
def test_decisions_at_the_edges(challenger, popularity, champion, promote):
    champ = None if champion is None else _m(champion)
    assert decide(_m(challenger), _m(popularity), champ, RULES).promote is promote


def test_reasons_name_the_failing_comparison():
    decision = decide(_m(0.20), _m(0.10), _m(0.30), RULES)
    assert not decision.promote
    assert decision.reasons[1] == "ndcg_at_10 0.2000 < champion 0.3000 x 0.98"


def test_missing_metric_is_an_error():
    with pytest.raises(KeyError, match="ndcg_at_10"):
        decide({}, _m(0.1), None, RULES)
