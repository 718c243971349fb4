"""How the moderator judges an exchange: is it still productive, and what did it say.

Pure functions over the turns the moderator keeps; no Kafka, no LLM.
"""

from __future__ import annotations

import re
from typing import Any

REPEAT_SIMILARITY = 0.8
MIN_WORDS = 4

_WORD = re.compile(r"[a-z0-9']+")
#: where one sentence ends and the next begins
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    "a an the and or but if of to in on for with at by from as is are was were be been being "
    "it its this that these those i you he she we they my your our their not no so than then "
    "there here which who whom what when where why how all any both each more most other some "
    "such only own same too very can will just do does did has have had would should could may "
    "might must about into over under again further once because while also yet".split()
)


def words(text: str) -> list[str]:
    """Lower-case words, possessives folded ("AI's" -> "ai")."""
    return [w.removesuffix("'s").strip("'") for w in _WORD.findall(text.lower())]


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in _STOP and len(w) > 1}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word trigrams (word sets for very short texts)."""
    wa, wb = words(a), words(b)
    if len(wa) < 3 or len(wb) < 3:
        sa, sb = set(wa), set(wb)
    else:
        sa = {tuple(wa[i : i + 3]) for i in range(len(wa) - 2)}
        sb = {tuple(wb[i : i + 3]) for i in range(len(wb) - 2)}
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def is_empty(text: str) -> bool:
    return len(words(text)) < MIN_WORDS


def off_topic(text: str, motion: str, previous: str | None) -> bool:
    """A turn that shares no content word with the motion nor with the turn it answers."""
    vocabulary = content_words(motion) | content_words(previous or "")
    return not (content_words(text) & vocabulary)


def unproductive(turns: list[dict[str, Any]], motion: str) -> str | None:
    """Why the exchange has stopped being productive, or None while it still is.

    ``turns`` are in order, each with ``speaker`` and ``text``. The exchange is
    over when the last two turns are empty, when the last two turns are both off
    topic, or when every speaker's last turn repeats its previous one.
    """
    if len(turns) < 2:
        return None
    last, before = turns[-1], turns[-2]
    if is_empty(last["text"]) and is_empty(before["text"]):
        return "the last two turns were empty"
    if (
        len(turns) >= 3
        and off_topic(last["text"], motion, before["text"])
        and off_topic(before["text"], motion, turns[-3]["text"])
    ):
        return "the last two turns no longer address the motion"
    by_speaker: dict[str, list[str]] = {}
    for turn in turns:
        by_speaker.setdefault(turn["speaker"], []).append(turn["text"])
    if len(by_speaker) < 2 or any(len(texts) < 2 for texts in by_speaker.values()):
        return None
    scores = {s: similarity(t[-1], t[-2]) for s, t in by_speaker.items()}
    if all(score >= REPEAT_SIMILARITY for score in scores.values()):
        detail = ", ".join(f"{s} {v:.2f}" for s, v in sorted(scores.items()))
        return f"both sides repeat themselves (similarity to their previous turn: {detail})"
    return None


def _sentence(text: str, index: int, limit: int = 220) -> str:
    sentence = SENTENCE_BREAK.split(text.strip())[index]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def summarize(motion: str, speakers: list[dict[str, Any]], turns: list[dict[str, Any]], reason: str) -> str:
    """An extractive summary: each side's opening and closing point, and why it ended."""
    parts = [f"Motion: {motion}. {len(turns)} turns; ended: {reason}."]
    for spec in speakers:
        own = [t["text"] for t in turns if t["speaker"] == spec["agent"] and not is_empty(t["text"])]
        side = "for" if spec["stance"] == "FOR" else "against"
        if not own:
            parts.append(f"{spec['agent']} ({side}) made no argument.")
            continue
        line = f'{spec["agent"]} ({side}) opened: "{_sentence(own[0], 0)}"'
        if len(own) > 1:
            line += f' and closed: "{_sentence(own[-1], -1)}"'
        parts.append(line + ".")
    return " ".join(parts)
