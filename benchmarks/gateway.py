"""The HTTP gateway under many clients: POST -> 202, the first Server-Sent Event, and the
gateway's memory with many streams open.

One broker of its own, one worker per agent plus the gateway, the offline model. Clients
are raw HTTP/1.1 on loopback in this process (its clock; see :class:`Raw` for why not httpx).

- post: ``--clients`` clients at once, each POSTs ``--posts`` debates one after another;
  the time from sending a POST to its 202 (the request acknowledged by Kafka);
- first event, new: the same clients each open the event stream of the debate it just
  started; the time from opening it to its first event (DebateStarted), which includes
  the moderator starting the burst's debates and the gateway's consumer finding the topic;
- first event, held: once those debates have ended, the clients open their streams again
  at once: the gateway alone, serving what its shared consumer holds;
- memory: the gateway's VmRSS (/proc) before, then with ``--streams`` streams open on
  ``--long`` long debates (a slow model keeps them running), read by the gateway's pid.

    python benchmarks/gateway.py                 # results/gateway.json
    python benchmarks/gateway.py --clients 200 --streams 1000 --update-readme
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # run as a script: the benchmarks package beside it
from agon.connectors.gateway.keys import hash_key  # noqa: E402
from agon.connectors.gateway.server import gateway_url  # noqa: E402
from agon.procs import rss_mib  # noqa: E402
from agon.settings import Settings  # noqa: E402
from agon.streams.local.fleet import Fleet  # noqa: E402
from benchmarks.common import log, machine, own_broker, percentiles, replace_block, versions  # noqa: E402

RESULTS = HERE / "results" / "gateway.json"
KEY = f"agon_bench-{uuid.uuid4().hex}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="clients at once (200)")
    p.add_argument("--posts", type=int, default=3, help="POSTs per client, one after another (3)")
    p.add_argument("--streams", type=int, default=1000, help="SSE streams held open for memory (1000)")
    p.add_argument("--long", type=int, default=10, help="debates those streams follow (10)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-readme", action="store_true", help="rewrite the gateway block of README.md")
    return p.parse_args(argv)


class Raw:
    """One keep-alive HTTP/1.1 connection over asyncio streams. httpx's pool is the bottleneck
    with 200 connections at once (600 POSTs: 11.8 s with httpx, 1.7 s with this, same gateway),
    and the figures are to be the gateway's."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, method: str, path: str, body: Any = None) -> asyncio.StreamReader:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        assert self.reader is not None
        return self.reader

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        reader = await self.send(method, path, body)
        status, length = int((await reader.readline()).split()[1]), 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await reader.readexactly(length))

    async def first_event(self, debate_id: str) -> float:
        """From asking for the debate's stream to its first ``data:`` line (then the stream
        is dropped, and with it this connection)."""
        started = time.perf_counter()
        reader = await self.send("GET", f"/v1/debates/{debate_id}/events")
        while line := await reader.readline():
            if line.startswith(b"data:"):
                self.close()
                return (time.perf_counter() - started) * 1000
        raise RuntimeError(f"{debate_id}: the stream ended without an event")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client_run(url: str, posts: int, rounds: int) -> tuple[list[float], float, str]:
    client, latencies, last = Raw(url), [], ""
    for _ in range(posts):
        started = time.perf_counter()
        status, body = await client.request(
            "POST", "/v1/debates", {"motion": "Loopback is fast", "rounds": rounds}
        )
        latencies.append((time.perf_counter() - started) * 1000)
        assert status == 202, body
        last = body["debate_id"]
    return latencies, await client.first_event(last), last


async def load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    runs = await asyncio.gather(*(client_run(url, args.posts, 1) for _ in range(args.clients)))
    ids = [debate_id for _, _, debate_id in runs]
    poller = Raw(url)
    for debate_id in ids:  # every debate of the burst ends before the replay is timed
        while (await poller.request("GET", f"/v1/debates/{debate_id}"))[1]["status"] != "ended":
            await asyncio.sleep(0.5)
    poller.close()
    replay = await asyncio.gather(*(Raw(url).first_event(debate_id) for debate_id in ids))
    return {
        "post_ms": percentiles([ms for posts, _, _ in runs for ms in posts]),
        "new_debate_first_event_ms": percentiles([first for _, first, _ in runs]),
        "replay_first_event_ms": percentiles(replay),
    }


async def hold(url: str, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    before = rss_mib(pid) or 0.0
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=10)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": KEY}, timeout=300, limits=limits
    ) as http:
        ids = []
        for _ in range(args.long):
            r = await http.post("/v1/debates", json={"motion": "Streams cost little", "rounds": 50})
            ids.append(r.json()["debate_id"])
        opened = asyncio.Event()
        count = 0

        async def watch(debate_id: str) -> None:
            nonlocal count
            async with http.stream("GET", f"/v1/debates/{debate_id}/events") as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        count += 1
                        if count == args.streams:
                            opened.set()
                        await asyncio.sleep(3600)  # hold the stream open

        tasks = [asyncio.create_task(watch(ids[i % len(ids)])) for i in range(args.streams)]
        await asyncio.wait_for(opened.wait(), 120)
        await asyncio.sleep(2)
        during = rss_mib(pid) or 0.0
        text = httpx.get(f"{url}/metrics").text
        streams = next(
            float(x.split()[1]) for x in text.splitlines() if x.startswith("agon_gateway_sse_streams ")
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for debate_id in ids:
            await http.delete(f"/v1/debates/{debate_id}")
    return {
        "streams": int(streams),
        "rss_before_mib": round(before, 1),
        "rss_with_streams_mib": round(during, 1),
        "rss_per_1000_streams_mib": round((during - before) * 1000 / args.streams, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="agon-bench-gw-") as tmp:
        home = Path(tmp)
        broker = own_broker(home)
        os.environ.update(
            {
                "AGON_NAMESPACE": f"gw{uuid.uuid4().hex[:6]}",
                "AGON_KAFKA_BOOTSTRAP": broker.bootstrap,
                "AGON_GATEWAY_PORT": "0",
                "AGON_GATEWAY_API_KEYS": json.dumps({hash_key(KEY): "bench"}),
                "AGON_GATEWAY_MAX_RUNNING": "100000",
                "AGON_GATEWAY_RATE_PER_S": "100000",
                "AGON_GATEWAY_BURST": "100000",
                "AGON_LLM_OFFLINE_LATENCY_S": "0.5",
            }
        )
        settings = Settings()
        fleet = Fleet(settings)
        try:
            fleet.up(progress=lambda line: None)
            url = gateway_url(settings)
            pid = fleet.worker("gateway", 0).pid
            log(f"gateway at {url} (pid {pid}); {args.clients} clients x {args.posts} POSTs")
            loaded = asyncio.run(load(url, args))
            log(f"{loaded}")
            held = asyncio.run(hold(url, args, pid))
            log(f"memory {held}")
        finally:
            fleet.down()
            broker.down()
    result = {
        "started": started,
        "machine": machine(),
        "versions": versions(Settings().broker.kafka_version),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "update_readme")},
        **loaded,
        "memory": held,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**loaded, "memory": held}))
    if args.update_readme:
        update_readme(result)
    return 0


def update_readme(r: dict[str, Any]) -> None:
    m, c, mem = r["machine"], r["config"], r["memory"]
    post, new, replay = r["post_ms"], r["new_debate_first_event_ms"], r["replay_first_event_ms"]
    lines = [
        f"Latest run: {r['started']}, {m['nproc']} CPUs ({m['cpu']}). Command: "
        f"`python benchmarks/gateway.py --clients {c['clients']} --posts {c['posts']} "
        f"--streams {c['streams']} --long {c['long']}`.",
        "",
        "| figure | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        f"| POST → 202, {c['clients']} clients at once ({post['n']} POSTs) | {post['p50']} ms | "
        f"{post['p99']} ms | {post['max']} ms |",
        f"| stream of a debate just started → its first event, {new['n']} clients at once (includes the "
        f"moderator starting {post['n']} debates) | {new['p50']} ms | {new['p99']} ms | {new['max']} ms |",
        f"| stream of a debate held → its first event, {replay['n']} clients at once (the gateway alone) | "
        f"{replay['p50']} ms | {replay['p99']} ms | {replay['max']} ms |",
        "",
        f"Gateway RSS: {mem['rss_before_mib']} MiB, then {mem['rss_with_streams_mib']} MiB with "
        f"{mem['streams']} streams open ({mem['rss_per_1000_streams_mib']} MiB per 1,000 streams).",
    ]
    replace_block("gateway", lines)


if __name__ == "__main__":
    sys.exit(main())
