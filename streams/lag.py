"""Consumer lag of agon's agents, read the way Kafka's own ``kafka-consumer-groups --describe`` does.

Per partition of an agent's consumer group: the committed offset, the high
watermark (LOG-END-OFFSET) and LAG = high watermark - committed, exactly as the
tool computes them, so that both always agree. Under transactions LAG overstates
the backlog: every commit or abort marker, and every aborted record, occupies an
offset, so an idle, fully consumed partition shows a lag of 1 or more. PENDING is
the backlog a read_committed reader really has: the data records it would still
receive up to the last stable offset, counted by reading them.

One :class:`LagReader` keeps its admin client and counting consumer across calls
(an autoscaler reads every second); :func:`read_lag` is the one-shot form.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from agon.errors import BrokerError
from agon.schemas.topics import Topics
from agon.settings import AgentSpec, Settings
from agon.streams.pending import Key as _Key
from agon.streams.pending import PendingCounter

__all__ = ["LagReader", "PartitionLag", "pending_by_agent", "read_lag"]


# librdkafka's own log lines (a refused connection, every few ms while the broker is down) go
# to this logger, where the application's logging puts them, instead of straight to stderr
log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class PartitionLag:
    """One row of ``kafka-consumer-groups --describe``, with the read_committed backlog beside it."""

    agent: str
    group: str  # the agent's consumer group (its faust app id)
    topic: str
    partition: int
    committed: int | None  # CURRENT-OFFSET; None ('-') when the group has committed nothing here
    log_end: int  # LOG-END-OFFSET: the high watermark
    lag: int | None  # LAG = log_end - committed; None ('-') when nothing is committed, as the tool
    stable_end: int  # the last stable offset: what a read_committed reader can reach
    pending: int | None  # data records still to read up to stable_end (None: not counted)
    pending_capped: bool  # counting stopped at the limit or the timeout: pending is a lower bound
    member: str | None  # CONSUMER-ID of the member that owns the partition
    host: str | None
    client_id: str | None
    #: one of the topics the agent consumes as a group (its inbox; the moderator's requests):
    #: its backlog. Other rows are partitions a member reads by assignment (changelogs)
    source: bool = True


def read_lag(
    settings: Settings,
    agents: Iterable[str] | None = None,
    *,
    count_pending: bool = True,
    limit: int = 10_000,
    timeout_s: float = 10.0,
) -> list[PartitionLag]:
    """The lag rows of ``agents`` (default: the roster), read once."""
    with LagReader(settings, timeout_s=timeout_s) as reader:
        return reader.read(agents, count_pending=count_pending, limit=limit)


def pending_by_agent(rows: Iterable[PartitionLag]) -> dict[str, int]:
    """Each agent's backlog: over its source topics (``row.source``), the sum of ``pending``,
    or of ``lag`` where pending was not counted.

    A partition with neither (nothing committed, not counted) counts its whole log end:
    the group would read it from the beginning (agon's workers reset to earliest), the
    rule KEDA's Kafka scaler applies with ``offsetResetPolicy: earliest``.
    """
    totals: dict[str, int] = {}
    for row in rows:
        if not row.source:
            totals.setdefault(row.agent, 0)
            continue
        if row.pending is not None:
            value = row.pending
        elif row.lag is not None:
            value = max(row.lag, 0)
        else:
            value = row.log_end
        totals[row.agent] = totals.get(row.agent, 0) + value
    return totals


class LagReader:
    """Reads lag rows; holds one admin client and one counting consumer. Not thread-safe."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.topics = Topics(settings.namespace)
        self._admin = AdminClient(settings.kafka.client_config(logger=log))
        self._counter = PendingCounter(settings)
        self.group_id = self._counter.group_id

    def __enter__(self) -> LagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._counter.close()

    def read(
        self, agents: Iterable[str] | None = None, *, count_pending: bool = True, limit: int = 10_000
    ) -> list[PartitionLag]:
        """One row per partition an agent's group has committed, owns or reads (its inbox, and
        the moderator's request topic): by agent in the order asked (default: the roster's),
        then by topic and partition. :class:`ConfigError` for an agent not in the roster,
        :class:`BrokerError` when Kafka does not answer within the timeout or refuses."""
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit}")
        deadline = time.monotonic() + self.timeout_s
        self._admin.poll(0)  # serves the admin client's queued log lines
        specs = self._specs(agents)
        if not specs:
            return []
        groups = {spec.name: self.topics.app_id(spec.name) for spec in specs}
        sources = {spec.name: self._sources(spec) for spec in specs}

        # round 1, all in flight at once: partitions of the sources, committed offsets, members
        source_names = sorted({t for names in sources.values() for t in names})
        described = self._admin.describe_topics(TopicCollection(source_names), request_timeout=self.timeout_s)
        committed_f = {
            group: self._admin.list_consumer_group_offsets(  # one group per call: the client's limit
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
            )[group]
            for group in groups.values()
        }
        members_f = self._admin.describe_consumer_groups(
            list(groups.values()), request_timeout=self.timeout_s
        )
        partitions = {name: self._partitions(name, f, deadline) for name, f in described.items()}
        committed = {group: self._committed(group, f, deadline) for group, f in committed_f.items()}
        owners = {group: self._owners(group, f, deadline) for group, f in members_f.items()}

        keys: dict[str, list[_Key]] = {}
        for agent, group in groups.items():
            found = set(committed[group]) | set(owners[group])
            for topic in sources[agent]:
                found.update((topic, p) for p in range(partitions.get(topic, 0)))
            keys[agent] = sorted(found)

        # round 2: log end and last stable offset of every partition, one call per isolation level
        every = sorted({k for ks in keys.values() for k in ks})
        log_end, stable_end = self._latest(every, deadline)

        counted: dict[tuple[str, _Key], tuple[int, bool]] = {}
        if count_pending:
            todo = {
                (groups[agent], k): (committed[groups[agent]].get(k), stable_end[k])
                for agent, ks in keys.items()
                for k in ks
                if k in stable_end and k[0] in sources[agent]
            }
            counted = self._counter.count(todo, limit, deadline)

        rows = []
        for agent, group in groups.items():
            for key in keys[agent]:
                if key not in log_end or key not in stable_end:
                    continue  # the topic was deleted under a committed offset
                offset = committed[group].get(key)
                pending, capped = counted.get((group, key), (None, False))
                member, host, client_id = owners[group].get(key, (None, None, None))
                rows.append(
                    PartitionLag(
                        agent=agent,
                        group=group,
                        topic=key[0],
                        partition=key[1],
                        committed=offset,
                        log_end=log_end[key],
                        lag=None if offset is None else log_end[key] - offset,
                        stable_end=stable_end[key],
                        pending=pending,
                        pending_capped=capped,
                        member=member,
                        host=host,
                        client_id=client_id,
                        source=key[0] in sources[agent],
                    )
                )
        return rows

    # -- what to read --------------------------------------------------------------
    def _specs(self, agents: Iterable[str] | None) -> list[AgentSpec]:
        if agents is None:
            return list(self.settings.agents)
        specs: list[AgentSpec] = []
        for name in agents:
            spec = self.settings.agent(name)  # ConfigError names the roster
            if spec not in specs:
                specs.append(spec)
        return specs

    def _sources(self, spec: AgentSpec) -> list[str]:
        names = [self.topics.inbox(spec.name)]
        if spec.role == "moderator":
            names.append(self.topics.requests)
        return names

    # -- admin results -------------------------------------------------------------
    def _result(self, future: concurrent.futures.Future, what: str, deadline: float) -> Any:
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except concurrent.futures.TimeoutError as exc:
            raise BrokerError(
                f"no answer from Kafka on {self.settings.kafka.bootstrap} within "
                f"{self.timeout_s:g} s while reading {what}",
                retriable=True,
            ) from exc
        except KafkaException as exc:
            error = exc.args[0]
            raise BrokerError(f"cannot read {what}: {error.str()}", retriable=error.retriable()) from exc

    def _partitions(self, topic: str, future: concurrent.futures.Future, deadline: float) -> int:
        """The partition count of ``topic``; 0 when it does not exist (no worker created it yet)."""
        try:
            return len(self._result(future, f"the partitions of {topic}", deadline).partitions)
        except BrokerError as exc:
            if isinstance(exc.__cause__, KafkaException) and _code(exc.__cause__) == _UNKNOWN_TOPIC:
                return 0
            raise

    def _committed(self, group: str, future: concurrent.futures.Future, deadline: float) -> dict[_Key, int]:
        result = self._result(future, f"the committed offsets of group {group}", deadline)
        found = {}
        for tp in result.topic_partitions:
            if tp.error is not None:
                raise BrokerError(
                    f"cannot read the offset of group {group} on {tp.topic}[{tp.partition}]: {tp.error}"
                )
            if tp.offset >= 0:  # OFFSET_INVALID (-1001): nothing committed there
                found[(tp.topic, tp.partition)] = tp.offset
        return found

    def _owners(
        self, group: str, future: concurrent.futures.Future, deadline: float
    ) -> dict[_Key, tuple[str, str, str]]:
        description = self._result(future, f"the members of group {group}", deadline)
        return {
            (tp.topic, tp.partition): (m.member_id, m.host, m.client_id)
            for m in description.members
            for tp in (m.assignment.topic_partitions if m.assignment else [])
        }

    def _latest(self, keys: Sequence[_Key], deadline: float) -> tuple[dict[_Key, int], dict[_Key, int]]:
        """ListOffsets latest of ``keys``, both calls in flight at once: the high watermarks
        (read_uncommitted) and the last stable offsets (read_committed). A deleted topic's
        partitions are left out; a partition whose leader is not known yet (a topic just
        created) is asked again until the deadline."""
        found: dict[IsolationLevel, dict[_Key, int]] = {}
        todo = {
            level: list(keys) for level in (IsolationLevel.READ_UNCOMMITTED, IsolationLevel.READ_COMMITTED)
        }
        while True:
            futures = {
                level: self._admin.list_offsets(
                    {TopicPartition(t, p): OffsetSpec.latest() for t, p in ks},
                    isolation_level=level,
                    request_timeout=self.timeout_s,
                )
                for level, ks in todo.items()
                if ks
            }
            todo = {}
            for level, per_partition in futures.items():
                kind = "last stable" if level == IsolationLevel.READ_COMMITTED else "log end"
                for tp, future in per_partition.items():
                    key = (tp.topic, tp.partition)
                    try:
                        offset = self._result(
                            future, f"the {kind} offset of {tp.topic}[{tp.partition}]", deadline
                        )
                        found.setdefault(level, {})[key] = offset.offset
                    except BrokerError as exc:
                        code = _code(exc.__cause__) if isinstance(exc.__cause__, KafkaException) else None
                        if code == _UNKNOWN_TOPIC:
                            continue
                        if (
                            not (exc.retriable or code in _NO_LEADER)
                            or time.monotonic() + _RETRY_S > deadline
                        ):
                            raise
                        todo.setdefault(level, []).append(key)
            if not todo:
                return (
                    found.get(IsolationLevel.READ_UNCOMMITTED, {}),
                    found.get(IsolationLevel.READ_COMMITTED, {}),
                )
            time.sleep(_RETRY_S)


_UNKNOWN_TOPIC = KafkaError.UNKNOWN_TOPIC_OR_PART
# a partition's leader is not known or not ready yet (a topic just created, a leader moving)
_NO_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
}
_RETRY_S = 0.05  # before asking again for offsets the broker could not give yet (no leader)


def _code(exc: KafkaException) -> int:
    return exc.args[0].code()
