"""Every metric agon exports, declared in one place against one explicit registry.

Labels come from small fixed sets (agent, event type, outcome, reason), never a
debate id. When ``AGON_WORKER_METRICS_PORT`` is set, worker ``i`` of the ``k``-th
agent of the roster serves them on 127.0.0.1, port ``metrics_port + 10·k + i``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from agon.settings import Settings

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "agon_events_total",
    "Events an agent handled, by type and outcome",
    ["agent", "type", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "agon_dead_letters_total", "Messages an agent sent to dead letters", ["agent"], registry=REGISTRY
)
LLM_CALLS = Counter(
    "agon_llm_calls_total",
    "LLM calls started by a debater, by outcome",
    ["agent", "outcome"],
    registry=REGISTRY,
)
LLM_LATENCY = Histogram(
    "agon_llm_latency_seconds",
    "Duration of LLM calls",
    ["agent"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
TURNS = Counter(
    "agon_turns_taken_total", "Turns published (TurnTaken), once per turn id", ["agent"], registry=REGISTRY
)
DEBATES_ENDED = Counter("agon_debates_ended_total", "Debates ended, by reason", ["reason"], registry=REGISTRY)


def port_of(settings: Settings, agent: str, worker: int) -> int:
    names = [a.name for a in settings.agents]
    return settings.worker.metrics_port + 10 * names.index(agent) + worker


def serve(port: int) -> None:
    """Serve the registry over HTTP on 127.0.0.1:port (a daemon thread)."""
    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
