"""The command line every stage shares: ``--run-date YYYY-MM-DD --config PATH``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from jobs.infra.config import Config, load_config
from jobs.infra.paths import Lake


@dataclass(frozen=True)
class StageArgs:
    run_date: date
    cfg: Config
    extras: dict = field(default_factory=dict)

    @property
    def lake(self) -> Lake:
        return Lake(self.cfg.paths.lake)


def parse_stage_args(
    argv: list[str] | None,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> StageArgs:
    """Parse the shared flags (plus any a stage adds), set up logging, load the config."""
    parser = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0])
    parser.add_argument(
        "--run-date", required=True, type=date.fromisoformat, help="logical date, YYYY-MM-DD"
    )
    parser.add_argument("--config", required=True, help="config file, e.g. configs/local.yaml")
    if add_arguments is not None:
        add_arguments(parser)
    args = vars(parser.parse_args(argv))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # py4j logs every gateway call at INFO; its chatter buries the stage's own lines.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    run_date, config = args.pop("run_date"), args.pop("config")
    return StageArgs(run_date=run_date, cfg=load_config(config), extras=args)
