"""jobs/infra/progress.py: lines at a steady interval, with rate and time left, and a last one."""

import logging

from jobs.infra.progress import Progress


def test_progress_logs_at_most_every_interval_and_once_at_the_end(caplog):
    now = [100.0]
    progress = Progress(logging.getLogger("t"), "export", 1_407_556, "visitors", 30, lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        for seconds, n in [(10, 100_000), (31, 312_000), (40, 50_000), (200, 945_556)]:
            now[0] = 100.0 + seconds
            progress.advance(n)
    assert caplog.messages == [
        # 412,000 in 31 s: 13.3k/s, 995,556 left: 75 s
        "export: 412,000 / 1,407,556 visitors, 13.3k/s, about 75 s left",
        "export: 1,407,556 / 1,407,556 visitors, 7.0k/s, done in 3 min",
    ]


def test_a_slow_task_says_its_time_left_in_minutes_or_hours():
    progress = Progress(logging.getLogger("t"), "similar items", 10_000, "items", 30, lambda: 0.0)
    progress.done = 100
    assert progress.line(30.0) == "similar items: 100 / 10,000 items, 3.3/s, about 50 min left"
    assert progress.line(600.0) == "similar items: 100 / 10,000 items, 0.2/s, about 16.5 h left"
