"""A faust worker for test_faust_table_recovery: counts events per key in a RocksDB table.

Run as ``python faust_counter_app.py worker -l info`` with the usual AGON_* variables
(AGON_HOME, AGON_NAMESPACE, AGON_KAFKA_BOOTSTRAP, AGON_KAFKA_PARTITIONS). The app is
built by agon's own factory (agon.streams.app.make_app), so the test exercises the settings
the agents run with.

It reads ``<namespace>.counter-events`` (created by the test; keys and values are raw
bytes), keeps ``counts[key] += 1`` in a rocksdict-backed table, and once table recovery
is complete and every source partition is assigned, prints the whole table every
0.2 s as one line on stdout (faust routes print() through its logger)::

    COUNTS {"a": 3, "b": 5}
"""

from __future__ import annotations

import json
import sys

from agon.settings import Settings
from agon.streams.app import make_app

AGENT = "counter"
TABLE = "counts"

settings = Settings()
app = make_app(AGENT, settings)
source_name = f"{settings.namespace}.counter-events"
source = app.topic(
    source_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
counts = app.Table(TABLE, default=int, partitions=settings.kafka.partitions, options={"driver": "rocksdict"})


@app.agent(source)
async def count(stream):
    async for key, _value in stream.items():
        counts[key.decode()] += 1


def _ready() -> bool:
    """Recovery done, no rebalance under way, and this worker holds every source partition."""
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return False
    held = {tp.partition for tp in app.consumer.assignment() if tp.topic == source_name}
    return held == set(range(settings.kafka.partitions))


@app.timer(interval=0.2)
async def report() -> None:
    if _ready():
        print("COUNTS " + json.dumps(dict(counts.items()), sort_keys=True), flush=True)


if __name__ == "__main__":
    sys.argv[1:] = sys.argv[1:] or ["worker", "-l", "info"]
    app.main()
