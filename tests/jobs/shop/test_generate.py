"""Properties of the synthetic shop, checked on the files as written (tiny scales, seconds)."""

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jobs.shop import generate
from jobs.shop.generate import GeneratorConfigError, main

EVENT_TYPES = {"view", "addtocart", "transaction"}
BOT_KINDS = ("crawler", "sweeper", "scraper", "stock_checker", "cart_sweeper", "scalper", "monitor")
SCALE, SEED = 0.005, 7


def _generate(out: Path, scale: float = SCALE, seed: int = SEED, *extra: str) -> Path:
    assert main(["--out", str(out), "--scale", str(scale), "--seed", str(seed), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("shop"))


def _is_well_formed(fields: list[str]) -> bool:
    """The contract of a clean events.csv row, written out independently of the generator."""
    if len(fields) != 5:
        return False
    ts, visitor, event, item, tid = fields
    if not (ts.isdigit() and visitor.isdigit() and item.isdigit() and event in EVENT_TYPES):
        return False
    return tid.isdigit() if event == "transaction" else tid == ""


def _read_lines(shop: Path) -> list[tuple[int, list[str]]]:
    """(file line number, fields) of every data line; the header is line 1."""
    with (shop / "events.csv").open(newline="") as f:
        return list(enumerate(csv.reader(f), start=1))[1:]


def _events(shop: Path) -> pd.DataFrame:
    """Well-formed rows of events.csv, duplicates kept, with their line number."""
    rows = [(n, *fields) for n, fields in _read_lines(shop) if _is_well_formed(fields)]
    df = pd.DataFrame(rows, columns=["line", "timestamp", "visitorid", "event", "itemid", "tid"])
    return df.astype({"timestamp": "int64", "visitorid": "int64", "itemid": "int64"})


def _properties(shop: Path) -> pd.DataFrame:
    return pd.read_csv(shop / "item_properties.csv")


def _ids(shop: Path, name: str) -> set[int]:
    return set(pd.read_csv(shop / "ground_truth" / name).iloc[:, 0])


def _summary(shop: Path) -> dict:
    return json.loads((shop / "ground_truth" / "summary.json").read_text())


def _file_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = _file_bytes(_generate(tmp_path / "a", 0.001, 3))
    second = _file_bytes(_generate(tmp_path / "b", 0.001, 3))
    other = _file_bytes(_generate(tmp_path / "c", 0.001, 4))
    assert len(first) >= 12
    assert first == second
    assert first["events.csv"] != other["events.csv"]
    assert first["item_properties.csv"] != other["item_properties.csv"]


def test_headers_are_exactly_the_retailrocket_ones(shop: Path) -> None:
    def header(name: str) -> str:
        return (shop / name).read_text().split("\n", 1)[0]

    assert header("events.csv") == "timestamp,visitorid,event,itemid,transactionid"
    assert header("item_properties.csv") == "timestamp,itemid,property,value"
    assert header("category_tree.csv") == "categoryid,parentid"
    assert header("ground_truth/bots.csv") == "visitorid,kind"
    assert header("ground_truth/malformed.csv") == "line,kind"


def test_malformed_lines_are_exactly_the_listed_ones(shop: Path) -> None:
    bad = {n: fields for n, fields in _read_lines(shop) if not _is_well_formed(fields)}
    listed = pd.read_csv(shop / "ground_truth" / "malformed.csv")
    assert set(listed["line"]) == set(bad)
    assert set(listed["kind"]) == {
        "bad_timestamp",
        "missing_visitorid",
        "unknown_event",
        "transaction_without_id",
        "wrong_field_count",
    }
    for line, kind in zip(listed["line"], listed["kind"], strict=True):
        fields = bad[line]
        if kind == "wrong_field_count":
            assert len(fields) != 5
        elif kind == "transaction_without_id":
            assert fields[2] == "transaction" and fields[4] == ""
        elif kind == "unknown_event":
            assert fields[2] not in EVENT_TYPES
        elif kind == "missing_visitorid":
            assert fields[1] == ""
        else:
            assert not fields[0].isdigit()
    n_lines = len(_read_lines(shop))
    assert 0 < len(listed) <= 0.005 * n_lines


def test_transactionid_is_set_exactly_on_transaction_rows(shop: Path) -> None:
    events = _events(shop)
    is_transaction = events["event"] == "transaction"
    assert is_transaction.any()
    assert (events.loc[is_transaction, "tid"] != "").all()
    assert (events.loc[~is_transaction, "tid"] == "").all()


def test_rows_are_sorted_by_timestamp_within_the_period(shop: Path) -> None:
    ts = _events(shop)["timestamp"].to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert pd.Timestamp("2015-05-03", tz="UTC").value // 10**6 <= ts.min()
    assert ts.max() < pd.Timestamp("2015-09-19", tz="UTC").value // 10**6


def test_funnel_ratios_match_retailrocket(shop: Path) -> None:
    counts = _events(shop).drop_duplicates()["event"].value_counts()
    assert counts["addtocart"] / counts["view"] == pytest.approx(0.026, abs=0.008)
    assert counts["transaction"] / counts["addtocart"] == pytest.approx(0.32, abs=0.08)


def test_no_event_before_its_item_is_launched(shop: Path) -> None:
    launch = _properties(shop).groupby("itemid")["timestamp"].min()
    events = _events(shop)
    assert events["itemid"].isin(launch.index).all()
    assert (events["timestamp"] >= events["itemid"].map(launch)).all()
    start_ms = pd.Timestamp("2015-05-03", tz="UTC").value // 10**6
    assert (launch > start_ms).mean() > 0.1  # a share of the catalog launches mid-period


def test_carts_and_purchases_only_on_available_items(shop: Path) -> None:
    stock = _properties(shop).query("property == 'available'")[["timestamp", "itemid", "value"]]
    events = _events(shop).query("event != 'view'").sort_values("timestamp")
    merged = pd.merge_asof(events, stock.sort_values("timestamp"), on="timestamp", by="itemid")
    assert len(merged) > 50
    assert (merged["value"].astype(int) == 1).all()


def test_carts_and_purchases_follow_a_view_of_the_same_item(shop: Path) -> None:
    events = _events(shop)
    first_view = events.query("event == 'view'").groupby(["visitorid", "itemid"])["timestamp"].min()
    later = events.query("event != 'view'").join(
        first_view.rename("viewed"), on=["visitorid", "itemid"]
    )
    assert len(later) > 50
    assert (later["viewed"] < later["timestamp"]).all()  # NaN (never viewed) fails too


def _bot_signs(rows: pd.DataFrame) -> dict:
    """What a bot cleaning stage could see of one visitor, computed here from the file alone."""
    ts = np.unique(rows["timestamp"].to_numpy())
    views = rows[rows["event"] == "view"].sort_values(["timestamp", "itemid"])["itemid"]
    per_day = rows.groupby(rows["timestamp"] // 86_400_000).size()
    return {
        "median_gap_s": np.median(np.diff(ts)) / 1000,
        "max_per_day": per_day.max(),
        "max_per_minute": (np.searchsorted(ts, ts + 60_000) - np.arange(ts.size)).max(),
        "ascending": (np.diff(views.to_numpy()) > 0).mean(),
        "carts": (rows["event"] == "addtocart").sum(),
        "items": rows["itemid"].nunique(),
    }


def _check_bots(shop: Path, expected_kinds: tuple[str, ...]) -> None:
    events = _events(shop).drop(columns="line").drop_duplicates()
    kinds = pd.read_csv(shop / "ground_truth" / "bots.csv").set_index("visitorid")["kind"]
    assert set(kinds) == set(expected_kinds)
    humans = events[~events["visitorid"].isin(kinds.index)].groupby("visitorid").size()
    for bot, kind in kinds.items():
        rows = events[events["visitorid"] == bot]
        signs = _bot_signs(rows)
        assert len(rows) >= 150 and len(rows) > humans.quantile(0.999), kind
        assert (rows["event"] != "transaction").all(), kind
        assert (signs["carts"] > 0) == (kind in ("stock_checker", "cart_sweeper", "scalper")), kind
        walks = kind in ("sweeper", "cart_sweeper")
        assert signs["ascending"] > 0.9 if walks else signs["ascending"] < 0.7, kind
        if kind in ("crawler", "sweeper"):  # fast, in one run
            assert signs["median_gap_s"] <= 10 and signs["max_per_day"] > 100, kind
        else:  # stays under a daily volume cap
            assert signs["max_per_day"] <= 200, kind
        if kind in ("scraper", "stock_checker"):
            assert signs["median_gap_s"] <= 6, kind
        if kind in ("cart_sweeper", "scalper", "monitor"):  # human pace
            assert signs["median_gap_s"] >= 10, kind
        # Only the scalper bursts: 35+ instants inside one minute.
        assert (signs["max_per_minute"] >= 35) == (kind == "scalper"), kind
        if kind == "monitor":  # the same few watched items, day after day
            assert signs["items"] <= 60 and len(rows) >= 3 * signs["items"], kind


def test_bots_of_each_kind_show_their_signs_and_never_buy(shop: Path, tmp_path: Path) -> None:
    # 6 bots at the module's scale: one of each kind but the last (monitor); 8 at 0.008.
    _check_bots(shop, BOT_KINDS[:-1])
    _check_bots(_generate(tmp_path / "bots", 0.008), BOT_KINDS)


def test_test_accounts_buy_the_listed_test_items(shop: Path) -> None:
    events = _events(shop)
    accounts, items = _ids(shop, "test_accounts.csv"), _ids(shop, "test_items.csv")
    assert 1 <= len(accounts) <= 5 and 1 <= len(items) <= 10
    bought = events.query("event == 'transaction'")
    by_accounts = bought[bought["visitorid"].isin(accounts)]
    assert len(by_accounts) > 0 and by_accounts["itemid"].isin(items).all()
    assert bought.loc[bought["itemid"].isin(items), "visitorid"].isin(accounts).all()


def test_summary_totals_match_a_count_of_the_files(shop: Path) -> None:
    summary, events = _summary(shop), _events(shop)
    distinct = events.drop(columns="line").drop_duplicates()
    malformed = pd.read_csv(shop / "ground_truth" / "malformed.csv")["kind"].value_counts()
    bots = _ids(shop, "bots.csv")
    assert summary["lines"] == len(_read_lines(shop))
    assert summary["events"] == {
        **distinct["event"].value_counts().to_dict(),
        "total": len(distinct),
    }
    assert summary["duplicate_lines"] == len(events) - len(distinct) > 0
    assert summary["malformed_lines"] == {**malformed.to_dict(), "total": int(malformed.sum())}
    assert summary["visitors"] == distinct["visitorid"].nunique()
    assert summary["items"] == distinct["itemid"].nunique()
    assert summary["transactions"] == distinct.loc[distinct["tid"] != "", "tid"].nunique()
    assert summary["bots"] == len(bots)
    assert summary["bot_events"] == distinct["visitorid"].isin(bots).sum()
    assert summary["catalog_items"] == _properties(shop)["itemid"].nunique()
    assert summary["item_property_rows"] == len(_properties(shop))
    assert summary["categories"] == len(pd.read_csv(shop / "category_tree.csv"))
    assert (summary["seed"], summary["scale"]) == (SEED, SCALE)
    assert (summary["start"], summary["end"]) == ("2015-05-03", "2015-09-18")


def test_duplicates_are_listed_and_repeat_the_line_before(shop: Path) -> None:
    lines = (shop / "events.csv").read_text().split("\n")
    listed = pd.read_csv(shop / "ground_truth" / "duplicates.csv")
    assert len(listed) == _summary(shop)["duplicate_lines"]
    for line, original in zip(listed["line"], listed["original_line"], strict=True):
        assert lines[line - 1] == lines[original - 1]


def test_category_tree_has_retailrocket_shape(shop: Path) -> None:
    tree = pd.read_csv(shop / "category_tree.csv")
    assert tree["categoryid"].is_unique
    assert 1_500 <= len(tree) <= 1_800
    assert tree["parentid"].isna().sum() == 25
    parent = tree.set_index("categoryid")["parentid"].dropna().astype(int)
    assert parent.isin(tree["categoryid"]).all()
    depth, node = 0, parent
    while len(node):  # climb until every chain reaches a root; a cycle would never end
        node = node.map(parent).dropna().astype(int)
        depth += 1
        assert depth <= 8
    assert depth >= 3


def test_item_properties_model_stock_and_category_changes(shop: Path) -> None:
    props = _properties(shop)
    assert set(props["property"]) == {"categoryid", "available"}
    available = props.query("property == 'available'")
    assert set(available["value"].astype(int)) == {0, 1}
    per_item = available.groupby("itemid")["value"].agg(lambda v: "".join(v.astype(str)))
    assert per_item.str.contains("10").any()  # goes out of stock
    assert per_item.str.contains("101").any()  # and comes back
    categories = props.query("property == 'categoryid'").groupby("itemid")["value"].nunique()
    assert 0 < (categories > 1).mean() < 0.05
    assert props["timestamp"].is_monotonic_increasing


def test_ids_are_sparse_and_non_negative(shop: Path) -> None:
    events, catalog = _events(shop), _properties(shop)["itemid"].unique()
    assert events["visitorid"].min() >= 0 and catalog.min() >= 0
    assert catalog.max() > 1.5 * len(catalog)


def test_visitors_are_heavy_tailed_and_some_return(shop: Path) -> None:
    events = _events(shop)
    humans = events[
        ~events["visitorid"].isin(_ids(shop, "bots.csv") | _ids(shop, "test_accounts.csv"))
    ]
    per_visitor = humans.groupby("visitorid")["timestamp"].agg(["size", "min", "max"])
    assert 0.5 < (per_visitor["size"] == 1).mean() < 0.9
    assert per_visitor["size"].max() >= 20
    returning = (per_visitor["max"] - per_visitor["min"]) > 86_400_000
    assert 0.02 < returning.mean() < 0.3
    assert len(per_visitor) == pytest.approx(SCALE * 1_407_580, rel=0.05)


def test_scale_grows_traffic_linearly_and_catalog_by_square_root(tmp_path: Path) -> None:
    small_shop, large_shop = _generate(tmp_path / "s", 0.002), _generate(tmp_path / "l", 0.008)
    small, large = _summary(small_shop), _summary(large_shop)
    assert large["events"]["total"] / small["events"]["total"] == pytest.approx(4, rel=0.15)
    assert large["visitors"] / small["visitors"] == pytest.approx(4, rel=0.1)
    assert large["catalog_items"] / small["catalog_items"] == pytest.approx(2, rel=0.1)
    # Test ids hang on the seed alone, so a config can list them once for every scale.
    for name in ("test_accounts.csv", "test_items.csv"):
        assert _ids(small_shop, name) == _ids(large_shop, name)


def test_tiny_scale_still_gives_a_usable_shop(tmp_path: Path) -> None:
    summary = _summary(_generate(tmp_path / "tiny", 0.001))
    assert summary["events"]["total"] > 2_000
    assert summary["events"]["transaction"] > 5 and summary["items"] > 1_000


def test_custom_period_is_respected(tmp_path: Path) -> None:
    shop = _generate(tmp_path / "p", 0.001, 1, "--start", "2016-01-01", "--end", "2016-01-31")
    ts = _events(shop)["timestamp"]
    assert ts.min() >= pd.Timestamp("2016-01-01", tz="UTC").value // 10**6
    assert ts.max() < pd.Timestamp("2016-02-01", tz="UTC").value // 10**6


def _oracle_scores(shop: Path) -> tuple[np.ndarray, pd.Series, Callable[[int], np.ndarray]]:
    """P(item | visitor) written out from preference_model.json's formula, not the generator."""
    truth = shop / "ground_truth"
    spec = json.loads((truth / "preference_model.json").read_text())
    items = pd.read_csv(truth / "model_items.csv")
    styles = pd.read_csv(truth / "model_visitors.csv", index_col="visitorid")
    interests = pd.read_csv(truth / "model_interests.csv").groupby("visitorid")
    popularity, explore = items["popularity"].to_numpy(), spec["explore_share"]

    def score(visitorid: int) -> np.ndarray:
        mix = styles.loc[visitorid].to_numpy()
        styled = mix[items["style"].to_numpy()] * popularity
        p = explore * popularity / popularity.sum()
        rows = interests.get_group(visitorid)
        for categoryid, weight in zip(rows["categoryid"], rows["weight"], strict=True):
            in_group = (items["categoryid"] == categoryid).to_numpy()
            p[in_group] += (1 - explore) * weight * styled[in_group] / styled[in_group].sum()
        return p

    return items["itemid"].to_numpy(), items["popularity"], score


def test_preference_model_is_a_distribution_over_the_catalog(shop: Path) -> None:
    itemids, _, score = _oracle_scores(shop)
    assert set(itemids) | _ids(shop, "test_items.csv") == set(_properties(shop)["itemid"])
    styles = pd.read_csv(shop / "ground_truth" / "model_visitors.csv", index_col="visitorid")
    assert styles.sum(axis=1).to_numpy() == pytest.approx(1.0)
    for visitorid in styles.index[:5]:
        assert score(visitorid).sum() == pytest.approx(1.0)


def test_oracle_ranks_a_returning_visitors_items_far_above_popularity(shop: Path) -> None:
    itemids, popularity, score = _oracle_scores(shop)
    events = _events(shop).query("event == 'view'")
    events = events[~events["visitorid"].isin(_ids(shop, "bots.csv"))]
    per_visitor = events.groupby("visitorid")["itemid"].agg(set)
    active = per_visitor[per_visitor.map(len) >= 8]
    popular = set(itemids[np.argsort(-popularity.to_numpy())[:100]])
    oracle_hits = popularity_hits = total = 0
    for visitorid, viewed in active.head(50).items():
        top = set(itemids[np.argsort(-score(visitorid))[:100]])
        oracle_hits += len(viewed & top)
        popularity_hits += len(viewed & popular)
        total += len(viewed)
    assert len(active) >= 20
    assert oracle_hits / total > 0.3
    assert oracle_hits > 3 * popularity_hits


@pytest.mark.parametrize(
    "args",
    [
        ["--scale", "0"],
        ["--scale", "-0.5"],
        ["--scale", "nan"],
        ["--scale", "0.01", "--seed", "-1"],
        ["--scale", "0.01", "--start", "2015-09-18", "--end", "2015-05-03"],
    ],
)
def test_bad_arguments_raise_a_named_error(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(GeneratorConfigError):
        main(["--out", str(tmp_path / "x"), *args])
    assert not (tmp_path / "x").exists()


def test_files_are_written_in_blocks_of_lines_from_chunked_columns(tmp_path, monkeypatch):
    # At scale 10 a column's text passes Arrow's 2 GB per array and comes back chunked.
    monkeypatch.setattr(generate, "LINES_PER_WRITE", 2)
    ids = pa.chunked_array([["1", "2", "3"], ["4", "5"]])
    files = {
        "a.csv": ("id,n", [ids, np.array([10, -1, 30, 40, 50])]),
        "empty.csv": ("x", [pa.array([], pa.string())]),
    }

    generate.write_files(files, tmp_path)

    assert (tmp_path / "a.csv").read_bytes() == b"id,n\n1,10\n2,\n3,30\n4,40\n5,50\n"
    assert (tmp_path / "empty.csv").read_bytes() == b"x\n"
