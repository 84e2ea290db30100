"""HTTP limits for clients without a token, against the real hub over real sockets:
oversized and trickling bodies, stalled headers, and handshakes per address."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from botarena.server.errors import HubError
from tests.harness import Arena, RawSocket, eventually

POLLING = "/socket.io/?EIO=4&transport=polling"
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"


async def open_raw(arena: Arena) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the hub, to write HTTP by hand."""
    where = urlsplit(arena.url)
    return await asyncio.open_connection(where.hostname, where.port)


async def read_answer(
    reader: asyncio.StreamReader, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer: status, headers (lower-case names) and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout)
    return int(status_line.split()[1]), headers, body


async def closed_by_hub(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Wait for the hub to close the connection; what it sent before (raises on a
    connection still open after ``timeout`` seconds)."""
    return await asyncio.wait_for(reader.read(), timeout)


def post_head(sid: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {POLLING}&sid={sid} HTTP/1.1\r\nHost: hub\r\n"
        f"Content-Type: text/plain;charset=UTF-8\r\n{framing}\r\n\r\n"
    ).encode()


async def polling_session(arena: Arena) -> str:
    """A new long-polling Engine.IO session (no Socket.IO CONNECT, no token): its id."""
    async with aiohttp.ClientSession() as http, http.get(arena.url + POLLING) as answer:
        assert answer.status == 200
        opened = (await answer.text()).split("\x1e")[0]
    assert opened.startswith("0"), opened
    return str(json.loads(opened[1:])["sid"])


async def handshake_status(arena: Arena, path: str = POLLING) -> int:
    """The status of a new Engine.IO handshake (over long-polling, or a websocket)."""
    async with aiohttp.ClientSession() as http:
        if "websocket" not in path:
            async with http.get(arena.url + path) as answer:
                return answer.status
        try:
            async with http.ws_connect(arena.url + path) as ws:
                await ws.receive_str(timeout=5)
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def metrics_text(arena: Arena) -> str:
    async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
        return await answer.text()


async def live(arena: Arena) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(arena.url + "/healthz?probe=live") as answer,
    ):
        return answer.status


# bodies -------------------------------------------------------------------------------


async def test_an_oversized_polling_post_is_answered_413_and_its_connection_closed(
    arena: Arena,
) -> None:
    limit = arena.running.hub.settings.max_payload_bytes
    sid = await polling_session(arena)
    reader, writer = await open_raw(arena)
    body = b"4" + b"x" * limit  # one Engine.IO message, a byte over the frame limit
    writer.write(post_head(sid, len(body)) + body)

    status, headers, text = await read_answer(reader)
    assert status == 413 and str(limit).encode() in text
    assert headers["connection"] == "close"
    assert await closed_by_hub(reader) == b"", "the connection is closed, not kept alive"
    writer.close()

    assert await live(arena) == 200
    agent = await arena.client("after-the-post")
    assert (await agent.call("whoami"))["name"] == "after-the-post"
    assert 'botarena_http_refused_total{reason="too_large"} 1.0' in await metrics_text(arena)


async def test_a_polling_post_that_arrives_in_pieces_is_read_whole(arena: Arena) -> None:
    sid = await polling_session(arena)
    body = ("40" + json.dumps({"token": await arena.token("slow-link")})).encode()
    reader, writer = await open_raw(arena)
    writer.write(post_head(sid, len(body)) + body[:10])
    await asyncio.sleep(0.3)  # the rest of the CONNECT comes in a later segment
    writer.write(body[10:])
    status, _, text = await read_answer(reader)
    assert (status, text) == (200, b"OK")
    writer.close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{arena.url}{POLLING}&sid={sid}") as answer,
    ):
        assert (await answer.text()).startswith('40{"sid":'), "the whole CONNECT was read"
    await eventually(lambda: len(arena.running.hub.sessions) == 1, what="authenticated")


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(hub_factory) -> None:
    arena = await hub_factory(http_body_timeout=1)
    sid = await polling_session(arena)
    reader, writer = await open_raw(arena)
    writer.write(post_head(sid, 10**9))  # a gigabyte announced, nothing sent

    status, headers, _ = await read_answer(reader)
    assert status == 413 and headers["connection"] == "close"
    assert await closed_by_hub(reader) == b""
    writer.close()
    assert await live(arena) == 200


async def test_a_body_without_a_length_is_refused_411(arena: Arena) -> None:
    sid = await polling_session(arena)
    reader, writer = await open_raw(arena)
    writer.write(post_head(sid, None) + b"2\r\n40\r\n0\r\n\r\n")

    status, headers, _ = await read_answer(reader)
    assert status == 411 and headers["connection"] == "close"
    assert await closed_by_hub(reader) == b""
    writer.close()
    assert 'botarena_http_refused_total{reason="length_required"} 1.0' in await metrics_text(arena)


async def test_a_trickling_body_is_answered_408_and_dropped(hub_factory) -> None:
    arena = await hub_factory(http_body_timeout=1)
    sid = await polling_session(arena)
    reader, writer = await open_raw(arena)
    writer.write(post_head(sid, 200))

    async def trickle() -> None:
        while not writer.is_closing():
            writer.write(b"x")
            await asyncio.sleep(0.1)

    started = time.monotonic()
    trickler = asyncio.create_task(trickle())
    try:
        status, headers, _ = await read_answer(reader)
        assert status == 408 and headers["connection"] == "close"
        assert time.monotonic() - started >= 0.9, "the body had its timeout"
        assert await closed_by_hub(reader) == b""
    finally:
        trickler.cancel()
        writer.close()
    assert 'botarena_http_refused_total{reason="body_timeout"} 1.0' in await metrics_text(arena)
    assert await live(arena) == 200


# headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /socket.io/?EIO=4&transport=pol",
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: ",
    ],
    ids=["nothing", "half-a-request-line", "headers-never-end"],
)
async def test_stalled_headers_are_dropped_after_the_timeout(hub_factory, sent: bytes) -> None:
    arena = await hub_factory(http_header_timeout=1)
    reader, writer = await open_raw(arena)
    writer.write(sent)
    started = time.monotonic()
    assert await closed_by_hub(reader) == b"", "dropped without an answer"
    assert time.monotonic() - started >= 0.9, "the headers had their timeout"
    writer.close()
    assert await live(arena) == 200


async def test_the_next_request_on_a_kept_alive_connection_has_the_same_timeout(
    hub_factory,
) -> None:
    arena = await hub_factory(http_header_timeout=1)
    reader, writer = await open_raw(arena)
    writer.write(b"GET /healthz?probe=live HTTP/1.1\r\nHost: hub\r\n\r\n")
    status, headers, _ = await read_answer(reader)
    assert status == 200 and headers.get("connection", "keep-alive").lower() != "close"
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")  # the next one stalls
    assert await closed_by_hub(reader) == b""
    writer.close()


async def test_connected_clients_outlive_the_header_timeout(hub_factory) -> None:
    arena = await hub_factory(http_header_timeout=1)
    agent = await arena.client("steady")
    async with RawSocket(arena.url) as raw:
        await asyncio.sleep(2.5)  # beyond the header timeout, in the middle of a request
        accepted, _ = await raw.connect({"token": await arena.token("raw")})
        assert accepted
    assert agent.connected
    assert (await agent.call("whoami"))["name"] == "steady"


# handshakes ---------------------------------------------------------------------------


async def test_handshakes_beyond_the_rate_are_answered_429_without_a_session(
    hub_factory,
) -> None:
    arena = await hub_factory(handshakes_burst=3, handshakes_per_second=0.01)
    eio = arena.running.hub.sio.eio
    sids = [await polling_session(arena) for _ in range(3)]
    assert set(sids) <= set(eio.sockets)
    sessions = len(eio.sockets)

    async with aiohttp.ClientSession() as http, http.get(arena.url + POLLING) as answer:
        assert answer.status == 429
        assert int(answer.headers["Retry-After"]) >= 1
    assert await handshake_status(arena, WEBSOCKET) == 429  # a websocket handshake
    upgrade = f"{WEBSOCKET}&sid={sids[0]}"
    assert await handshake_status(arena, upgrade) == 429  # a websocket upgrade
    assert len(eio.sockets) == sessions, "no session was made for a refused handshake"

    assert await live(arena) == 200, "other requests from the address are served"
    text = await metrics_text(arena)
    assert 'botarena_http_refused_total{reason="handshake_rate"} 3.0' in text


async def test_unauthenticated_sessions_per_address_are_capped(hub_factory) -> None:
    arena = await hub_factory(max_unauthenticated_connections=2)
    async with RawSocket(arena.url) as waiting:
        async with RawSocket(arena.url):
            assert await handshake_status(arena, WEBSOCKET) == 429
            assert await handshake_status(arena) == 429
            with pytest.raises(HubError):
                await arena.client("blocked-meanwhile")
        # one of the two left: a client may connect and, authenticated, counts no more
        await eventually(lambda: len(arena.running.hub.sio.environ) == 1, what="one waiting")
        agent = await arena.client("authenticated")
        assert await handshake_status(arena, WEBSOCKET) == 101
        await eventually(lambda: len(arena.running.hub.sio.environ) == 2, what="that one closed")
        async with RawSocket(arena.url):
            assert await handshake_status(arena) == 429
        assert agent.connected
        accepted, _ = await waiting.connect({"token": await arena.token("late")})
        assert accepted
    text = await metrics_text(arena)
    assert 'botarena_http_refused_total{reason="unauthenticated"} 4.0' in text


async def test_a_hundred_agents_connect_at_once_from_loopback_with_the_defaults(
    arena: Arena,
) -> None:
    tokens = [await arena.token(f"agent-{n}") for n in range(100)]
    clients = await asyncio.gather(*(arena.connect(token) for token in tokens))
    assert all(client.connected for client in clients)
    assert len(arena.running.hub.sessions) == 100
    assert "botarena_http_refused_total{" not in await metrics_text(arena)
