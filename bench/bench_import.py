"""Bulk import: ``mailcli users import`` of a CSV of N users vs the sqlite3 shell's ``.import``.

The floor is the sqlite3 command-line shell importing the same file into a bare
table (three text columns, no indexes, no validation); mailcli validates every
row and writes eight columns and two indexes in one transaction.
"""

from __future__ import annotations

import shutil
import statistics

from common import mailcli_cmd, scratch_home, timed, users_csv


def bench_import(users: int = 1_000_000, repeats: int = 3) -> dict:
    with scratch_home() as (home, env):
        csv_path = users_csv(home / "users.csv", users, mixed=True)
        runs = []
        for i in range(repeats):
            run_env = {**env, "MAILCLI_DB": str(home / f"import-{i}.db")}
            result = timed(mailcli_cmd("users", "import", str(csv_path)), env=run_env)
            if f"{users} users added" not in result.stdout:
                raise RuntimeError(f"unexpected import result: {result.stdout}")
            runs.append(result)
        floor = None
        if shutil.which("sqlite3"):
            floors = [
                timed(["sqlite3", str(home / f"floor-{i}.db"), f".import --csv {csv_path} users"]).wall
                for i in range(repeats)
            ]
            floor = statistics.median(floors)
    wall = statistics.median(r.wall for r in runs)
    return {
        "users": users,
        "wall_s": wall,
        "peak_rss_mb": max(r.rss_mb for r in runs),
        "sqlite3_import_s": floor,
        "ratio_to_floor": wall / floor if floor else None,
    }
