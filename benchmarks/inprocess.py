"""The in-process baseline: the same debates in a plain asyncio loop in this one process, no
Kafka. Each turn is what a debater and the moderator do with it, without the distribution:
build the prompt (``agents/prompts.py`` ``build_messages``, within the prompt budget), call the
same offline model, clip the answer, append the turn, judge the exchange
(``agents/judging.py`` ``unproductive``). Turns are stamped with ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import time

from agon.agents.debater import clip_answer
from agon.agents.judging import unproductive
from agon.agents.prompts import build_messages
from agon.connectors.llm.offline import OfflineLLM
from agon.settings import Settings

MOTION = "AI's impact on the job market is positive"


async def debate(llm: OfflineLLM, settings: Settings, rounds: int, stamps: list[float]) -> None:
    speakers = settings.default_teams()
    history: list[dict] = []
    for round_ in range(1, rounds + 1):
        for speaker in speakers:
            request = {"motion": MOTION, "stance": speaker["stance"], "persona": speaker["persona"]}
            request["round"] = round_
            messages = build_messages(speaker["agent"], request, history, settings.llm.prompt_budget_tokens)
            reply = await llm.chat(settings.llm.model, messages, timeout=settings.llm.timeout_s)
            text = clip_answer(reply.text, settings.llm.max_output_chars)
            history.append({"round": round_, "speaker": speaker["agent"], "text": text})
            stamps.append(time.perf_counter())
            if unproductive(history, MOTION):
                return


async def batch(n: int, rounds: int, latency_s: float, settings: Settings) -> list[float]:
    """Run ``n`` debates at once; the times (s) their turns were taken."""
    llm = OfflineLLM(latency_s=latency_s)
    stamps: list[float] = []
    await asyncio.gather(*(debate(llm, settings, rounds, stamps) for _ in range(n)))
    return stamps


def run(n: int, rounds: int, batches: int = 1, latency_s: float = 0.0) -> list[list[float]]:
    """``batches`` batches of ``n`` debates, one after another: each batch's turn times."""
    settings = Settings.model_construct()  # agon's defaults, whatever this environment says
    return [asyncio.run(batch(n, rounds, latency_s, settings)) for _ in range(batches)]
