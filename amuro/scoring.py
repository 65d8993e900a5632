"""Scoring prompts with a causal LM: classification by first sub-token, greedy generation, and
log-likelihood of multiple-choice continuations.

All three batch with LEFT padding so that every prompt's last token sits at the final position;
prompts are sorted longest-first (less padding per batch, and an out-of-memory error shows up in
the first batch) and results are put back in input order.

Multiple choice (`loglik_choices`, after lm-evaluation-harness): each choice's score is the
summed log-probability of its continuation tokens given the context. The context of an item is
run ONCE; its key/value cache is then copied to one row per choice and every continuation is
scored from it in a second pass, so a 4-choice item costs one context pass, not four.
Tokenization follows lm-eval's `_encode_pair` (see `encode_choices`). `choose` turns the scores
into the `acc` and `acc_norm` predictions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from amuro.errors import AmuroError
from amuro.progress import progress


def label_tokens(tokenizer, labels, task: str = "") -> tuple[list[int], list[int]]:
    """(shared prefix, first distinguishing sub-token per label) of " " + label.

    The paper's rule (§3.3, after Yang et al.) scores each label by the logit of its first
    sub-token. Tokenizers that split the leading space off (Llama/SmolLM2 write " 1" as
    "Ġ" + "1") give every label the same first sub-token; then the shared space token is the
    prefix, appended to the prompt, and each label is scored by its next sub-token — still one
    forward pass, still the first token on which the labels differ. Labels that still share it
    could never be told apart, so that is an error.
    """
    encoded = []
    for label in labels:
        toks = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        if not toks:
            raise AmuroError(f"task {task!r}: label {label!r} encodes to no tokens")
        encoded.append(toks)
    prefix: list[int] = []
    firsts = {t[0] for t in encoded}
    if len(firsts) == 1 and len(encoded) > 1 and all(len(t) > 1 for t in encoded):
        prefix = [encoded[0][0]]
        encoded = [t[1:] for t in encoded]
    ids = [t[0] for t in encoded]
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
    return prefix, ids


def first_subtoken_ids(tokenizer, labels, task: str = "") -> list[int]:
    """The first sub-token of " " + label for each label (paper §3.3); refuses a clash."""
    prefix, ids = label_tokens(tokenizer, labels, task)
    if prefix:
        piece = tokenizer.convert_ids_to_tokens(prefix[0])
        raise AmuroError(f"task {task!r}: every label starts with sub-token {piece!r}; use "
                         "label_tokens, which scores the sub-token after it")
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


def _last_logits_only(model) -> dict:
    """`logits_to_keep=1` where forward() takes it: only the last position's logits are used,
    and computing all of them costs batch x length x vocab floats."""
    params = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def _progress(n_items: int, batch_size: int, desc: str):
    # a bar on a terminal; in Snakemake logs a line at a steady interval (amuro.progress)
    return progress(-(-n_items // batch_size), desc, unit="batch", leave=False)


def _prefill(model, ids, mask, prefix_ids: list[int] | None, use_cache: bool = True):
    """Forward left-padded prompts with the cache on; returns (output, the attention mask of
    everything in the cache, the position of each row's last token).

    With `prefix_ids` (a prefix shared by every prompt, e.g. fixed few-shot demonstrations),
    the prefix runs once for the batch (one row) and its key/value cache is copied to every
    row; the prompts then follow it, their padding between the prefix and their tokens.
    Positions count real tokens only, as generate() does: RoPE models are unaffected by the
    shift, but absolute-position models (GPT-2) would otherwise see padding.
    """
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {}
    if prefix_ids:
        pre = torch.tensor([prefix_ids], dtype=torch.long, device=ids.device)
        cache = _returned_cache(model(input_ids=pre, use_cache=True, **_last_logits_only(model)))
        cache = _select_cache(cache, torch.zeros(ids.size(0), dtype=torch.long,
                                                 device=ids.device))
        kwargs[_cache_kwarg(model)] = cache
        positions = positions + len(prefix_ids)
        mask = torch.cat([mask.new_ones((mask.size(0), len(prefix_ids))), mask], dim=1)
    if use_cache or prefix_ids:
        kwargs["use_cache"] = True
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs,
                **_last_logits_only(model))
    return out, mask, positions[:, -1]


@torch.inference_mode()
def classify(
    model, tokenizer, prompts_ids: list[list[int]], label_token_ids: list[int], batch_size: int,
    prefix_ids: list[int] | None = None,
) -> list[tuple[int, list[float]]]:
    """(index of the predicted label, logits of the label tokens) for each prompt (after the
    shared `prefix_ids`, if given: see _prefill).

    The prediction is the argmax of next-token logits restricted to the labels' first
    sub-tokens, so a model that prefers some other token still gets a label.
    """
    device = next(model.parameters()).device
    label_idx = torch.tensor(label_token_ids, dtype=torch.long, device=device)
    results: list[tuple[int, list[float]] | None] = [None] * len(prompts_ids)
    with _progress(len(prompts_ids), batch_size, "classify") as bar:
        for batch in _batches(prompts_ids, batch_size):
            ids, mask = _left_pad([prompts_ids[i] for i in batch], _pad_id(tokenizer), device)
            out, _, _ = _prefill(model, ids, mask, prefix_ids, use_cache=False)
            label_logits = out.logits[:, -1, :].float().index_select(-1, label_idx)
            preds = label_logits.argmax(-1).tolist()
            for row, i in enumerate(batch):
                results[i] = (int(preds[row]), label_logits[row].tolist())
            bar.update(1)
    return results  # type: ignore[return-value]


def postprocess_generation(text: str) -> str:
    """The decode policy: the answer is the first line of the continuation after its leading
    whitespace, stripped. A model that starts with a newline ("Summary:\n...") is not scored
    as an empty answer; one that writes nothing but whitespace is."""
    return text.lstrip().split("\n", 1)[0].strip()


class NewlineTokens:
    """Per token id: is its text only whitespace, does it hold a newline, and does a newline
    follow non-whitespace text inside it (byte-level BPE merges "\n" into other tokens)."""

    def __init__(self, tokenizer, size: int = 0):
        known = max(tokenizer.get_vocab().values()) + 1
        texts = tokenizer.batch_decode([[i] for i in range(known)])
        texts += [""] * (size - known)  # ids the model has but the tokenizer does not know
        self.blank = torch.tensor([not t.strip() for t in texts])
        self.newline = torch.tensor(["\n" in t for t in texts])
        self.ends_line = torch.tensor(["\n" in t.lstrip() for t in texts])


def _line_done(tokens: NewlineTokens, new: torch.Tensor, started: torch.Tensor) -> torch.Tensor:
    """Rows whose answer line ends with this token (postprocess_generation): a newline after
    some non-whitespace text, before this token (`started`) or inside it."""
    new = new.cpu()
    return (started & tokens.newline[new]) | tokens.ends_line[new]


@torch.inference_mode()
def _greedy_batch(model, ids, mask, max_new_tokens: int, eos_id, tokens: NewlineTokens,
                  cache_kwarg: str, prefix_ids: list[int] | None = None) -> list[list[int]]:
    """Greedy continuations of one left-padded batch with the key/value cache. A row leaves
    the batch as soon as it is finished (eos, or its answer line is complete), so the others
    never wait on it: no decoding work is spent on tokens that are thrown away."""
    out, mask, pos = _prefill(model, ids, mask, prefix_ids)
    cache = _returned_cache(out)
    alive = torch.arange(ids.size(0))  # original row of each batch row
    started = torch.zeros(ids.size(0), dtype=torch.bool)
    generated: list[list[int]] = [[] for _ in range(ids.size(0))]
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1, :].argmax(-1)
        for row, token in zip(alive.tolist(), nxt.tolist(), strict=True):
            generated[row].append(token)
        done = _line_done(tokens, nxt, started)
        if eos_id is not None:
            done |= nxt.cpu() == eos_id
        started |= ~tokens.blank[nxt.cpu()]
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(-1)
            alive, started = alive[keep], started[keep]
            keep = keep.to(ids.device)
            cache = _select_cache(cache, keep)
            mask, pos, nxt = mask[keep], pos[keep], nxt[keep]
        mask = torch.cat([mask, mask.new_ones((mask.size(0), 1))], dim=1)
        pos = pos + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos[:, None],
                    use_cache=True, **{cache_kwarg: cache})
        cache = _returned_cache(out)
    return generated


@torch.inference_mode()
def generate_greedy(
    model, tokenizer, prompts_ids: list[list[int]], max_new_tokens: int, batch_size: int,
    prefix_ids: list[int] | None = None,
) -> list[str]:
    """Greedy continuations (KV cache, stops at eos or once the answer line is complete),
    post-processed to that line (postprocess_generation: the decode policy); the prompts
    follow the shared `prefix_ids`, if given (see _prefill)."""
    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)
    tokens = NewlineTokens(tokenizer, model.config.vocab_size)
    cache_kwarg = _cache_kwarg(model)
    results: list[str | None] = [None] * len(prompts_ids)
    with _progress(len(prompts_ids), batch_size, "generate") as bar:
        for batch in _batches(prompts_ids, batch_size):
            ids, mask = _left_pad([prompts_ids[i] for i in batch], pad_id, device)
            new = _greedy_batch(model, ids, mask, max_new_tokens, tokenizer.eos_token_id,
                                tokens, cache_kwarg, prefix_ids)
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for row, i in enumerate(batch):
                results[i] = postprocess_generation(texts[row])
            bar.update(1)
    return results  # type: ignore[return-value]


# --- multiple choice: log-likelihood of each continuation --------------------------------------
def _encode_many(tokenizer, texts: list[str]) -> list[list[int]]:
    """One batched call: a fast tokenizer encodes the texts in parallel."""
    return list(tokenizer(texts, add_special_tokens=False)["input_ids"])


def _prefix_id(tokenizer) -> int:
    """What an empty context is replaced by (lm-eval: the BOS token, else EOS)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None else tokenizer.eos_token_id


def encode_choices(
    tokenizer, context: str, continuations: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """(context ids, ids of each continuation), as lm-evaluation-harness's `_encode_pair`.

    Whitespace at the end of the context is moved to the front of every continuation; the
    context is encoded alone, and each continuation's tokens are those of the encoded whole
    string `context + continuation` after the context's token count. So the continuation is
    scored as the tokens the model would see in the running text, even where the tokenizer
    merges across the boundary. An empty context becomes the BOS (else EOS) token.
    """
    stripped = context.rstrip()
    moved = context[len(stripped):]
    conts = [moved + c for c in continuations]
    if not stripped:
        ctx_ids = [_prefix_id(tokenizer)]
        cont_ids = _encode_many(tokenizer, conts)
    else:
        ctx_ids, *wholes = _encode_many(tokenizer, [stripped, *(stripped + c for c in conts)])
        cont_ids = [whole[len(ctx_ids):] for whole in wholes]
    for cont, ids in zip(conts, cont_ids, strict=True):
        if not ids:
            raise AmuroError(f"continuation {cont!r} encodes to no tokens after the context")
    return ctx_ids, cont_ids


def _cache_kwarg(model) -> str:
    """The forward() argument that takes a key/value cache: transformers >= 5.2x renamed
    `past_key_values` to `cache` (the old name warns, then goes)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out):
    for name in ("cache", "past_key_values"):
        value = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if value is not None:
            return value
    raise AmuroError("the model returned no key/value cache (use_cache=True was ignored)")


def _select_cache(cache, index: torch.Tensor):
    """The key/value cache with batch rows `index` (repeats allowed): one row per choice."""
    if hasattr(cache, "batch_select_indices"):  # transformers Cache objects
        cache.batch_select_indices(index)
        return cache
    if isinstance(cache, (tuple, list)):  # legacy ((key, value), ...) per layer
        return type(cache)(
            type(layer)(t.index_select(0, index.to(t.device)) for t in layer) for layer in cache
        )
    raise AmuroError(f"cannot reuse a key/value cache of type {type(cache).__name__}")


def _mc_batches(context_ids, choice_ids, batch_size: int) -> Iterator[list[int]]:
    """Index lists of batches, longest (context + longest choice) first."""
    if batch_size < 1:
        raise AmuroError(f"batch_size must be >= 1, got {batch_size}")
    def width(i):
        return len(context_ids[i]) + max(len(c) for c in choice_ids[i])
    order = sorted(range(len(context_ids)), key=lambda i: -width(i))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _check_mc_inputs(context_ids, choice_ids) -> None:
    if len(context_ids) != len(choice_ids):
        raise AmuroError(f"{len(context_ids)} contexts for {len(choice_ids)} lists of choices")
    for n, (ctx, choices) in enumerate(zip(context_ids, choice_ids, strict=True)):
        if not ctx:
            raise AmuroError(f"item {n}: cannot score choices after an empty context")
        if not choices:
            raise AmuroError(f"item {n}: no choices")
        if any(not c for c in choices):
            raise AmuroError(f"item {n}: a choice has no tokens")


@torch.inference_mode()
def loglik_choices(
    model,
    tokenizer,
    context_ids: list[list[int]],
    choice_ids: list[list[list[int]]],
    batch_size: int,
    prefix_ids: list[int] | None = None,
) -> list[list[tuple[float, int]]]:
    """For each item and each of its choices: (summed log-probability of the choice's tokens
    given the item's context, number of tokens); every context follows the shared
    `prefix_ids`, if given (see _prefill).

    Per batch of `batch_size` items: pass 1 runs the left-padded contexts with the cache on;
    the last position's distribution scores every choice's first token. Pass 2 (skipped when
    every choice of the batch is one token long) copies each item's cache to one row per
    choice and runs the continuations without their last token (right-padded), whose outputs
    score tokens 2..n. The context is never run twice. Log-probabilities are taken in float32.
    `batch_size` counts items, so pass 2 holds up to batch_size x choices rows, each with its
    own copy of the context's cache (memory: that many contexts' key/value tensors).
    """
    _check_mc_inputs(context_ids, choice_ids)
    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)
    cache_kwarg = _cache_kwarg(model)
    results: list[list[tuple[float, int]] | None] = [None] * len(context_ids)
    with _progress(len(context_ids), batch_size, "loglik") as bar:
        for batch in _mc_batches(context_ids, choice_ids, batch_size):
            ids, mask = _left_pad([context_ids[i] for i in batch], pad_id, device)
            out, mask, last = _prefill(model, ids, mask, prefix_ids)
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (items, vocab)
            cache = _returned_cache(out)
            del out  # the context's logits are no longer needed
            # One row per (item, choice), items in batch order.
            rows = [(b, c) for b, i in enumerate(batch) for c in choice_ids[i]]
            owner = torch.tensor([b for b, _ in rows], dtype=torch.long, device=device)
            heads = torch.tensor([c[0] for _, c in rows], dtype=torch.long, device=device)
            scores = first[owner, heads]
            width = max(len(c) for _, c in rows) - 1
            if width > 0:
                inp = torch.full((len(rows), width), pad_id, dtype=torch.long)
                tgt = torch.zeros((len(rows), width), dtype=torch.long)
                cmask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, (_, c) in enumerate(rows):
                    inp[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
                    tgt[r, : len(c) - 1] = torch.tensor(c[1:], dtype=torch.long)
                    cmask[r, : len(c) - 1] = 1
                inp, tgt, cmask = inp.to(device), tgt.to(device), cmask.to(device)
                cache = _select_cache(cache, owner)
                # Continuations follow their own context: positions go on from its last token.
                start = (last + 1).index_select(0, owner)
                pos = start[:, None] + torch.arange(width, device=device)[None, :]
                full_mask = torch.cat([mask.index_select(0, owner), cmask], dim=1)
                out2 = model(input_ids=inp, attention_mask=full_mask, position_ids=pos,
                             use_cache=True, **{cache_kwarg: cache})
                logits = out2.logits.float()
                token_lp = logits.gather(-1, tgt[..., None]).squeeze(-1) - logits.logsumexp(-1)
                scores = scores + (token_lp * cmask).sum(-1)
            del cache
            flat = scores.tolist()
            k = 0
            for i in batch:
                n = len(choice_ids[i])
                results[i] = [(flat[k + j], len(choice_ids[i][j])) for j in range(n)]
                k += n
            bar.update(1)
    return results  # type: ignore[return-value]


def choose(loglikelihoods: Sequence[float], choices: Sequence[str]) -> dict[str, int]:
    """Index of the chosen choice for `acc` and `acc_norm` (lm-evaluation-harness).

    `acc`: the highest summed log-probability. `acc_norm`: the highest summed log-probability
    divided by the choice's length in characters — the choice text itself, without the " "
    that joins it to the prompt, as lm-eval's `completion_len = [len(c) for c in choices]`.
    Ties go to the first choice (numpy argmax).
    """
    if len(loglikelihoods) != len(choices) or not choices:
        raise AmuroError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    lls = np.asarray(loglikelihoods, dtype=float)
    lengths = np.asarray([float(len(c)) for c in choices])
    if np.any(lengths == 0):
        raise AmuroError("acc_norm: a choice has no characters")
    return {"acc": int(np.argmax(lls)), "acc_norm": int(np.argmax(lls / lengths))}
