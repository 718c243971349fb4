from agon.agents.judging import off_topic, similarity, summarize, unproductive

MOTION = "AI's impact on the job market is positive"
A1 = "AI creates new kinds of work, as every wave of automation did before it."
A2 = "Productivity gains from AI lower prices and raise demand for labour across the job market."
B1 = "Automation leaves displaced workers behind; averages hide who loses their job."
B2 = "The market rewards owners of AI tools while wages for routine work stagnate."


def turns(*pairs):
    return [{"speaker": s, "round": i // 2 + 1, "text": t} for i, (s, t) in enumerate(pairs)]


def test_similarity_is_one_for_identical_and_low_for_different_texts():
    assert similarity(A1, A1) == 1.0
    assert similarity(A1, B1) < 0.2


def test_a_varied_exchange_is_productive():
    assert unproductive(turns(("a", A1), ("b", B1), ("a", A2), ("b", B2)), MOTION) is None


def test_both_sides_repeating_is_unproductive_but_one_side_is_not():
    assert "repeat" in unproductive(turns(("a", A1), ("b", B1), ("a", A1), ("b", B1)), MOTION)
    assert unproductive(turns(("a", A1), ("b", B1), ("a", A1), ("b", B2)), MOTION) is None


def test_two_empty_turns_in_a_row_are_unproductive():
    assert unproductive(turns(("a", A1), ("b", ""), ("a", "ok")), MOTION) == "the last two turns were empty"
    assert unproductive(turns(("a", A1), ("b", ""), ("a", A2)), MOTION) is None


def test_turns_that_leave_the_motion_are_off_topic():
    recipe = "Whisk the eggs, fold in flour and bake the cake for forty minutes."
    poem = "Roses bloom in spring gardens under gentle morning rain."
    assert off_topic(recipe, MOTION, poem)
    assert not off_topic(A1, MOTION, None)
    assert "no longer address" in unproductive(turns(("a", A1), ("b", recipe), ("a", poem)), MOTION)


def test_summary_names_each_side_and_the_reason():
    text = summarize(
        MOTION,
        [{"agent": "a", "stance": "FOR"}, {"agent": "b", "stance": "AGAINST"}],
        turns(("a", A1), ("b", B1), ("a", A2)),
        "all 2 rounds were held",
    )
    assert "a (for) opened" in text and "b (against) opened" in text
    assert "all 2 rounds were held" in text and "Productivity gains" in text
