"""The edges of agon: the ``agon`` command line (``cli``), language-model backends (``llm``)
and the client that produces requests and follows transcripts (``transcript``)."""

__all__: list[str] = []
