"""How many workers an agent wants, from the lag on its inbox: KEDA's Kafka scaler rule.

``desired = clamp(ceil(lag / lag_threshold), min_replica_count, min(max_replica_count,
partitions))`` — the rule and the parameter names of KEDA's Kafka scaler, so that the
supervisor on one machine and a ScaledObject on Kubernetes read one set of settings
(:class:`agon.settings.AutoscaleSettings`). Scaling out is immediate; scaling in waits
for a stabilization window, as Kubernetes' HPA does: the count only falls to the highest
recommendation of the last ``scale_down_stabilization_s`` seconds, so a lag that dips for
one poll does not stop a worker that is needed again at the next.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from agon.settings import AutoscaleSettings

__all__ = ["Decision", "Scaler", "keda_desired"]


def keda_desired(lag: int, partitions: int, policy: AutoscaleSettings) -> int:
    """KEDA's target replica count for ``lag`` records pending over ``partitions``."""
    ceiling = min(policy.max_replica_count or partitions, partitions)
    wanted = math.ceil(max(0, lag) / policy.lag_threshold)
    return max(policy.min_replica_count, min(wanted, ceiling))


@dataclass(frozen=True)
class Decision:
    agent: str
    lag: int
    current: int
    recommended: int  # what the rule says now
    target: int  # what the stabilization window lets through

    @property
    def direction(self) -> str | None:
        if self.target > self.current:
            return "out"
        return "in" if self.target < self.current else None

    def describe(self) -> str:
        return f"{self.agent}: lag {self.lag}, {self.current} → {self.target} worker(s)" + (
            f" (rule says {self.recommended}; the scale-in window holds)"
            if self.recommended != self.target
            else ""
        )


class Scaler:
    """The rule plus the scale-in stabilization window, per agent."""

    def __init__(self, policy: AutoscaleSettings) -> None:
        self.policy = policy
        self._seen: dict[str, deque[tuple[float, int]]] = {}

    def decide(
        self, agent: str, lag: int, partitions: int, current: int, now: float, settled: bool = True
    ) -> Decision:
        """``settled``: every worker of the agent runs and is ready, none is stopping. Until
        then it scales out only: while a group rebalances its lag grows for want of
        consumers, not of more workers, and a scale-in would only rebalance it again."""
        recommended = keda_desired(lag, partitions, self.policy)
        if agent not in self._seen:  # what runs at the start counts as wanted then
            self._seen[agent] = deque([(now, current)])
        seen = self._seen[agent]
        seen.append((now, recommended))
        while seen and seen[0][0] < now - self.policy.scale_down_stabilization_s:
            seen.popleft()
        if recommended >= current:
            target = recommended
        elif not settled:
            target = current
        else:
            target = min(current, max(r for _, r in seen))
        return Decision(agent, lag, current, recommended, target)
