"""Build the configured language model from :class:`agon.settings.LLMSettings`."""

from __future__ import annotations

from agon.agents.llm import LLM
from agon.connectors.llm.offline import OfflineLLM
from agon.connectors.llm.ollama import OllamaLLM
from agon.settings import LLMSettings

__all__ = ["make_llm"]


def make_llm(settings: LLMSettings) -> LLM:
    if settings.backend == "ollama":
        return OllamaLLM(
            host=settings.ollama_host,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            stream=settings.stream,
            options=settings.ollama_options(),
            keep_alive=settings.keep_alive,
            max_output_chars=settings.max_output_chars,
        )
    return OfflineLLM(
        latency_s=settings.offline_latency_s,
        failure_rate=settings.offline_failure_rate,
        malformed_rate=settings.offline_malformed_rate,
    )
