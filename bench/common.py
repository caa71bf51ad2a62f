"""Helpers shared by the benchmarks: throw-away homes, timed child processes, the simulator."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """One child process: wall seconds, CPU seconds (user + system), peak RSS in MB, output."""

    wall: float
    cpu: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: list[str], *, env: dict[str, str] | None = None, stdin_path: Path | None = None,
          stdout_path: Path | None = None, check: bool = True) -> Measured:
    """Run a command, measuring wall time, CPU and peak RSS of that child alone (os.wait4).

    A large output should go to ``stdout_path``: held in this process it would make
    the next child's peak RSS look larger (a child starts as a copy of its parent).
    """
    with (open(stdout_path, "w+b") if stdout_path else tempfile.TemporaryFile()) as out, \
            tempfile.TemporaryFile() as err, \
            (open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb")) as stdin:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdin=stdin, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode,
                          "" if stdout_path else out.read().decode(), err.read().decode())
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def mailcli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailcli", *args]


@contextmanager
def scratch_home(keep: bool = False):
    """A throw-away MAILCLI_HOME and the environment that points at it."""
    home = Path(tempfile.mkdtemp(prefix="mailcli-bench-"))
    env = {"MAILCLI_HOME": str(home), "MAILCLI_TZ": "Europe/Moscow"}
    for var in ("MAILCLI_DB", "MAILCLI_GATEWAY_URL", "MAILCLI_GATEWAY_TOKEN", "MAILCLI_DEBUG"):
        os.environ.pop(var, None)
    try:
        yield home, env
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


@contextmanager
def simulator_process(*args: str):
    """``mailcli gateway serve --port 0 -q ARGS`` in its own process; yields (url, process)."""
    proc = subprocess.Popen(mailcli_cmd("gateway", "serve", "--port", "0", "-q", *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            raise RuntimeError(f"the simulator did not start: {line}{proc.stderr.read()}")
        yield match.group(1), proc
    finally:
        proc.terminate()
        proc.wait(10)


def users_csv(path: Path, count: int, *, operator_code: str = "911", tag: str = "python-tips",
              mixed: bool = False) -> Path:
    """A CSV of ``count`` users: all in one operator code and tag (the audience of one mailing),
    or with ``mixed`` spread over four codes, four tags (in mixed case) and four zones."""
    zones = ("Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "Asia/Yekaterinburg")
    codes = ("911", "921", "953", "999") if mixed else (operator_code,)
    tags = ("python-tips", "Java-Tips", "go-tips", "RUST-TIPS") if mixed else (tag,)
    with open(path, "w") as fh:
        fh.write("phone_number,tag,time_zone\n")
        for i in range(count):
            fh.write(f"7{codes[i % len(codes)]}{i:07d},{tags[i // 7 % len(tags)]},{zones[i // 3 % 4]}\n")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)
