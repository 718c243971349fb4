"""Every metric agon exports, declared in one place against one explicit registry.

Labels come from small fixed sets (agent, event type, outcome, reason, model), never a
debate id. Every worker serves them on 127.0.0.1 (:func:`serve`): with
``AGON_WORKER_METRICS_PORT`` set, worker ``i`` of the ``k``-th agent of the roster uses
port ``metrics_port + 10·k + i``; with 0 (the default) the system picks a free port, and
the worker announces its URL in ``metrics.json`` in its data directory
(:func:`announced`), where ``agon status`` and the supervisor's Prometheus target file
find it. The supervisor serves the autoscaler's metrics the same way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from agon.files import write_atomically
from agon.settings import Settings

__all__ = ["REGISTRY", "announce", "announced", "port_of", "serve"]

REGISTRY = CollectorRegistry(auto_describe=True)

#: seconds: from a few milliseconds of hand-off to a model call near its deadline
FAST_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

# -- what every agent does ------------------------------------------------------------
EVENTS = Counter(
    "agon_events_total",
    "Events an agent handled, by type and outcome (ok, dead_letter)",
    ["agent", "type", "outcome"],
    registry=REGISTRY,
)
HANDOFF = Histogram(
    "agon_handoff_seconds",
    "From an event's Kafka record timestamp to the start of its handling, by the agent that "
    "reads it: under exactly-once this includes the writer's commit",
    ["agent", "type"],
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "agon_dead_letters_total", "Messages an agent sent to dead letters", ["agent"], registry=REGISTRY
)
INBOX_LAG = Gauge(
    "agon_inbox_lag",
    "High watermark minus committed offset on the inbox partitions a worker owns, read at "
    "each scrape (transaction markers count, as in kafka-consumer-groups)",
    ["agent"],
    registry=REGISTRY,
)
TRANSACTIONS = Counter(
    "agon_transactions_total",
    "Kafka transactions a worker ended, by outcome (committed, aborted)",
    ["agent", "outcome"],
    registry=REGISTRY,
)
COMMIT_LATENCY = Histogram(
    "agon_commit_seconds",
    "Duration of one commit of a worker's open transactions (flush, offsets, EndTxn)",
    ["agent"],
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)

# -- debaters -------------------------------------------------------------------------
LLM_CALLS = Counter(
    "agon_llm_calls_total",
    "LLM calls started by a debater, by outcome (ok, malformed, error)",
    ["agent", "outcome"],
    registry=REGISTRY,
)
LLM_LATENCY = Histogram(
    "agon_llm_latency_seconds", "Duration of LLM calls", ["agent"], buckets=SLOW_BUCKETS, registry=REGISTRY
)
LLM_TOKENS = Counter(
    "agon_llm_tokens_total",
    "Tokens of LLM calls, by kind (prompt, completion), as the backend reports them",
    ["agent", "model", "kind"],
    registry=REGISTRY,
)
TURNS = Counter(
    "agon_turns_taken_total", "Turns published (TurnTaken), once per turn id", ["agent"], registry=REGISTRY
)

# -- the moderator --------------------------------------------------------------------
DEBATES_STARTED = Counter("agon_debates_started_total", "Debates started", registry=REGISTRY)
DEBATES_ENDED = Counter("agon_debates_ended_total", "Debates ended, by reason", ["reason"], registry=REGISTRY)
DEBATES_RUNNING = Gauge(
    "agon_debates_running", "Running debates whose state a moderator worker holds", registry=REGISTRY
)
TURN_LATENCY = Histogram(
    "agon_turn_seconds",
    "From the moderator's TurnRequested to its handling of the TurnTaken (model call included)",
    buckets=SLOW_BUCKETS,
    registry=REGISTRY,
)
TURN_RETRIES = Counter(
    "agon_turn_retries_total",
    "Turns the moderator asked for again, by why (deadline, failed)",
    ["reason"],
    registry=REGISTRY,
)

# -- the supervisor's autoscaler --------------------------------------------------------
WORKERS = Gauge("agon_workers", "Workers wanted per agent", ["agent"], registry=REGISTRY)
SCALER_LAG = Gauge(
    "agon_autoscaler_lag",
    "Records pending on an agent's inbox (transaction markers excluded), as the autoscaler read them",
    ["agent"],
    registry=REGISTRY,
)
SCALER_DECISIONS = Counter(
    "agon_autoscaler_decisions_total",
    "Worker counts the autoscaler changed, by direction (out, in)",
    ["agent", "direction"],
    registry=REGISTRY,
)

# -- the synthetic probe (`agon probe`): labelled by probe, so only a probe exports them ----
PROBE_RUNS = Counter(
    "agon_probe_runs_total",
    "Probe debates run, by outcome (ok, failed)",
    ["probe", "outcome"],
    registry=REGISTRY,
)
PROBE_SUCCESS = Gauge(
    "agon_probe_success", "1 if the last probe debate ended normally, else 0", ["probe"], registry=REGISTRY
)
PROBE_DURATION = Gauge(
    "agon_probe_duration_seconds",
    "From the last probe's request to its DebateEnded",
    ["probe"],
    registry=REGISTRY,
)
PROBE_LAST = Gauge(
    "agon_probe_last_run_timestamp_seconds", "When the last probe ended", ["probe"], registry=REGISTRY
)

# -- the HTTP gateway (`agon gateway`): routes are templates, never a debate id ------------
GATEWAY_REQUESTS = Counter(
    "agon_gateway_requests_total",
    "HTTP requests the gateway answered, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
GATEWAY_LATENCY = Histogram(
    "agon_gateway_request_seconds",
    "From a request's arrival to its response's start (an SSE stream: to its first byte)",
    ["route"],
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
GATEWAY_STREAMS = Gauge("agon_gateway_sse_streams", "Server-Sent Event streams open", registry=REGISTRY)
GATEWAY_WATCHED = Gauge(
    "agon_gateway_watched_debates",
    "Debate topics the gateway's shared consumer reads now",
    registry=REGISTRY,
)
GATEWAY_REFUSED = Counter(
    "agon_gateway_refused_total",
    "Requests refused with 429, by limit (rate_limited, running_debates, daily_tokens)",
    ["limit"],
    registry=REGISTRY,
)


def port_of(settings: Settings, agent: str, worker: int) -> int:
    """Worker ``agent-worker``'s metrics port: 0 (any free one) unless a first port is set."""
    if not settings.worker.metrics_port:
        return 0
    names = [a.name for a in settings.agents]
    return settings.worker.metrics_port + 10 * names.index(agent) + worker


def serve(port: int) -> str:
    """Serve the registry over HTTP on 127.0.0.1:port (0: a free port), in a daemon thread;
    return its URL."""
    server, _ = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    return f"http://127.0.0.1:{server.server_port}/metrics"


def announce(directory: Path, url: str) -> None:
    """Tell readers of ``directory`` (a worker's data directory) where this process serves."""
    write_atomically(
        directory / "metrics.json", json.dumps({"url": url, "pid": os.getpid(), "at": time.time()})
    )


def announced(directory: Path, pid: int | None = None) -> str | None:
    """The metrics URL announced in ``directory`` by process ``pid`` (by default: by any
    process that still runs), if any."""
    from agon.procs import alive

    try:
        got = json.loads((directory / "metrics.json").read_text())
        url, by = got["url"], int(got["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if (by == pid if pid is not None else alive(by)) else None
