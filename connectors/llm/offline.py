"""A language model that needs nothing: deterministic, stance-aware debate turns.

It reads ``Motion: <text>`` and ``Stance: for|against`` from the system
message, opens the debate when it has no opponent turn yet, and otherwise
answers a phrase quoted from the opponent's last turn (the lines between
``<<<`` and ``>>>`` in the last user message). The round (``Round: <n>`` in the
system message, else the number of its own earlier turns) picks the argument,
so it does not repeat itself. Token counts use agon's estimate.

Models: ``offline`` (a debater), ``offline:repeat`` (the same text every
turn), ``offline:empty`` (""), ``offline:fail`` (always a retriable error).
Any model name not starting with ``offline`` behaves as ``offline``.
Injected latency, failures and malformed output serve demos and benchmarks;
faults are drawn from the instance's own seeded stream, so a retry of the same
request can succeed, while the text depends only on the seed and the input.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import Sequence

from agon.agents.llm import LLMError, Message, Reply, estimate_tokens

_MODES = {"offline": "normal", "offline:repeat": "repeat", "offline:empty": "empty", "offline:fail": "fail"}
_MOTION = re.compile(r"^\s*Motion:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_ROUND = re.compile(r"^\s*Round:\s*(\d+)", re.MULTILINE)
_STANCE = re.compile(r"^\s*Stance:\s*(for|against)\b", re.MULTILINE | re.IGNORECASE)
_QUOTED = re.compile(r"^<<<[ \t]*\n(.*?)\n>>>[ \t]*$", re.MULTILINE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MENTIONS = re.compile(r"opponent|motion", re.IGNORECASE)
_QUOTE_WORDS = 12

_OPENINGS = {
    "for": (
        "We stand firmly for the motion: {motion}.",
        "We speak for the motion, and we will show, round by round, that {motion}.",
        "Let us begin plainly: we are for the motion, because {motion}.",
    ),
    "against": (
        "We stand against the motion that {motion}.",
        "We speak against the motion, and we will show, round by round, that it is wrong to claim {motion}.",
        "Let us begin plainly: we are against the motion, because the claim that {motion} does not hold up.",
    ),
}
_ARGUMENTS = {
    "for": (
        "The evidence points one way. Where this has been tried, the gains arrived sooner and spread wider than the sceptics predicted.",
        "History is on our side. Every comparable shift was met with alarm, and every time the long-run balance came out ahead.",
        "Look at who benefits in practice. Ordinary people, not just a few insiders, gain new options they did not have before.",
        "The costs our opponents fear are real but temporary and manageable. The benefits compound year after year.",
        "Consider the alternative. Rejecting the motion means defending a status quo that already fails many of the people it claims to protect.",
        "Adaptation is the rule, not the exception. People, firms and institutions adjust, and the record of that adjustment is encouraging.",
        "Measured outcomes matter more than anecdotes. Productivity, new roles and lower prices can all be counted, and they all point the same way.",
        "Good policy can capture the upside. Training, transition support and fair rules turn a promising trend into a broad gain.",
        "The clearest sign is where demand is growing. New kinds of work appear around every capable tool, and they pay.",
        "Caution is wise, but paralysis is not. An honest weighing of risks against gains comes down on our side.",
    ),
    "against": (
        "The evidence does not support the motion. The gains are concentrated in few hands while the costs fall on people with the least room to absorb them.",
        "Optimism is not an argument. The averages our opponents cite hide who actually loses, and how badly.",
        "History does not promise a happy ending. Past transitions took decades and broke many livelihoods before any balance returned.",
        "Speed changes everything. When change outpaces retraining, the people displaced are not the ones who find the new roles.",
        "Look at the quality, not just the quantity. Even where new work appears, it is often less secure and less well paid.",
        "The burden of proof lies with our opponents. They must show gains for most people, not merely for those already well placed.",
        "Promised safeguards are not delivered safeguards. Training schemes and transition support are routinely underfunded.",
        "Power matters as much as productivity. When the gains accrue to whoever owns the tools, workers lose bargaining strength.",
        "Uncertainty cuts against confident claims. Nobody can yet measure the long-run effects, so the motion is a bet, not a finding.",
        "Local damage is real damage. Whole communities built around the old way of working are left behind, whatever the national figures say.",
    ),
}
_REBUTTALS = {
    "for": (
        'My opponent claims that "{quote}"; but that describes a risk to manage, not a reason to reject the motion.',
        'My opponent says "{quote}", yet that overlooks how quickly people and institutions adapt.',
        'When my opponent argues "{quote}", they name a real concern, but one the evidence shows is outweighed.',
        'My opponent insists that "{quote}"; the record, however, points the other way.',
        'Take my opponent\'s point that "{quote}": it is exactly where good policy turns a risk into an opportunity.',
        'My opponent tells us "{quote}", but a cost named is not a cost proven.',
    ),
    "against": (
        'My opponent claims that "{quote}"; but that is a hope, not evidence.',
        'My opponent says "{quote}", yet that ignores who actually bears the cost.',
        'When my opponent argues "{quote}", they rely on averages that hide the losers.',
        'My opponent insists that "{quote}"; the gains they describe are neither guaranteed nor shared.',
        'Take my opponent\'s point that "{quote}": it assumes safeguards that rarely materialise.',
        'My opponent tells us "{quote}", but saying so does not make it true for the people displaced.',
    ),
}
_CLOSINGS = {
    "for": (
        "That is why {motion}.",
        "On any honest ledger, {motion}.",
        "The house should support the motion.",
    ),
    "against": (
        "That is why we cannot accept that {motion}.",
        "On any honest ledger, the motion fails.",
        "The house should reject the motion.",
    ),
}


class OfflineLLM:
    def __init__(
        self,
        latency_s: float = 0.0,
        failure_rate: float = 0.0,
        malformed_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.failure_rate = failure_rate
        self.malformed_rate = malformed_rate
        self.seed = seed
        self._faults = random.Random(seed)

    async def chat(self, model: str, messages: Sequence[Message], *, timeout: float | None = None) -> Reply:
        started = time.monotonic()
        mode = _mode(model)
        try:
            text = await asyncio.wait_for(self._answer(mode, model, messages), timeout)
        except asyncio.TimeoutError as exc:
            raise LLMError(
                f"offline model {model!r} did not answer within {timeout}s", retriable=True
            ) from exc
        return Reply(
            text=text,
            model=model,
            prompt_tokens=sum(estimate_tokens(m.content) for m in messages),
            completion_tokens=estimate_tokens(text),
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    async def aclose(self) -> None:
        return None

    async def _answer(self, mode: str, model: str, messages: Sequence[Message]) -> str:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if mode == "fail" or self._faults.random() < self.failure_rate:
            raise LLMError(f"offline model {model!r}: injected failure", retriable=True)
        if mode == "empty":
            return ""
        text = _debate_turn(self.seed, model, messages, repeat=mode == "repeat")
        if self._faults.random() < self.malformed_rate:
            return _garble(text, random.Random(_digest(self.seed, "garble", text)))
        return text


def _mode(model: str) -> str:
    if model in _MODES:
        return _MODES[model]
    if model.startswith("offline"):
        raise LLMError(f"unknown offline model {model!r}; known: {', '.join(_MODES)}", retriable=False)
    return "normal"


def _debate_turn(seed: int, model: str, messages: Sequence[Message], *, repeat: bool) -> str:
    system = next((m.content for m in messages if m.role == "system"), "")
    found = _MOTION.search(system)
    motion = _clause(found.group(1)) if found else "the motion"
    found = _STANCE.search(system)
    stance = found.group(1).lower() if found else "for"
    if repeat:
        round_, quote, context = 0, None, [_ROUND.sub("", system)]
    else:
        found = _ROUND.search(system)
        round_ = int(found.group(1)) - 1 if found else sum(m.role == "assistant" for m in messages)
        quote = _salient(_opponent_turn(messages))
        context = [m.content for m in messages]
    rng = random.Random(_digest(seed, model, *context))
    # one fixed order per motion and side, walked by round: no argument comes twice
    order = random.Random(_digest(seed, motion, stance))
    arguments = order.sample(_ARGUMENTS[stance], k=len(_ARGUMENTS[stance]))
    rebuttals = order.sample(_REBUTTALS[stance], k=len(_REBUTTALS[stance]))
    if quote is None:
        first = rng.choice(_OPENINGS[stance]).format(motion=motion)
    else:
        first = rebuttals[round_ % len(rebuttals)].format(quote=quote)
    sentences = [first, arguments[round_ % len(arguments)]]
    if rng.random() < 0.5:
        sentences.append(rng.choice(_CLOSINGS[stance]).format(motion=motion))
    return " ".join(sentences)


def _clause(motion: str) -> str:
    """The motion as it reads inside a sentence: no final stop, lower-case unless an acronym."""
    motion = motion.strip().rstrip(".!?")
    if len(motion) > 1 and motion[1].islower():
        return motion[0].lower() + motion[1:]
    return motion


def _opponent_turn(messages: Sequence[Message]) -> str | None:
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    found = _QUOTED.search(last_user)
    return found.group(1).strip() if found else None


def _salient(turn: str | None) -> str | None:
    """The opponent's longest substantive sentence (not about the motion or about us), clipped."""
    if not turn:
        return None
    sentences = [s for s in _SENTENCE_END.split(turn) if s.strip()]
    own = [s for s in sentences if not _MENTIONS.search(s)] or sentences
    words = max(own, key=len).replace('"', "'").split()
    phrase = " ".join(words[:_QUOTE_WORDS]).rstrip(".,;:!?'")
    return phrase + "…" if len(words) > _QUOTE_WORDS else phrase


def _garble(text: str, rng: random.Random) -> str:
    """What a broken model emits: a truncated JSON fragment or text cut off by control bytes."""
    cut = text[: rng.randint(1, max(1, len(text) // 2))]
    if rng.random() < 0.5:
        return '{"argument": "' + cut + "\x00"
    return cut + "\x1b[0m\ufffd\x07"


def _digest(*parts: object) -> int:
    data = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
