"""Land a RetailRocket-layout export as daily arrivals: one history folder, then one per day.

The synthetic shop (and the Kaggle dump) is one set of whole files. A shop's feed delivers a day
at a time. This splits the export the way it would have arrived:

    <to>/dt=<daily_from - 1>/   every line stamped before --daily-from (the one-off history load)
    <to>/dt=<day>/              each later day's lines, for the nightly runs

Each file keeps its header and the raw lines byte for byte. A line whose timestamp cannot be read
travels with the line before it (it arrived in the same file), so the malformed rows still reach
ingest and its quarantine. category_tree.csv goes to the history folder.

    python -m jobs.shop.land --from .local/raw/retailrocket \\
        --to .local/landing/retailrocket --daily-from 2015-09-18
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DAY_MS = 86_400_000
SPLIT_FILES = ("events.csv", "item_properties.csv")
HISTORY_FILES = ("category_tree.csv",)


def day_of(line: str, previous: date) -> date:
    """The UTC day of a line's leading epoch-ms timestamp, or `previous` if it does not read."""
    head = line.split(",", 1)[0]
    try:
        return datetime.fromtimestamp(int(head) // 1000, UTC).date()
    except (ValueError, OverflowError, OSError):
        return previous


def split_lines(lines, daily_from: date) -> dict[date, list[str]]:
    """Lines keyed by the folder they land in: days before daily_from share daily_from - 1."""
    history = daily_from - timedelta(days=1)
    out: dict[date, list[str]] = {}
    current = history
    for line in lines:
        current = day_of(line, current)
        out.setdefault(max(current, history), []).append(line)
    return out


def land(source: Path, target: Path, daily_from: date) -> dict[str, dict[str, int]]:
    """Write the landing folders under `target`; returns lines per file per folder."""
    written: dict[str, dict[str, int]] = {}
    history = daily_from - timedelta(days=1)
    for name in SPLIT_FILES:
        path = source / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {source} a RetailRocket-layout export?")
        with path.open(newline="") as handle:
            header = handle.readline()
            by_day = split_lines(handle, daily_from)
        for day, lines in sorted(by_day.items()):
            folder = target / f"dt={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / name).open("w", newline="") as out:
                out.write(header)
                out.writelines(lines)
            written.setdefault(folder.name, {})[name] = len(lines)
    for name in HISTORY_FILES:
        if (source / name).is_file():
            folder = target / f"dt={history.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--to", dest="target", type=Path, required=True)
    parser.add_argument("--daily-from", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    written = land(args.source, args.target, args.daily_from)
    print(json.dumps({"landed": args.target.as_posix(), "folders": len(written)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
