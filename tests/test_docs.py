"""What the README and docs/ say is true of the code: paths exist, numbers match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agon.agents.debater import LLM_CALL_BYTES, MAX_LLM_SLOTS
from agon.agents.requests import MAX_ROUNDS
from agon.settings import REPO_ROOT, Settings
from agon.streams.local.supervisor import Backoff

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
DOCS += [REPO_ROOT / "deploy" / "local" / "README.md", REPO_ROOT / "benchmarks" / "README.md"]
PATH = re.compile(r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*\.(?:py|md|xml|json|avsc|toml))`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_path_a_doc_names_exists_in_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text, "points outside the repository"
    missing = [
        p for p in PATH.findall(text) if not (REPO_ROOT / p).exists() and not (doc.parent / p).exists()
    ]
    assert missing == []


def test_the_numbers_in_the_readme_are_the_code_s() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    defaults = Settings.model_construct().worker  # defaults only, not this environment
    llm = Settings.model_construct().llm
    scale = Settings.model_construct().autoscale
    backoff = Backoff()
    for claim in (
        f"back-off {backoff.base_s:g} s × 2^k, at most {backoff.cap_s:g} s",
        f"a {defaults.session_timeout_s:g} s session timeout",
        f"after {defaults.session_timeout_s:g} s",
        f"rounds outside 1–{MAX_ROUNDS}",
        f"`AGON_LLM_TIMEOUT_S` ({llm.timeout_s:g} s,",
        f"shorter than the {defaults.turn_timeout_s:g} s turn deadline",
        f"`AGON_LLM_MAX_OUTPUT_TOKENS` ({llm.max_output_tokens})",
        f"`AGON_LLM_CONTEXT_TOKENS` ({llm.context_tokens})",
        f"`AGON_LLM_KEEP_ALIVE` ({llm.keep_alive})",
        f"`AGON_LLM_MAX_OUTPUT_CHARS` ({llm.max_output_chars})",
        f"`AGON_LLM_PROMPT_BUDGET_TOKENS` ({llm.prompt_budget_tokens})",
        f"`AGON_WORKER_COMMIT_MAX_EVENTS` events ({defaults.commit_max_events})",
        f"`AGON_WORKER_COMMIT_MAX_DELAY_S` ({defaults.commit_max_delay_s:g} s)",
        f"`AGON_WORKER_FETCH_WAIT_S` ({defaults.fetch_wait_s:g} s)",
        f"at {LLM_CALL_BYTES // 2**20} MiB a call, between 64 and {MAX_LLM_SLOTS}",
        f"`AGON_AUTOSCALE_POLLING_INTERVAL_S` ({scale.polling_interval_s:g} s)",
        f"`AGON_AUTOSCALE_LAG_THRESHOLD` ({scale.lag_threshold})",
        f"`AGON_AUTOSCALE_MIN_REPLICA_COUNT` ({scale.min_replica_count})",
        f"`AGON_AUTOSCALE_SCALE_DOWN_STABILIZATION_S` ({scale.scale_down_stabilization_s:g} s)",
        f"`AGON_WORKER_DRAIN_TIMEOUT_S`, {defaults.drain_timeout_s:g} s",
    ):
        assert claim in " ".join(readme.split())


def test_the_chaos_run_the_readme_describes_is_the_one_ci_runs() -> None:
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    source = (REPO_ROOT / "tests" / "chaos" / "test_chaos.py").read_text()
    debates = re.search(r"^DEBATES, ROUNDS = (\d+), \d+$", source, re.M)
    kills = re.search(r"^KILLS, STOPS, BROKER_RESTARTS = (\d+), 1, 1", source, re.M)
    assert debates and kills
    words = {6: "six", 9: "nine", 12: "twelve"}
    assert f"runs {debates.group(1)} debates" in readme
    assert f"SIGKILLs {words[int(kills.group(1))]} workers" in readme
