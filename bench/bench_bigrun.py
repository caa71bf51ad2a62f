"""A big mailing: ``mailcli run`` on N messages, sampling its memory and the delivery rate.

The simulator (its own process) answers at once, so the run goes as fast as
mailcli can; four times a second the run's RSS (/proc) and the number of messages the
gateway accepted are sampled. "Steady" compares the rate over the first and the
last tenth of the messages; "bounded" is the peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

from common import mailcli_cmd, scratch_home, simulator_process, timed, users_csv


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _accepted(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats") as response:
        return json.load(response)["accepted"]


def bench_bigrun(messages: int = 1_000_000, concurrency: int = 100) -> dict:
    with scratch_home() as (home, env):
        timed(mailcli_cmd("users", "import", str(users_csv(home / "users.csv", messages))), env=env)
        timed(mailcli_cmd("mailings", "create", "-m", "Big mailing", "--tag", "python-tips", "--operator-code", "911",
                          "--start", "now", "--end", "+3h"), env=env)
        with simulator_process() as (url, _):
            started = time.perf_counter()
            proc = subprocess.Popen(mailcli_cmd("run", "-q", "--concurrency", str(concurrency)),
                                    env={**os.environ, **env, "MAILCLI_GATEWAY_URL": url},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            samples: list[tuple[float, int, float]] = []  # seconds, accepted, rss
            while proc.poll() is None:
                time.sleep(0.25)
                samples.append((time.perf_counter() - started, _accepted(url), _rss_mb(proc.pid)))
            wall = time.perf_counter() - started
            accepted = _accepted(url)
            if proc.returncode != 0:
                raise RuntimeError(f"run failed: {proc.stderr.read().decode()[-2000:]}")
    tenth = messages // 10

    def rate_between(low: int, high: int) -> float:
        inside = [(t, n) for t, n, _ in samples if low < n <= high]
        if len(inside) < 2:
            return 0.0
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    first, last = rate_between(0, tenth), rate_between(messages - tenth, messages)
    return {
        "messages": messages,
        "accepted": accepted,
        "wall_s": wall,
        "rate": messages / wall,
        "rate_first_tenth": first,
        "rate_last_tenth": last,
        "peak_rss_mb": max((rss for *_, rss in samples), default=0.0),
        "rss_first_sample_mb": samples[0][2] if samples else 0.0,
    }
