"""What makes a DebateRequested acceptable: checked by the CLI before it sends, and by the
moderator whatever path the request took."""

from __future__ import annotations

from typing import Any

from agon.schemas import Topics
from agon.settings import Settings

MAX_ROUNDS = 50
MAX_MOTION = 500
MAX_PERSONA = 500
MAX_MODEL = 200


def validate_request(req: dict[str, Any], settings: Settings) -> list[str]:
    """Every problem with the request, as sentences a user can act on; [] when it is valid."""
    problems = []
    id_problem = Topics(settings.namespace).debate_id_problem(req.get("debate_id"))
    if id_problem:
        problems.append(id_problem)
    motion = (req.get("motion") or "").strip()
    if not motion:
        problems.append("the motion is empty")
    elif len(motion) > MAX_MOTION:
        problems.append(f"the motion has {len(motion)} characters; at most {MAX_MOTION}")
    rounds = req.get("rounds", 8)
    if not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        problems.append(f"rounds must be between 1 and {MAX_ROUNDS}, not {rounds}")
    if (req.get("max_tokens") or 0) < 0:
        problems.append("max_tokens must be 0 (no budget) or positive")
    debaters = {a.name for a in settings.debaters}
    teams = req.get("teams") or []
    for team in teams:
        if team["agent"] not in debaters:
            known = ", ".join(sorted(debaters)) or "none"
            problems.append(f"unknown agent {team['agent']!r} (debaters: {known})")
        if len(team.get("persona") or "") > MAX_PERSONA:
            problems.append(f"{team['agent']}'s persona is longer than {MAX_PERSONA} characters")
        if len(team.get("model") or "") > MAX_MODEL:
            problems.append(f"{team['agent']}'s model name is longer than {MAX_MODEL} characters")
    if teams and len({t["agent"] for t in teams}) != len(teams):
        problems.append("an agent may speak for only one team")
    if teams and len(teams) < 2:
        problems.append("a debate needs at least two teams")
    if not teams and len(debaters) < 2:
        problems.append("the roster has fewer than two debaters")
    return problems
