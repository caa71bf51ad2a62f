"""Reading at scale: ``mailings list`` and ``mailings stats --json`` with N messages in the database.

The data is built through mailcli itself: N users imported, one mailing to all
of them, its audience materialised (the first step of a run) so that the
messages table holds N rows.
"""

from __future__ import annotations

import statistics

from common import mailcli_cmd, scratch_home, timed, users_csv

SETUP = """
from datetime import timedelta
from mailcli.config import load_settings
from mailcli.db import open_database
from mailcli.delivery.store import DeliveryStore
from mailcli.validation import utcnow
db = open_database(load_settings())
added = DeliveryStore(db, "bench", timedelta(seconds=60)).refresh(utcnow()).added
print(added)
"""


def bench_read(messages: int = 1_000_000, repeats: int = 5) -> dict:
    import sys

    with scratch_home() as (home, env):
        timed(mailcli_cmd("users", "import", str(users_csv(home / "users.csv", messages))), env=env)
        timed(mailcli_cmd("mailings", "create", "-m", "Benchmark", "--tag", "python-tips", "--operator-code", "911",
                          "--start", "now", "--end", "+1h"), env=env)
        materialise = timed([sys.executable, "-c", SETUP], env=env)
        if int(materialise.stdout.strip()) != messages:
            raise RuntimeError(f"materialised {materialise.stdout.strip()} messages, expected {messages}")
        listing = [timed(mailcli_cmd("mailings", "list", "--json"), env=env) for _ in range(repeats)]
        stats_small = timed(mailcli_cmd("mailings", "stats", "1", "--json", "--limit", "1000"), env=env)
        stats = timed(mailcli_cmd("mailings", "stats", "1", "--json"), env=env, stdout_path=home / "stats.json")
        with open(home / "stats.json", "rb") as fh:
            lines = sum(1 for _ in fh)
    return {
        "messages": messages,
        "materialise_s": materialise.wall,
        "list_s": statistics.median(r.wall for r in listing),
        "list_rss_mb": max(r.rss_mb for r in listing),
        "stats_s": stats.wall,
        "stats_rows": lines - 2,
        "stats_rss_mb": stats.rss_mb,
        "stats_1000_rss_mb": stats_small.rss_mb,
    }
