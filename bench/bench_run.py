"""Delivery throughput: ``mailcli run`` on one mailing against the simulator in its own process.

The simulator answers after ``latency`` seconds; with ``concurrency`` requests
in flight the ideal rate is concurrency / latency (2,000 msg/s for 100 and
50 ms). The figure is the end-to-end rate of the whole ``mailcli run`` process
(start-up, materialising the audience, sending, recording) as a ratio to
that ideal, plus its CPU per message.
"""

from __future__ import annotations

import json
import urllib.request

from common import mailcli_cmd, scratch_home, simulator_process, timed, users_csv


def bench_run(messages: int = 20_000, latency: float = 0.05, concurrency: int = 100) -> dict:
    with scratch_home() as (home, env):
        timed(mailcli_cmd("users", "import", str(users_csv(home / "users.csv", messages))), env=env)
        timed(mailcli_cmd("mailings", "create", "-m", "Benchmark message", "--tag", "python-tips",
                          "--operator-code", "911", "--start", "now", "--end", "+1h"), env=env)
        with simulator_process("--latency", str(latency)) as (url, _):
            run = timed(mailcli_cmd("run", "--json", "--concurrency", str(concurrency)),
                        env={**env, "MAILCLI_GATEWAY_URL": url})
            with urllib.request.urlopen(f"{url}/stats") as response:
                gateway = json.load(response)
        summary = json.loads(run.stdout)
    ideal = concurrency / latency
    sending = summary["mailings"][0]["elapsed_s"]
    return {
        "messages": messages,
        "sent": summary["sent"],
        "accepted_by_gateway": gateway["accepted"],
        "duplicates": gateway["duplicates"],
        "wall_s": run.wall,
        "end_to_end_rate": messages / run.wall,
        "sending_rate": messages / sending if sending else 0.0,
        "ideal_rate": ideal,
        "ratio_to_ideal": messages / run.wall / ideal,
        "cpu_ms_per_message": run.cpu / messages * 1000,
        "peak_rss_mb": run.rss_mb,
    }


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(bench_run(n), indent=2))
