"""The Kafka runtime of an agent worker (faust app, exactly-once, metrics, topic creation) and,
in ``agon.streams.local``, the fleet of local processes and the local broker."""

from agon.streams.admin import ensure_agon_topics, ensure_topics
from agon.streams.app import make_app
from agon.streams.eos import AgonApp, AgonTable
from agon.streams.worker import run_worker

__all__ = ["AgonApp", "AgonTable", "ensure_agon_topics", "ensure_topics", "make_app", "run_worker"]
