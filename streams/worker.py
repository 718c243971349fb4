"""Running one agent worker in this process: its topics, its local state, faust's Worker."""

from __future__ import annotations

import faust

from agon.settings import Settings
from agon.streams.admin import ensure_agon_topics, ensure_topics
from agon.streams.takeover import discard_local_tables

__all__ = ["changelog_config", "run_worker"]

#: a changelog segment rolls (and becomes compactable) at least this often
CHANGELOG_SEGMENT_MS = 5 * 60 * 1000


def changelog_config(settings: Settings, retention_s: float | None = None) -> dict[str, str]:
    """A table's changelog: compacted often enough that a restarted worker replays about what
    is live, tombstones kept a while; with ``retention_s``, rows also expire by age."""
    config = {
        "cleanup.policy": "compact",
        "segment.ms": str(CHANGELOG_SEGMENT_MS),
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": str(int(settings.history.tombstone_retention_s * 1000)),
    }
    if retention_s is not None:
        config.update({"cleanup.policy": "compact,delete", "retention.ms": str(int(retention_s * 1000))})
    return config


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run ``app`` (one worker of an agent, built by its role) until SIGTERM/SIGINT."""
    from faust.worker import Worker

    ensure_agon_topics(settings)
    if settings.worker.guarantee == "exactly_once":
        discard_local_tables(app)
    # faust creates changelog topics itself, but a first write can race that creation
    changelogs = {
        t.changelog_topic.get_topic_name(): t.partitions or settings.kafka.partitions
        for t in app.tables.values()
    }
    ensure_topics(settings.kafka.bootstrap, changelogs, config={"cleanup.policy": "compact"})
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
