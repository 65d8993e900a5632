import pytest

from amuro.errors import AmuroError
from amuro.fewshot import draw_demonstrations
from amuro.prompts import DEMO_SEPARATOR
from amuro.truncation import DROPPED_DEMOS, NONE, TRUNCATED_INPUT, fit_prompt

POOL = [{"id": f"d{i}", "fields": {}, "target": "x"} for i in range(10)]
TEST_IDS = [f"t{i}" for i in range(20)]


def test_demos_deterministic_and_from_pool_only():
    pool_ids = {d["id"] for d in POOL}
    draws = [draw_demonstrations(POOL, 4, 1234, q) for q in TEST_IDS]
    assert draws == [draw_demonstrations(POOL, 4, 1234, q) for q in TEST_IDS]
    for draw in draws:
        ids = [d["id"] for d in draw]
        assert len(set(ids)) == 4  # without replacement
        assert set(ids) <= pool_ids
        assert not set(ids) & set(TEST_IDS)
    assert len({tuple(d["id"] for d in draw) for draw in draws}) > 1  # varies per query
    assert draw_demonstrations(POOL, 4, 1, "t0") != draw_demonstrations(POOL, 4, 2, "t0")
    assert draw_demonstrations(POOL, 0, 1234, "t0") == []


def test_too_many_shots_raises():
    with pytest.raises(AmuroError, match="demo pool has 10"):
        draw_demonstrations(POOL, 11, 1234, "t0")


class CharTokenizer:
    """One token per character, so budgets are easy to count."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def _text(ids):
    return "".join(chr(i) for i in ids)


def test_truncation_drops_demos_before_cutting_query():
    tok = CharTokenizer()
    blocks, query = ["AAAA", "BBBB"], "question?"
    full = DEMO_SEPARATOR.join([*blocks, query])

    fitted = fit_prompt(blocks, query, tok, budget=len(full))
    assert (fitted.action, fitted.demos_kept, _text(fitted.ids)) == (NONE, 2, full)
    assert not fitted.touched

    fitted = fit_prompt(blocks, query, tok, budget=len(full) - 1)  # oldest demo goes first
    assert (fitted.action, fitted.demos_kept) == (DROPPED_DEMOS, 1)
    assert _text(fitted.ids) == "BBBB" + DEMO_SEPARATOR + query

    fitted = fit_prompt(blocks, query, tok, budget=len(query))
    assert (fitted.action, fitted.demos_kept, _text(fitted.ids)) == (DROPPED_DEMOS, 0, query)

    fitted = fit_prompt(blocks, query, tok, budget=4)  # keeps the end: the answer cue
    assert (fitted.action, fitted.demos_kept, _text(fitted.ids)) == (TRUNCATED_INPUT, 0, "ion?")
    assert fitted.touched

    with pytest.raises(AmuroError):
        fit_prompt(blocks, query, tok, budget=0)
