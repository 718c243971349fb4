"""Language-model backends behind :class:`agon.agents.llm.LLM`: ``offline`` and ``ollama``."""

from agon.connectors.llm.factory import make_llm
from agon.connectors.llm.offline import OfflineLLM
from agon.connectors.llm.ollama import OllamaLLM

__all__ = ["OfflineLLM", "OllamaLLM", "make_llm"]
