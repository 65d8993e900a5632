"""Scoring prompts with a causal LM: classification by first sub-token, greedy generation.

Both batch with LEFT padding so that every prompt's last token sits at the final position;
prompts are sorted longest-first (less padding per batch, and an out-of-memory error shows up in
the first batch) and results are put back in input order.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from amuro.errors import AmuroError


def first_subtoken_ids(tokenizer, labels, task: str = "") -> list[int]:
    """The first sub-token of " " + label for each label (paper §3.3, after Yang et al.).

    Two labels with the same first sub-token could never be told apart, so that is an error.
    """
    ids = []
    for label in labels:
        toks = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        if not toks:
            raise AmuroError(f"task {task!r}: label {label!r} encodes to no tokens")
        ids.append(toks[0])
    seen: dict[int, str] = {}
    for label, tid in zip(labels, ids, strict=True):
        if tid in seen:
            piece = tokenizer.convert_ids_to_tokens(tid)
            raise AmuroError(
                f"task {task!r}: labels {seen[tid]!r} and {label!r} share first sub-token "
                f"{piece!r} under this tokenizer; classification by first sub-token would be "
                "ambiguous"
            )
        seen[tid] = label
    return ids


def _batches(prompts_ids: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Index lists of batches, longest prompts first."""
    if batch_size < 1:
        raise AmuroError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(prompts_ids)), key=lambda i: -len(prompts_ids[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if not seq:
            raise AmuroError("cannot score an empty prompt")
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _progress(n_items: int, batch_size: int, desc: str):
    # disable=None: a bar on a terminal, silence in Snakemake logs.
    return tqdm(total=-(-n_items // batch_size), desc=desc, disable=None, leave=False)


@torch.inference_mode()
def classify(
    model, tokenizer, prompts_ids: list[list[int]], label_token_ids: list[int], batch_size: int
) -> list[tuple[int, list[float]]]:
    """(index of the predicted label, logits of the label tokens) for each prompt.

    The prediction is the argmax of next-token logits restricted to the labels' first
    sub-tokens, so a model that prefers some other token still gets a label.
    """
    device = next(model.parameters()).device
    label_idx = torch.tensor(label_token_ids, dtype=torch.long, device=device)
    results: list[tuple[int, list[float]] | None] = [None] * len(prompts_ids)
    with _progress(len(prompts_ids), batch_size, "classify") as bar:
        for batch in _batches(prompts_ids, batch_size):
            ids, mask = _left_pad([prompts_ids[i] for i in batch], _pad_id(tokenizer), device)
            # Positions count real tokens only, as generate() does: RoPE models are unaffected
            # by the shift, but absolute-position models (GPT-2) would otherwise see padding.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
            label_logits = out.logits[:, -1, :].float().index_select(-1, label_idx)
            preds = label_logits.argmax(-1).tolist()
            for row, i in enumerate(batch):
                results[i] = (int(preds[row]), label_logits[row].tolist())
            bar.update(1)
    return results  # type: ignore[return-value]


def postprocess_generation(text: str) -> str:
    """The answer is one line: keep what comes before the first newline, stripped."""
    return text.split("\n", 1)[0].strip()


def newline_token_ids(tokenizer) -> list[int]:
    """Every token whose text contains a newline (byte-level BPE merges "\n" into others)."""
    vocab = tokenizer.get_vocab()
    ids = sorted(vocab.values())
    texts = tokenizer.batch_decode([[i] for i in ids])
    return [i for i, text in zip(ids, texts, strict=True) if "\n" in text]


class StopAtNewline(StoppingCriteria):
    """Finish a sequence once its continuation holds a newline: the answer is one line, and
    base models otherwise run on to max_new_tokens (most of the generation time)."""

    def __init__(self, newline_ids: list[int], prompt_width: int):
        self.newline_ids = torch.tensor(newline_ids, dtype=torch.long)
        self.prompt_width = prompt_width

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_width :]
        return torch.isin(new, self.newline_ids.to(new.device)).any(dim=-1)


@torch.inference_mode()
def generate_greedy(
    model, tokenizer, prompts_ids: list[list[int]], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy continuations (KV cache, stops at eos), post-processed to their first line."""
    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)
    newline_ids = newline_token_ids(tokenizer)
    results: list[str | None] = [None] * len(prompts_ids)
    with _progress(len(prompts_ids), batch_size, "generate") as bar:
        for batch in _batches(prompts_ids, batch_size):
            ids, mask = _left_pad([prompts_ids[i] for i in batch], pad_id, device)
            # generate() derives position ids from the attention mask, so left padding does
            # not change the output (checked against batch size 1 in tests/test_scoring.py).
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([StopAtNewline(newline_ids, ids.shape[1])]),
            )
            new = out[:, ids.shape[1] :]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for row, i in enumerate(batch):
                results[i] = postprocess_generation(texts[row])
            bar.update(1)
    return results  # type: ignore[return-value]
