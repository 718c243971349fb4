import asyncio
import itertools
import re
import time

import pytest

from agon.agents.llm import LLMError, Message, estimate_tokens
from agon.connectors.llm.factory import make_llm
from agon.connectors.llm.offline import _ARGUMENTS, OfflineLLM
from agon.settings import LLMSettings

MOTION = "AI's impact on the job market is positive"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def system(stance: str, motion: str = MOTION) -> Message:
    return Message("system", f"You are a debater.\nMotion: {motion}\nStance: {stance}\nBe brief.")


def opponent(turn: str) -> Message:
    return Message("user", f"Your opponent said:\n<<<\n{turn}\n>>>\nAnswer them.")


def looks_sane(text: str) -> bool:
    return bool(text.strip()) and not CONTROL.search(text) and not text.lstrip().startswith("{")


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](\s|$)", text))


async def test_same_input_gives_same_text():
    messages = [system("for"), opponent("Automation wipes out clerical work. Wages stall.")]
    first = await OfflineLLM().chat("offline", messages)
    second = await OfflineLLM().chat("offline", messages)
    assert first.text == second.text
    assert first.model == "offline"
    assert first.completion_tokens == estimate_tokens(first.text)
    assert first.prompt_tokens == sum(estimate_tokens(m.content) for m in messages)


@pytest.mark.parametrize("seed", range(5))
async def test_for_and_against_argue_opposite_sides(seed: int):
    llm = OfflineLLM(seed=seed)
    pro = (await llm.chat("offline", [system("for"), Message("user", "Open the debate.")])).text
    con = (await llm.chat("offline", [system("against"), Message("user", "Open the debate.")])).text
    assert "for the motion" in pro and "against the motion" not in pro
    assert "against the motion" in con
    assert MOTION in pro and MOTION in con
    assert 2 <= sentences(pro) <= 4 and 2 <= sentences(con) <= 4


async def test_the_round_in_the_brief_picks_the_argument():
    """A prompt whose older turns were dropped still gets the round's own argument."""
    llm = OfflineLLM()
    brief = Message("system", system("for").content + "\nRound: 7")
    full = [brief, *[Message("assistant", f"turn {i}.") for i in range(6)], opponent("Wages stall.")]
    trimmed = [brief, opponent("Wages stall.")]
    argued = []
    for messages in (full, trimmed):
        text = (await llm.chat("offline", messages)).text
        argued.append([a for a in _ARGUMENTS["for"] if a in text])
    assert argued[0] == argued[1] and len(argued[0]) == 1


async def test_any_motion_is_argued():
    motion = "Cities should ban private cars from their centres"
    reply = await OfflineLLM().chat("offline", [system("against", motion), Message("user", "Open.")])
    assert "cities should ban private cars from their centres" in reply.text


async def test_reply_engages_the_opponents_point():
    turn = (
        "My opponent is too hopeful about the motion, as ever. Automation wipes out routine clerical "
        "jobs far faster than any retraining scheme can replace them. Thanks."
    )
    reply = await OfflineLLM().chat("offline", [system("for"), opponent(turn)])
    assert '"Automation wipes out routine clerical jobs far faster than any retraining' in reply.text
    assert "opponent" in reply.text


async def test_eight_rounds_never_repeat_a_turn():
    llms = OfflineLLM(seed=7)
    transcript: dict[str, list[Message]] = {"for": [system("for")], "against": [system("against")]}
    texts = []
    last = None
    for _, stance in itertools.product(range(8), ("for", "against")):
        history = transcript[stance]
        history.append(opponent(last) if last else Message("user", "Open the debate."))
        last = (await llms.chat("offline", history)).text
        history.append(Message("assistant", last))
        texts.append(last)
    for stance in ("for", "against"):
        own = [m.content for m in transcript[stance] if m.role == "assistant"]
        assert len(own) == 8 and len(set(own)) == 8
    assert len(set(texts)) == 16
    assert all(looks_sane(t) for t in texts)


async def test_repeat_model_says_the_same_every_round():
    llm = OfflineLLM()
    history = [system("against"), Message("user", "Open the debate.")]
    texts = []
    for round_ in range(4):
        brief = Message("system", f"{history[0].content}\nRound: {round_ + 1}")  # as agon's prompts say
        text = (await llm.chat("offline:repeat", [brief, *history[1:]])).text
        texts.append(text)
        history += [Message("assistant", text), opponent(f"Point number {round_} is that jobs grow.")]
    assert texts[0] and len(set(texts)) == 1


async def test_empty_model_answers_nothing():
    reply = await OfflineLLM().chat("offline:empty", [system("for")])
    assert reply.text == "" and reply.completion_tokens == 0


async def test_fail_model_raises_retriable():
    with pytest.raises(LLMError) as info:
        await OfflineLLM().chat("offline:fail", [system("for")])
    assert info.value.retriable


async def test_unknown_offline_model_is_not_retriable():
    with pytest.raises(LLMError, match="offline:nonsense") as info:
        await OfflineLLM().chat("offline:nonsense", [system("for")])
    assert not info.value.retriable


async def test_failure_rate_one_always_fails():
    llm = OfflineLLM(failure_rate=1.0)
    for _ in range(5):
        with pytest.raises(LLMError) as info:
            await llm.chat("offline", [system("for")])
        assert info.value.retriable


async def test_failure_rate_half_lets_a_retry_succeed():
    llm = OfflineLLM(failure_rate=0.5, seed=3)
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append((await llm.chat("offline", [system("for")])).text)
        except LLMError:
            outcomes.append(None)
    assert None in outcomes
    assert len({t for t in outcomes if t is not None}) == 1


async def test_malformed_rate_one_gives_garbage():
    llm = OfflineLLM(malformed_rate=1.0)
    history = [system("for"), opponent("Jobs vanish. Towns empty.")]
    texts = [(await llm.chat("offline", history)).text for _ in range(10)]
    assert not any(looks_sane(t) for t in texts)
    assert looks_sane((await OfflineLLM().chat("offline", history)).text)


async def test_calls_run_concurrently():
    llm = OfflineLLM(latency_s=0.3)
    started = time.monotonic()
    replies = await asyncio.gather(
        *(llm.chat("offline", [system("for"), opponent(f"Claim {i} about jobs.")]) for i in range(20))
    )
    assert time.monotonic() - started < 3.0
    assert all(r.latency_ms >= 300 for r in replies)


async def test_timeout_shorter_than_latency_is_retriable():
    with pytest.raises(LLMError, match="within") as info:
        await OfflineLLM(latency_s=2.0).chat("offline", [system("for")], timeout=0.1)
    assert info.value.retriable


def test_factory_builds_the_configured_offline_model():
    llm = make_llm(LLMSettings(backend="offline", offline_latency_s=0.5, offline_failure_rate=0.25))
    assert isinstance(llm, OfflineLLM)
    assert (llm.latency_s, llm.failure_rate) == (0.5, 0.25)
