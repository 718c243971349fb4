"""One small async interface to language models (``base.LLM``) and its backends: ``offline``, ``ollama``."""
