"""The faust app factory: one app (consumer group, tables, data directory) per agent worker."""

from __future__ import annotations

import faust

from agon.schemas.topics import Topics
from agon.settings import Settings
from agon.streams.eos import AgonApp, AgonTable


def make_app(agent: str, settings: Settings, worker: int = 0) -> faust.App:
    """A faust app for ``agent``'s worker number ``worker``.

    All replicas of an agent share the app id (hence the consumer group and the
    changelog topics); each has its own RocksDB directory under AGON_HOME.
    """
    topics = Topics(settings.namespace)
    w = settings.worker
    datadir = settings.worker_dir(agent, worker)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return AgonApp(
        topics.app_id(agent),
        broker=f"kafka://{settings.kafka.bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        processing_guarantee=w.guarantee,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        # faust's defaults (2.8 s) put seconds between agent hops; a turn is worth more
        broker_commit_interval=w.commit_interval_s,
        broker_session_timeout=w.session_timeout_s,
        # static membership: a worker the supervisor restarts within the session timeout
        # gets its partitions back without a rebalance of the whole group
        consumer_group_instance_id=f"{agent}-{worker}" if w.static_membership else None,
        broker_heartbeat_interval=w.heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        web_enabled=w.web_port > 0,
        web_port=w.web_port or 6066,
        web_in_thread=False,
        table_standby_replicas=1,
        producer_linger=0.0,
        commit_timeout_s=w.commit_timeout_s,
        commit_max_events=w.commit_max_events,
        commit_max_delay_s=w.commit_max_delay_s,
        fetch_wait_s=w.fetch_wait_s,
        Table=AgonTable,
        agent_name=agent,
    )
