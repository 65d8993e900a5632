from types import SimpleNamespace

import pytest
import torch

from amuro.errors import AmuroError
from amuro.modeling import load_model, load_tokenizer
from amuro.scoring import (
    NewlineTokens,
    _line_done,
    classify,
    first_subtoken_ids,
    generate_greedy,
    label_tokens,
    postprocess_generation,
)
from amuro.tokenizer import train_tokenizer


def test_first_subtoken_ids_distinct_labels(tiny_checkpoint):
    tok = load_tokenizer(tiny_checkpoint)
    labels = ["entailment", "neutral", "contradiction"]
    ids = first_subtoken_ids(tok, labels, task="nli")
    assert ids == [tok(" " + lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    assert len(set(ids)) == 3


def test_shared_space_token_is_a_prefix_then_labels_differ():
    # With no merges at all, every " label" starts with the same byte token "Ġ" (as Llama-style
    # tokenizers write " 1" as "Ġ" + "1"): the space becomes the prompt's last token and each
    # label is scored by its next sub-token.
    tok = train_tokenizer(["ab"], vocab_size=257)
    prefix, ids = label_tokens(tok, ["entailment", "neutral"], task="nli")
    assert tok.convert_ids_to_tokens(prefix) == ["Ġ"]
    assert tok.convert_ids_to_tokens(ids) == ["e", "n"]
    with pytest.raises(AmuroError) as err:
        first_subtoken_ids(tok, ["entailment", "neutral"], task="nli")
    assert "every label starts with sub-token 'Ġ'" in str(err.value)


def test_labels_that_never_differ_first_are_refused():
    tok = train_tokenizer(["ab"], vocab_size=257)
    with pytest.raises(AmuroError) as err:
        label_tokens(tok, ["entailment", "entity"], task="nli")
    msg = str(err.value)
    assert "task 'nli'" in msg and "'entailment' and 'entity'" in msg
    assert "share first sub-token 'e'" in msg and "\n" not in msg


class StubModel(torch.nn.Module):
    """Fixed next-token logits: a non-label token (0) always scores highest; among the label
    tokens (3, 5, 7), the one chosen by the prompt's last token wins."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.masks = []

    def forward(self, input_ids, attention_mask, position_ids):
        self.masks.append(attention_mask.clone())
        logits = torch.zeros(*input_ids.shape, 10)
        logits[..., 0] = 100.0
        winner = torch.tensor([3, 5, 7])[input_ids[:, -1] % 3]
        logits[torch.arange(len(input_ids)), -1, winner] = 2.0
        return SimpleNamespace(logits=logits)


def test_classify_argmax_over_label_tokens_only():
    model = StubModel()
    tok = SimpleNamespace(pad_token_id=9, eos_token_id=9)
    prompts = [[1, 2], [4, 4, 4, 4, 1], [8], [6, 6, 6, 0]]  # last tokens -> labels 2, 1, 2, 0
    out = classify(model, tok, prompts, [3, 5, 7], batch_size=2)
    assert [pred for pred, _ in out] == [2, 1, 2, 0]
    assert out[3][1] == [2.0, 0.0, 0.0]
    # Longest first, left-padded: the first batch holds lengths 5 and 4.
    assert model.masks[0].tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]


PROMPTS = [
    "The cat sat on the mat.",
    "Anna reads",
    "A dog runs in the park every morning. The river flows past the old mill. Is the",
    "The",
    "### Premise:\nThe cat sat.\n### Label:",
]


def test_batched_equals_one_by_one(tiny_checkpoint):
    model, tok = load_model(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    batched = generate_greedy(model, tok, ids, max_new_tokens=12, batch_size=3)
    single = generate_greedy(model, tok, ids, max_new_tokens=12, batch_size=1)
    assert batched == single
    assert any(batched)

    labels = first_subtoken_ids(tok, ["yes", "no", "neutral"])
    c_batched = classify(model, tok, ids, labels, batch_size=4)
    c_single = classify(model, tok, ids, labels, batch_size=1)
    assert [p for p, _ in c_batched] == [p for p, _ in c_single]
    for (_, a), (_, b) in zip(c_batched, c_single, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_postprocess_generation():
    assert postprocess_generation("  Paris is nice \nand more") == "Paris is nice"
    # leading whitespace is skipped: a model that starts with a newline is not scored empty
    assert postprocess_generation("\nlater\nmore") == "later"
    assert postprocess_generation("\n \n") == ""


def test_answer_line_ends_at_a_newline_after_text():
    tok = train_tokenizer(["Paris is nice\n\nRome\n"], vocab_size=300)
    tokens = NewlineTokens(tok, size=tok.vocab_size + 5)
    assert len(tokens.blank) == tok.vocab_size + 5

    def done(text):
        """Whether decoding `text` token by token completes the line at some token."""
        started = torch.zeros(1, dtype=torch.bool)
        for t in tok(text, add_special_tokens=False)["input_ids"]:
            if _line_done(tokens, torch.tensor([t]), started).item():
                return True
            started |= ~tokens.blank[torch.tensor([t])]
        return False

    assert [done(t) for t in ["\n", "\n\n", " \n"]] == [False, False, False]  # no text yet
    assert [done(t) for t in ["\nParis", "Paris", "\n\nRome"]] == [False, False, False]
    assert [done(t) for t in ["\nParis\n", "Paris\n", "Rome is\n\n"]] == [True, True, True]
