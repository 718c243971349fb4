"""Language models served by Ollama, through the official ``ollama`` client.

Timeouts, refused or dropped connections, HTTP 429 and 5xx are retried with
exponential backoff and end, once retries are spent, in a retriable
:class:`LLMError`. Other HTTP errors (a 404 for a model that was never
pulled) fail at once and are not retriable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
from ollama import AsyncClient, ResponseError

from agon.agents.llm import LLMError, Message, Reply

BACKOFF_S = 0.2
_NETWORK_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError)


class OllamaLLM:
    def __init__(
        self,
        host: str = "http://127.0.0.1:11434",
        timeout_s: float = 120.0,
        retries: int = 2,
        stream: bool = False,
    ) -> None:
        self.host = host
        self.retries = retries
        self.stream = stream
        self._client = AsyncClient(host=host, timeout=timeout_s)

    async def chat(self, model: str, messages: Sequence[Message], *, timeout: float | None = None) -> Reply:
        """Ask ``model``; ``timeout`` bounds the whole call, retries included."""
        started = time.monotonic()
        payload = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return await asyncio.wait_for(self._with_retries(model, payload, started), timeout)
        except asyncio.TimeoutError as exc:
            raise LLMError(
                f"ollama at {self.host}: model {model!r} did not answer within {timeout}s", retriable=True
            ) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def _with_retries(self, model: str, payload: list[dict[str, str]], started: float) -> Reply:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                return await self._once(model, payload, started)
            except ResponseError as exc:
                if not _retriable_status(exc.status_code):
                    raise LLMError(
                        f"ollama at {self.host} rejected model {model!r}: {exc}", retriable=False
                    ) from exc
                last = exc
            except _NETWORK_ERRORS as exc:
                last = exc
            except ValueError as exc:  # a body that is not Ollama's JSON (pydantic and json errors)
                raise LLMError(f"ollama at {self.host}: unreadable reply for model {model!r}: {exc}") from exc
        raise LLMError(
            f"ollama at {self.host}: model {model!r} failed after {self.retries + 1} attempts: {last!r}",
            retriable=True,
        ) from last

    async def _once(self, model: str, payload: list[dict[str, str]], started: float) -> Reply:
        if self.stream:
            chunks = [
                chunk async for chunk in await self._client.chat(model=model, messages=payload, stream=True)
            ]
            if not chunks:
                raise ValueError("the stream ended without a chunk")
            final = chunks[-1]
            text = "".join(chunk.message.content or "" for chunk in chunks)
        else:
            final = await self._client.chat(model=model, messages=payload, stream=False)
            text = final.message.content or ""
        return Reply(
            text=text,
            model=final.model or model,
            prompt_tokens=final.prompt_eval_count or 0,
            completion_tokens=final.eval_count or 0,
            latency_ms=int((time.monotonic() - started) * 1000),
        )


def _retriable_status(status: int) -> bool:
    """429 and 5xx; -1 is an error Ollama reported inside a stream (the runner failed mid-answer)."""
    return status == 429 or status >= 500 or status == -1
