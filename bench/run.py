"""mailcli's benchmarks, one command: ``python bench/run.py [--quick] [--only NAME,...] [--write]``.

Each benchmark builds its own data in a throw-away home and prints its figure
next to a reference measured in the same run (or the goal), as a ratio. With
``--write`` the results replace the table in docs/benchmarks.md. These machines
are noisy: the timings are medians where a benchmark repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bigrun import bench_bigrun  # noqa: E402
from bench_import import bench_import  # noqa: E402
from bench_read import bench_read  # noqa: E402
from bench_run import bench_run  # noqa: E402
from bench_startup import bench_startup  # noqa: E402
from bench_transport import bench_transport  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


QUICK = False  # a smoke run: sizes too small for the goals to mean anything


def _row(name: str, figure: str, reference: str, ratio: float | None, goal: str, ok: bool | None) -> dict:
    if QUICK:
        ok = None
    return {"benchmark": name, "figure": figure, "reference": reference,
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal,
            "ok": ok}


def run_benchmarks(names: set[str], quick: bool) -> tuple[list[dict], dict]:
    rows: list[dict] = []
    raw: dict = {}
    if "startup" in names:
        s = raw["startup"] = bench_startup(repeats=5 if quick else 15)
        rows.append(_row("mailcli --help", f"{s['help_s']:.3f} s", "goal 0.25 s", s["help_s"] / 0.25, "≤ 1.0",
                         s["help_s"] <= 0.25))
        rows.append(_row("mailcli users list (50 users)", f"{s['users_list_s']:.3f} s", "goal 0.6 s",
                         s["users_list_s"] / 0.6, "≤ 1.0", s["users_list_s"] <= 0.6))
    if "run" in names:
        n = 2_000 if quick else 20_000
        r = raw["run"] = bench_run(messages=n)
        exact = r["accepted_by_gateway"] == n and r["duplicates"] == 0
        rows.append(_row(f"run: {n:,} messages, 50 ms latency, concurrency 100",
                         f"{r['end_to_end_rate']:,.0f} msg/s end to end ({r['sending_rate']:,.0f} while sending)",
                         f"ideal {r['ideal_rate']:,.0f} msg/s", r["ratio_to_ideal"], "≥ 0.8",
                         r["ratio_to_ideal"] >= 0.8 and exact))
        rows.append(_row("run: CPU per message", f"{r['cpu_ms_per_message']:.3f} ms", "goal 0.5 ms",
                         r["cpu_ms_per_message"] / 0.5, "≤ 1.0", r["cpu_ms_per_message"] <= 0.5))
        rows.append(_row("run: peak memory", f"{r['peak_rss_mb']:.0f} MB", "goal 300 MB", r["peak_rss_mb"] / 300,
                         "≤ 1.0", r["peak_rss_mb"] <= 300))
    if "import" in names:
        n = 20_000 if quick else 1_000_000
        i = raw["import"] = bench_import(users=n, repeats=1 if quick else 3)
        floor = i["sqlite3_import_s"]
        rows.append(_row(f"import {n:,} users from CSV", f"{i['wall_s']:.2f} s",
                         f"sqlite3 .import {floor:.2f} s" if floor else "sqlite3 shell not found",
                         i["ratio_to_floor"], "≤ 3.0 (and ≤ 10 s)",
                         i["wall_s"] <= 10 and (i["ratio_to_floor"] or 0) <= 3))
        if i["sqlite3_schema_floor_s"]:
            rows.append(_row("import vs sqlite3 writing the same rows into mailcli's schema",
                             f"{i['wall_s']:.2f} s", f"sqlite3 alone {i['sqlite3_schema_floor_s']:.2f} s",
                             i["ratio_to_schema_floor"], "-", None))
        rows.append(_row("import: peak memory", f"{i['peak_rss_mb']:.0f} MB", "goal 300 MB", i["peak_rss_mb"] / 300,
                         "≤ 1.0", i["peak_rss_mb"] <= 300))
    if "read" in names:
        n = 20_000 if quick else 1_000_000
        r = raw["read"] = bench_read(messages=n, repeats=3 if quick else 7)
        rows.append(_row(f"materialise a {n:,}-message audience", f"{r['materialise_s']:.2f} s", "-", None, "seconds",
                         None))
        rows.append(_row(f"mailings list, {n:,} messages", f"{r['list_s']:.3f} s", "goal 0.5 s", r["list_s"] / 0.5,
                         "≤ 1.0", r["list_s"] < 0.5))
        rows.append(_row(f"mailings stats --json, {n:,} rows", f"{r['stats_s']:.2f} s", "goal 15 s",
                         r["stats_s"] / 15, "≤ 1.0", r["stats_s"] < 15 and r["stats_rows"] == n))
        rows.append(_row("stats: peak memory, all rows vs 1,000 rows", f"{r['stats_rss_mb']:.0f} MB",
                         f"{r['stats_1000_rss_mb']:.0f} MB", r["stats_rss_mb"] / r["stats_1000_rss_mb"], "≈ 1.0",
                         r["stats_rss_mb"] <= 1.2 * r["stats_1000_rss_mb"]))
    if "bigrun" in names:
        n = 20_000 if quick else 1_000_000
        b = raw["bigrun"] = bench_bigrun(messages=n)
        rows.append(_row(f"run a {n:,}-message mailing (gateway answers at once)",
                         f"{b['rate']:,.0f} msg/s, {b['wall_s']:.0f} s", "-", None, "every message accepted",
                         b["accepted"] == n))
        rows.append(_row("big run: rate over the last vs the first tenth", f"{b['rate_last_tenth']:,.0f} msg/s",
                         f"{b['rate_first_tenth']:,.0f} msg/s",
                         b["rate_last_tenth"] / b["rate_first_tenth"] if b["rate_first_tenth"] else None, "≈ 1.0",
                         None))
        rows.append(_row("big run: peak memory", f"{b['peak_rss_mb']:.0f} MB", "goal 300 MB", b["peak_rss_mb"] / 300,
                         "≤ 1.0", b["peak_rss_mb"] <= 300))
    if "transport" in names:
        t = raw["transport"] = bench_transport(n=1000 if quick else 4000)
        base = t["aiohttp_ms"]
        rows.append(_row("HTTP client CPU: aiohttp (used)", f"{base:.3f} ms/request", "itself", 1.0, "-", None))
        for key, label in (("httpx_aiohttp_ms", "httpx over aiohttp transport"), ("httpx_default_ms", "httpx default")):
            if key in t:
                rows.append(_row(f"HTTP client CPU: {label}", f"{t[key]:.3f} ms/request", "aiohttp",
                                 t[key] / base, "-", None))
    return rows, raw


def render(rows: list[dict]) -> str:
    lines = ["| benchmark | figure | reference | ratio | goal | ok |", "|---|---|---|---|---|---|"]
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "**no**")
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['benchmark']} | {r['figure']} | {r['reference']} | {ratio} | {r['goal']} | {ok} |")
    return "\n".join(lines)


def write_doc(rows: list[dict], command: str, elapsed: float) -> None:
    """Put the results into docs/benchmarks.md; rows of benchmarks not run this time are kept."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n<!-- results:start -->\n<!-- results:end -->\n"
    start, end = text.index("<!-- results:start -->"), text.index("<!-- results:end -->") + len("<!-- results:end -->")
    fresh = {line.split(" | ")[0]: line for line in render(rows).splitlines()[2:]}
    old = [line for line in text[start:end].splitlines()
           if line.startswith("| ") and not line.startswith("| benchmark")]
    lines = [fresh.pop(line.split(" | ")[0], line) for line in old]  # in place, keeping the order
    kept = len(lines) - (len(rows) - len(fresh))
    table = "\n".join(render([]).splitlines() + lines + list(fresh.values()))
    note = f"Latest run: {stamp}, `{command}` ({elapsed:.0f} s) on {machine}."
    if kept:
        note += " Rows it did not run are from earlier runs."
    block = f"<!-- results:start -->\n{note}\n\n{table}\n<!-- results:end -->"
    DOC.write_text(text[:start] + block + text[end:])


ALL = ("startup", "import", "read", "run", "bigrun", "transport")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of: {', '.join(ALL)}")
    parser.add_argument("--write", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    names = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = names - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    global QUICK
    QUICK = args.quick
    started = time.perf_counter()
    rows, raw = run_benchmarks(names, args.quick)
    table = render(rows)
    print(table)
    if args.json:
        print(json.dumps(raw, indent=2))
    if args.write:
        write_doc(rows, "python bench/run.py " + " ".join(sys.argv[1:]), time.perf_counter() - started)
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
