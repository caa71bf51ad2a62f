"""Bulk import: ``mailcli users import`` of a CSV of N users vs the sqlite3 shell's ``.import``.

The floor is the sqlite3 command-line shell importing the same file into a bare
table (three text columns, no indexes, no validation); mailcli validates every
row and writes eight columns and two indexes in one transaction. A second
reference, the "schema floor", has the sqlite3 shell alone write the same rows
into mailcli's own users table (its columns and indexes, no validation): what
SQLite itself needs for this schema.
"""

from __future__ import annotations

import shutil
import statistics

from common import mailcli_cmd, scratch_home, timed, users_csv

SCHEMA_FLOOR_SQL = (
    "BEGIN IMMEDIATE; "
    "INSERT INTO users (phone_number, operator_code, tag, tag_key, time_zone, created_at, updated_at) "
    "SELECT phone_number, substr(phone_number, 2, 3), tag, lower(tag), time_zone, "
    "'2026-12-04 16:00:00.000000', '2026-12-04 16:00:00.000000' FROM staged; "
    "COMMIT;"
)


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
        floor = schema_floor = None
        if shutil.which("sqlite3"):
            floors = [
                timed(["sqlite3", str(home / f"floor-{i}.db"), f".import --csv {csv_path} users"]).wall
                for i in range(repeats)
            ]
            floor = statistics.median(floors)
            schema_floors = []
            for i in range(repeats):
                db = home / f"schema-floor-{i}.db"
                timed(mailcli_cmd("users", "list", "--limit", "0"), env={**env, "MAILCLI_DB": str(db)})
                schema_floors.append(timed(["sqlite3", str(db), f".import --csv {csv_path} staged", SCHEMA_FLOOR_SQL]).wall)
            schema_floor = statistics.median(schema_floors)
    wall = statistics.median(r.wall for r in runs)
    return {
        "users": users,
        "wall_s": wall,
        "peak_rss_mb": max(r.rss_mb for r in runs),
        "sqlite3_import_s": floor,
        "ratio_to_floor": wall / floor if floor else None,
        "sqlite3_schema_floor_s": schema_floor,
        "ratio_to_schema_floor": wall / schema_floor if schema_floor else None,
    }
