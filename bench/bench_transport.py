"""Why the hot path uses aiohttp: CPU per request of the candidate HTTP clients.

Each client sends the same POSTs to the simulator (its own process, 50 ms
latency) with 100 requests in flight; the figure is the client's CPU time per
request, as a ratio to aiohttp's. Needs the bench extra (httpx, httpx-aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import time

from common import simulator_process


async def _aiohttp(url: str, n: int, concurrency: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem, session.post(f"{url}/send/{i}", data=_body(i), headers=_HEADERS) as response:
                json.loads(await response.read())

        await asyncio.gather(*(one(i) for i in range(n)))


async def _httpx(url: str, n: int, concurrency: int, transport: str) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(transport=AiohttpTransport(), limits=limits)
    else:
        client = httpx.AsyncClient(limits=limits)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            response = await client.post(f"{url}/send/{i}", content=_body(i), headers=_HEADERS)
            response.json()

    async with client:
        await asyncio.gather(*(one(i) for i in range(n)))


_HEADERS = {"Authorization": "Bearer x", "Content-Type": "application/json"}


def _body(i: int) -> bytes:
    return json.dumps({"id": i, "phone": 79110000000 + i, "text": "benchmark"}).encode()


def _cpu_per_request(coro_factory, n: int) -> float:
    started = time.process_time()
    asyncio.run(coro_factory())
    return (time.process_time() - started) / n * 1000


def bench_transport(n: int = 4000, concurrency: int = 100) -> dict:
    import aiohttp  # noqa: F401 - imported before the clock starts

    try:
        import httpx  # noqa: F401
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        pass
    results: dict[str, float] = {}
    with simulator_process("--latency", "0.05") as (url, _):
        results["aiohttp_ms"] = _cpu_per_request(lambda: _aiohttp(url, n, concurrency), n)
        try:
            results["httpx_aiohttp_ms"] = _cpu_per_request(lambda: _httpx(url, n, concurrency, "aiohttp"), n)
            results["httpx_default_ms"] = _cpu_per_request(lambda: _httpx(url, n, concurrency, "default"), n)
        except ImportError:
            pass  # the bench extra is not installed
    return results
