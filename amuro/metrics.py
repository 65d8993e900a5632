"""Per-example scores; a metric's value is the mean over examples."""

from __future__ import annotations

from functools import lru_cache

from amuro.errors import AmuroError

METRICS = ("accuracy", "rougeL")


@lru_cache(maxsize=1)
def _rouge_scorer():
    # Built once: RougeScorer sets up its tokenizer and stemmer on construction.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (Porter stemming), as in the paper's generation results."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def accuracy(prediction: str, reference: str) -> float:
    return 1.0 if prediction.strip() == reference.strip() else 0.0


def score_examples(metric: str, predictions: list[str], targets: list[str]) -> list[float]:
    if metric not in METRICS:
        raise AmuroError(f"metric {metric!r} unknown; expected one of {METRICS}")
    if len(predictions) != len(targets):
        raise AmuroError(f"{len(predictions)} predictions for {len(targets)} targets")
    fn = accuracy if metric == "accuracy" else rouge_l
    return [fn(p, t) for p, t in zip(predictions, targets, strict=True)]
