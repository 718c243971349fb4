"""Language models served by Ollama, through the official ``ollama`` client.

Timeouts, refused or dropped connections, HTTP 429 and 5xx are retried with
exponential backoff and end, once retries are spent, in a retriable
:class:`LLMError`. Other HTTP errors (a 404 for a model that was never
pulled) fail at once and are not retriable.

Every call carries the model options (``num_predict``, ``temperature``,
``num_ctx``) and ``keep_alive``. Streamed, an answer is read only up to
``max_output_chars``: the connection is then closed, which stops the model, so a
runaway answer costs neither the generation time nor the bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
from ollama import AsyncClient, ResponseError

from agon.agents.llm import LLMError, Message, Reply, estimate_tokens

BACKOFF_S = 0.2
_NETWORK_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError)


class OllamaLLM:
    def __init__(
        self,
        host: str = "http://127.0.0.1:11434",
        timeout_s: float = 120.0,
        retries: int = 2,
        stream: bool = False,
        options: dict[str, Any] | None = None,
        keep_alive: str | None = None,
        max_output_chars: int | None = None,
    ) -> None:
        self.host = host
        self.retries = retries
        self.stream = stream
        self.options = options or {}
        self.keep_alive = keep_alive
        self.max_output_chars = max_output_chars
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
        ask = {"model": model, "messages": payload, "options": self.options, "keep_alive": self.keep_alive}
        if not self.stream:
            final = await self._client.chat(**ask, stream=False)
            return self._reply(model, payload, final.message.content or "", final, started)
        parts: list[str] = []
        length = 0
        final = None
        stream = await self._client.chat(**ask, stream=True)
        try:
            async for chunk in stream:
                final = chunk
                parts.append(chunk.message.content or "")
                length += len(parts[-1])
                if self.max_output_chars is not None and length >= self.max_output_chars:
                    break  # closing the stream ends the generation on the server
        finally:
            await stream.aclose()
        if final is None:
            raise ValueError("the stream ended without a chunk")
        return self._reply(model, payload, "".join(parts), final, started)

    def _reply(
        self, model: str, payload: list[dict[str, str]], text: str, final: Any, started: float
    ) -> Reply:
        """A cut-off stream has no final chunk with counts: they are estimated then."""
        return Reply(
            text=text,
            model=final.model or model,
            prompt_tokens=final.prompt_eval_count or estimate_tokens(" ".join(m["content"] for m in payload)),
            completion_tokens=final.eval_count or estimate_tokens(text),
            latency_ms=int((time.monotonic() - started) * 1000),
        )


def _retriable_status(status: int) -> bool:
    """429 and 5xx; -1 is an error Ollama reported inside a stream (the runner failed mid-answer)."""
    return status == 429 or status >= 500 or status == -1
