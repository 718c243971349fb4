"""A debater's model-call concurrency: from settings, or sized by the memory available."""

from agon.agents.debater import LLM_CALL_BYTES, MAX_LLM_SLOTS, llm_slots


def meminfo(tmp_path, available_kb):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       24000000 kB\nMemAvailable:   {available_kb} kB\n")
    return path


def test_a_configured_limit_is_used_as_is(tmp_path):
    assert llm_slots(7, meminfo(tmp_path, 10**9)) == 7


def test_zero_sizes_the_limit_by_a_quarter_of_the_available_memory(tmp_path):
    two_gib_kb = 2 * 2**20
    assert llm_slots(0, meminfo(tmp_path, two_gib_kb)) == 2 * 2**30 // 4 // LLM_CALL_BYTES == 128


def test_the_sized_limit_stays_between_64_and_the_cap(tmp_path):
    assert llm_slots(0, meminfo(tmp_path, 1024)) == 64
    assert llm_slots(0, meminfo(tmp_path, 10**12)) == MAX_LLM_SLOTS
    assert llm_slots(0, tmp_path / "missing") == 64
