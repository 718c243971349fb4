"""The moderator's deadline index: notices go out when due, and again while still overdue."""

from agon.agents.deadlines import Deadlines


def test_nothing_is_due_before_its_deadline():
    d = Deadlines(renotify_ms=5000)
    d.set("a", "a:1:team-a", 1, deadline_ms=1000)
    assert d.overdue(999) == []
    assert [(i, due.attempt) for i, due in d.overdue(1000)] == [("a", 1)]


def test_an_unanswered_notice_is_sent_again_after_the_renotify_interval():
    d = Deadlines(renotify_ms=5000)
    d.set("a", "a:1:team-a", 1, deadline_ms=1000)
    assert len(d.overdue(1000)) == 1
    assert d.overdue(5999) == []
    assert len(d.overdue(6000)) == 1


def test_a_notice_that_could_not_be_sent_is_retried_at_the_next_tick():
    d = Deadlines(renotify_ms=5000)
    d.set("a", "a:1:team-a", 1, deadline_ms=1000)
    [(debate_id, due)] = d.overdue(1000)
    d.failed(debate_id, due)
    assert len(d.overdue(1001)) == 1


def test_a_new_attempt_or_an_end_replaces_the_old_deadline():
    d = Deadlines(renotify_ms=5000)
    d.set("a", "a:1:team-a", 1, deadline_ms=1000)
    d.overdue(1000)
    d.set("a", "a:1:team-a", 2, deadline_ms=9000)
    assert d.overdue(8999) == []
    assert [due.attempt for _, due in d.overdue(9000)] == [2]
    d.drop("a")
    assert d.overdue(99_999) == [] and "a" not in d and len(d) == 0
