"""Start-up: ``mailcli --help`` and ``mailcli users list`` on a small database (median of repeats)."""

from __future__ import annotations

import statistics
import sys

from common import mailcli_cmd, scratch_home, timed, users_csv


def bench_startup(repeats: int = 15) -> dict:
    with scratch_home() as (home, env):
        timed(mailcli_cmd("users", "import", str(users_csv(home / "users.csv", 50))), env=env)
        python = statistics.median(timed([sys.executable, "-c", "pass"], env=env).wall for _ in range(repeats))
        help_ = statistics.median(timed(mailcli_cmd("--help"), env=env).wall for _ in range(repeats))
        listing = [timed(mailcli_cmd("users", "list"), env=env) for _ in range(repeats)]
    return {
        "python_s": python,
        "help_s": help_,
        "users_list_s": statistics.median(r.wall for r in listing),
        "users_list_rss_mb": statistics.median(r.rss_mb for r in listing),
    }
