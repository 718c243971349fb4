import pytest

from agon.agents.requests import validate_request
from agon.connectors.transcript import new_request
from agon.settings import Settings


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.delenv("AGON_AGENTS", raising=False)
    return Settings()


def test_a_plain_request_is_valid(settings):
    assert validate_request(new_request("Cats beat dogs"), settings) == []


@pytest.mark.parametrize(
    "change, words",
    [
        ({"motion": " "}, "motion is empty"),
        ({"motion": "x" * 501}, "at most 500"),
        ({"rounds": 0}, "between 1 and 50"),
        ({"rounds": 51}, "between 1 and 50"),
        ({"debate_id": "has space"}, "debate id"),
        ({"max_tokens": -1}, "max_tokens"),
        (
            {"teams": [{"agent": "team-a", "stance": "FOR"}, {"agent": "judge", "stance": "AGAINST"}]},
            "unknown agent 'judge'",
        ),
        (
            {"teams": [{"agent": "team-a", "stance": "FOR"}, {"agent": "team-a", "stance": "AGAINST"}]},
            "only one team",
        ),
        (
            {"teams": [{"agent": "moderator", "stance": "FOR"}, {"agent": "team-b", "stance": "AGAINST"}]},
            "unknown agent 'moderator'",
        ),
    ],
)
def test_each_problem_is_named(settings, change, words):
    req = {**new_request("Cats beat dogs"), **change}
    problems = validate_request(req, settings)
    assert any(words in p for p in problems), problems
