import pytest
from rouge_score import rouge_scorer

from amuro.errors import AmuroError
from amuro.metrics import accuracy, rouge_l, score_examples


def test_rouge_l_hand_computed():
    # LCS("the cat on the mat", "the cat sat on the mat") = 5 tokens: P = 5/5, R = 5/6,
    # F = 2PR / (P + R) = (10/6) / (11/6) = 10/11.
    assert rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("", "the cat") == 0.0


def test_rouge_l_matches_rouge_score_with_stemming():
    ref = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [("cats running home", "the cat runs home"), ("A quick fox.", "a slow brown fox")]
    for pred, target in pairs:
        assert rouge_l(pred, target) == ref.score(target, pred)["rougeL"].fmeasure
    assert rouge_l("cats running", "cat runs") == 1.0  # Porter stemming


def test_accuracy_and_score_examples():
    assert accuracy("yes", "yes") == 1.0
    assert accuracy("no", "yes") == 0.0
    assert score_examples("accuracy", ["yes", "no"], ["yes", "yes"]) == [1.0, 0.0]
    assert score_examples("rougeL", ["a b"], ["a b"]) == [1.0]
    with pytest.raises(AmuroError, match="unknown"):
        score_examples("bleu", ["a"], ["a"])
    with pytest.raises(AmuroError, match="predictions"):
        score_examples("accuracy", ["a"], [])
