"""The gateway's producer: one, idempotent, its deliveries awaited on the event loop."""

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaException, Producer

from agon.connectors.gateway.http import ApiError
from agon.connectors.transcript import producer_config
from agon.settings import Settings

__all__ = ["Publisher"]

ACK_TIMEOUT_S = 15.0


class Publisher:
    """The gateway's producer: one, idempotent, polled by its own thread."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer(producer_config(settings))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="agon-gateway-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    async def send(
        self, topic: str, key: str, value: bytes, headers: list | None = None, partition: int = -1
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def delivered(err: Any, _msg: Any) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err))

        try:
            self.producer.produce(
                topic,
                key=key.encode(),
                value=value,
                headers=headers,
                partition=partition,
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            raise ApiError(
                503, f"Kafka cannot take the event now: {exc}", headers={"Retry-After": "1"}
            ) from None
        try:
            err = await asyncio.wait_for(done, ACK_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(503, f"Kafka did not acknowledge the event within {ACK_TIMEOUT_S:.0f} s") from None
        if err is not None:
            raise ApiError(503, f"Kafka refused the event: {err}")

    def close(self) -> None:
        self.producer.flush(10)
        self._stop.set()
        self._thread.join(5)
