import pandas as pd

from jobs.evaluate import exposure_by_popularity_decile, truth_sets


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
