"""The CLI refuses bad requests before anything reaches Kafka (no broker needed)."""

import io
import json

import pytest

from agon.connectors.cli.main import main


@pytest.fixture(autouse=True)
def unreachable_broker(monkeypatch, tmp_path):
    monkeypatch.setenv("AGON_HOME", str(tmp_path))
    monkeypatch.setenv("AGON_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens there


@pytest.mark.parametrize(
    "argv, words",
    [
        (["debate", "  "], "the motion is empty"),
        (["debate", "Cats beat dogs", "--rounds", "0"], "rounds must be between 1 and 50"),
        (["debate", "Cats beat dogs", "--id", "no/slash"], "debate id"),
    ],
)
def test_bad_debates_are_refused_with_a_clear_message(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_request_reads_json_and_refuses_unknown_agents(monkeypatch, capsys):
    body = {
        "motion": "Cats beat dogs",
        "teams": [{"agent": "team-a", "stance": "FOR"}, {"agent": "nobody", "stance": "AGAINST"}],
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(body)))
    assert main(["request"]) == 2
    assert "unknown agent 'nobody'" in capsys.readouterr().err


def test_request_says_when_stdin_is_not_json(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("motion: cats"))
    assert main(["request"]) == 1
    assert "stdin line 1 is not JSON" in capsys.readouterr().err


def test_json_lines_are_all_checked_before_any_is_sent(monkeypatch, capsys):
    lines = [{"motion": "Cats beat dogs"}, {"motion": "Tea beats coffee", "rounds": 2}, {"motion": ""}]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(x) for x in lines) + "\n\n"))
    assert main(["request"]) == 2  # no broker answers here: nothing was sent
    err = capsys.readouterr().err
    assert "rejected (line 3): the motion is empty" in err


def test_invalid_settings_are_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AGON_LLM_BACKEND", "gpt")
    assert main(["status"]) == 2
    assert "invalid settings" in capsys.readouterr().err


def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("broker", "up", "down", "debate", "tail", "request"):
        assert command in out
