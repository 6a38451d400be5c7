from datetime import date

import pytest

from jobs.shop.land import land, split_lines

DAY = 86_400_000
T = 1442448000000  # 2015-09-17 00:00:00 UTC in ms


def test_split_lines_puts_history_in_one_folder_and_later_days_in_their_own():
    lines = [
        f"{T - 3 * DAY},1,view,10,\n",
        f"{T},1,view,10,\n",
        "2015-09-17 10:00:00,1,view,10,\n",  # unreadable: arrives with the line before it
        f"{T + DAY},2,view,11,\n",
        f"{T + 2 * DAY},3,view,12,\n",
    ]
    out = split_lines(lines, daily_from=date(2015, 9, 18))
    assert out == {
        date(2015, 9, 17): lines[:3],
        date(2015, 9, 18): [lines[3]],
        date(2015, 9, 19): [lines[4]],
    }


def test_land_keeps_headers_and_every_line(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    header = "timestamp,visitorid,event,itemid,transactionid\n"
    (src / "events.csv").write_text(header + f"{T},1,view,10,\n{T + DAY},2,view,11,\n")
    (src / "item_properties.csv").write_text(
        f"timestamp,itemid,property,value\n{T},10,available,1\n"
    )
    (src / "category_tree.csv").write_text("categoryid,parentid\n1,\n")
    written = land(src, tmp_path / "landing", date(2015, 9, 18))
    assert written == {
        "dt=2015-09-17": {"events.csv": 1, "item_properties.csv": 1},
        "dt=2015-09-18": {"events.csv": 1},
    }
    day = (tmp_path / "landing/dt=2015-09-18/events.csv").read_text()
    assert day == header + f"{T + DAY},2,view,11,\n"
    assert (tmp_path / "landing/dt=2015-09-17/category_tree.csv").is_file()


def test_land_names_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="RetailRocket-layout export"):
        land(tmp_path, tmp_path / "landing", date(2015, 9, 18))
