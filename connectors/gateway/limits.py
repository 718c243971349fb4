"""What a tenant may do: a request rate per key, running debates and a daily token budget.

The rate is a token bucket per key, held by each gateway replica (N replicas allow N times
the rate: size ``rate_per_s`` for one). Running debates and tokens are counted from Kafka
(:class:`agon.connectors.gateway.hub.Hub`), so every replica sees the same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from agon.settings import GatewaySettings

__all__ = ["Bucket", "Refusal", "seconds_to_midnight"]


@dataclass
class Refusal(Exception):
    """A 429: what was exceeded, and when trying again makes sense."""

    code: str
    message: str
    retry_after_s: int


class Bucket:
    """Token buckets, one per key: ``burst`` at once, ``rate_per_s`` sustained."""

    def __init__(self, settings: GatewaySettings, clock=time.monotonic) -> None:
        self.rate = settings.rate_per_s
        self.size = float(settings.burst)
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)

    def take(self, key_id: str) -> None:
        now = self.clock()
        tokens, then = self._state.get(key_id, (self.size, now))
        tokens = min(self.size, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._state[key_id] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise Refusal("rate_limited", f"more than {self.rate:g} requests/s with this key", wait)
        self._state[key_id] = (tokens - 1.0, now)


def seconds_to_midnight(now: dt.datetime | None = None) -> int:
    """Seconds until the next UTC day, when a daily budget starts again."""
    now = now or dt.datetime.now(dt.timezone.utc)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - now).total_seconds()))
