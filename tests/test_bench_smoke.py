"""The benchmarks, at toy sizes, so that they cannot rot: correctness only, never timings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_bigrun import bench_bigrun  # noqa: E402
from bench_import import bench_import  # noqa: E402
from bench_read import bench_read  # noqa: E402
from bench_run import bench_run  # noqa: E402
from bench_startup import bench_startup  # noqa: E402

pytestmark = pytest.mark.slow


def test_import_benchmark_imports_every_user():
    result = bench_import(users=500, repeats=1)
    assert result["users"] == 500 and result["wall_s"] > 0 and result["peak_rss_mb"] > 0


def test_read_benchmark_streams_every_message():
    result = bench_read(messages=300, repeats=1)
    assert result["stats_rows"] == 300 and result["list_s"] > 0


def test_run_benchmark_delivers_each_message_exactly_once():
    result = bench_run(messages=300, latency=0.01, concurrency=20)
    assert result["sent"] == result["accepted_by_gateway"] == 300
    assert result["duplicates"] == 0
    assert result["cpu_ms_per_message"] > 0


def test_big_run_benchmark_delivers_everything():
    result = bench_bigrun(messages=300, concurrency=20)
    assert result["accepted"] == 300 and result["peak_rss_mb"] > 0


def test_startup_benchmark_measures_both_commands():
    result = bench_startup(repeats=1)
    assert result["help_s"] > 0 and result["users_list_s"] > 0
