"""Processes on this machine: the single-node KRaft broker from Maven Central jars, and the
fleet of agent workers that a supervisor (``python -m agon.streams.local.supervisor``) keeps
running."""

from agon.streams.local.broker import BrokerStatus, LocalBroker
from agon.streams.local.fleet import Fleet, WorkerProc

__all__ = ["BrokerStatus", "Fleet", "LocalBroker", "WorkerProc"]
