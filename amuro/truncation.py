"""Explicit truncation policy, applied to every prompt before scoring.

Order of measures: (1) drop demonstrations from the front, oldest first, until the prompt fits;
(2) only if the query alone is still too long, cut tokens from the LEFT of the query, keeping
its end, which holds the answer cue (`### Label:`). Which measure was taken is reported per
prompt so the outputs can count the prompts that were touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from amuro.errors import AmuroError
from amuro.prompts import join_few_shot

NONE = "none"
DROPPED_DEMOS = "dropped_demos"
TRUNCATED_INPUT = "truncated_input"


@dataclass(frozen=True)
class FittedPrompt:
    ids: list[int]
    action: str  # NONE | DROPPED_DEMOS | TRUNCATED_INPUT
    demos_kept: int

    @property
    def touched(self) -> bool:
        return self.action != NONE


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_prompt(blocks: list[str], query_prompt: str, tokenizer, budget: int) -> FittedPrompt:
    """Token ids of the joined prompt, shortened to at most `budget` tokens by the policy above.

    `budget` = context length - reserved tokens (max_new_tokens for generation, 1 for
    classification).
    """
    if budget < 1:
        raise AmuroError(f"prompt token budget must be >= 1, got {budget}")
    # Each step re-encodes the joined text rather than summing block lengths: BPE merges
    # across the separator could make a sum of parts differ from the whole.
    for start in range(len(blocks) + 1):
        ids = _encode(tokenizer, join_few_shot(blocks[start:], query_prompt))
        if len(ids) <= budget:
            action = NONE if start == 0 else DROPPED_DEMOS
            return FittedPrompt(ids, action, len(blocks) - start)
    return FittedPrompt(ids[-budget:], TRUNCATED_INPUT, 0)
