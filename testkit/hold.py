"""Clients that take what they can of a server, run as a process of their own (so the clients measured
beside them are not slowed by this one's loop): ``python -m testkit.hold HOST PORT PATH ETAG HOLDERS SLOW``.

- HOLDERS clients each keep a lookup of PATH waiting (``If-None-Match: ETAG``, ``Prefer: wait=30``):
  when a wait ends they ask again at once; when the server answers at once instead (it holds all it
  may), they come back after its Retry-After, as RFC 9110 asks.
- SLOW clients each send a callback a byte a second; when cut off they connect again at once.

It prints ``ready`` once every holder has sent its first request and every slow client has connected,
then runs until its stdin closes, and prints what happened as one JSON line.
"""

import asyncio
import json
import resource
import sys
from collections import Counter

stats: Counter = Counter()


async def _connect(host: str, port: int, errors: str):
    """A connection to the server, trying again a second after each refusal (counted as ``errors``)."""
    while True:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            stats[errors] += 1
            await asyncio.sleep(1)


async def holder(host: str, port: int, path: str, etag: str, started: asyncio.Event) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: {etag}\r\nPrefer: wait=30\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    first = True
    while True:
        reader, writer = await _connect(host, port, "holder_errors")
        try:
            writer.write(request)
            await writer.drain()
            if first:  # connected and asked: this one is held, or being answered
                first = False
                stats["holders_started"] += 1
                if stats["holders_started"] >= stats["holders"]:
                    started.set()
            answer = await reader.read()  # Connection: close: the answer ends with the connection
        except OSError:
            stats["holder_errors"] += 1
            await asyncio.sleep(1)
            continue
        finally:
            writer.close()
        # The header fields by name: a name may appear inside another's value (the CORS
        # Access-Control-Expose-Headers lists Preference-Applied on every answer).
        fields = dict(
            line.split(b":", 1)
            for line in answer.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")[1:]
            if b":" in line
        )
        if b"preference-applied" in fields:
            stats["waits_held"] += 1  # held, and ran its course: wait again
            continue
        stats["waits_answered_at_once"] += 1
        await asyncio.sleep(int(fields.get(b"retry-after", b"2")))


async def slow(host: str, port: int, payload: bytes, connected: asyncio.Event) -> None:
    first = True
    while True:
        reader, writer = await _connect(host, port, "slow_connect_errors")
        if first:
            stats["slow_connected"] += 1
            if stats["slow_connected"] >= stats["slow"]:
                connected.set()
            first = False
        closed = asyncio.ensure_future(reader.read())
        try:
            for byte in payload:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.wait([closed], timeout=1)
                if closed.done():
                    break
            stats["slow_cut_off" if closed.done() else "slow_finished"] += 1
        except OSError:
            stats["slow_cut_off"] += 1
        finally:
            closed.cancel()
            writer.close()


async def main(host: str, port: int, path: str, etag: str, holders: int, slow_clients: int) -> None:
    stats["holders"], stats["slow"] = holders, slow_clients
    body = b"isActive=1&sessionId=ATVId_slow&pad=" + b"x" * 200
    payload = (
        f"POST /api/v1/voice/callback HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started, connected = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(holder(host, port, path, etag, started)) for _ in range(holders)]
    tasks += [asyncio.ensure_future(slow(host, port, payload, connected)) for _ in range(slow_clients)]
    if not holders:
        started.set()
    if not slow_clients:
        connected.set()
    await started.wait()
    await connected.wait()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    print(json.dumps(dict(stats)), flush=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    host, port, path, etag, holders, slow_clients = sys.argv[1:]
    asyncio.run(main(host, int(port), path, etag, int(holders), int(slow_clients)))
