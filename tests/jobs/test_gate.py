import json
from datetime import date

import numpy as np
import pytest

from jobs import gate
from jobs.gate import decide
from jobs.infra.config import GateConfig
from jobs.infra.paths import Lake
from jobs.recommenders.popularity import RecentPopularityRecommender

RULES = GateConfig(min_lift_over_baseline=0.10, max_regression_vs_champion=0.02)
D = date(2015, 9, 18)


def _m(ndcg, name=None):
    return {"ndcg_at_10": ndcg, **({"name": name} if name else {})}


def test_first_model_passes_when_it_beats_the_best_baseline_by_the_margin():
    decision = decide(_m(0.12), _m(0.10, "item_knn"), None, RULES)
    assert decision.promote and decision.verdict == "promoted"
    assert decision.reasons == (
        "ndcg_at_10 0.1200 >= best baseline item_knn 0.1000 x 1.10",
        "no champion yet",
    )


@pytest.mark.parametrize(
    ("challenger", "baseline", "champion", "verdict"),
    [
        (0.109, 0.10, None, "baseline_promoted"),  # beats the baseline, by less than 10 %
        (0.111, 0.10, None, "promoted"),  # just over the margin
        (0.20, 0.10, 0.204, "promoted"),  # 2 % under the champion is tolerated
        (0.20, 0.10, 0.21, "gated"),  # 4.8 % under the champion is not; nor is the baseline
        (0.0, 0.0, None, "baseline_promoted"),  # night one never publishes nothing
        (0.05, 0.30, 0.20, "baseline_promoted"),  # a stronger baseline replaces the champion
        (0.05, 0.197, 0.20, "baseline_promoted"),  # ... or holds up within 2 %
        (0.05, 0.15, 0.20, "gated"),  # a weaker one does not
    ],
)
def test_decisions_at_the_edges(challenger, baseline, champion, verdict):
    champ = None if champion is None else _m(champion)
    assert decide(_m(challenger), _m(baseline, "b"), champ, RULES).verdict == verdict


def test_a_challenger_beating_popularity_loses_to_a_stronger_baseline():
    # 26 % under item-kNN: promoting it because it beats popularity would publish worse lists.
    decision = decide(_m(0.10), _m(0.126, "item_knn"), None, RULES)
    assert not decision.promote and decision.promote_baseline
    assert decision.reasons[0] == "ndcg_at_10 0.1000 < best baseline item_knn 0.1260 x 1.10"
    assert decision.reasons[1] == "no champion yet: the best baseline item_knn is published"


def test_reasons_name_the_failing_comparison():
    decision = decide(_m(0.20), _m(0.10, "popularity"), _m(0.30), RULES)
    assert decision.verdict == "gated"
    assert decision.reasons[1] == "ndcg_at_10 0.2000 < champion 0.3000 x 0.98"


def test_missing_metric_is_an_error():
    with pytest.raises(KeyError, match="ndcg_at_10"):
        decide({}, _m(0.1), None, RULES)


def test_night_one_registers_and_serves_the_best_baseline_when_the_challenger_loses(cfg):
    import mlflow

    from jobs.infra.tracking import CHAMPION, init_tracking
    from jobs.recommenders.pyfunc import load_recommender

    lake = Lake(cfg.paths.lake)
    staged = lake.partition("models", "best_baseline", D)
    RecentPopularityRecommender(np.array([30, 10, 20]), np.array([3.0, 2.0, 1.0])).save(staged)
    init_tracking(cfg)
    with mlflow.start_run() as run:
        pass
    lake.write_stage_report(D, "train", {"run_id": run.info.run_id, "model_version": "1"})
    mlflow.MlflowClient().create_registered_model(cfg.mlflow.model_name)
    lake.write_stage_report(
        D,
        "evaluate",
        {
            "challenger": _m(0.01),
            "best_baseline": {**_m(0.2, "recent_popularity"), "path": str(staged)},
            "champion": None,
            "champion_version": None,
        },
    )

    report = gate.run(cfg, D)

    assert report["decision"] == "baseline_promoted" and report["champion_version"] == "1"
    assert report["published_family"] == "recent_popularity"
    assert json.loads(lake.stage_report(D, "gate").read_text())["decision"] == "baseline_promoted"
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(cfg.mlflow.model_name, CHAMPION)
    assert champion.tags["family"] == "recent_popular"
    served = load_recommender(f"models:/{cfg.mlflow.model_name}@{CHAMPION}")
    lists = served.recommend(np.array([5]), 2)
    assert lists[["item_id", "source"]].values.tolist() == [
        [30, "recent_popular"],
        [10, "recent_popular"],
    ]
