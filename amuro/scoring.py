"""Scoring prompts with a causal LM: classification by first sub-token, greedy generation, and
log-likelihood of multiple-choice continuations.

Classification and generation batch with LEFT padding so that every prompt's last token sits at
the final position; all three sort prompts longest-first (less padding per batch, and an
out-of-memory error shows up in the first batch) and put results back in input order.

Multiple choice (`loglik_choices`, after lm-evaluation-harness): each choice's score is the
summed log-probability of its continuation tokens given the context. Unlike lm-eval (one
sequence per choice, the context run again for each, the vocabulary's log-softmax at every
position), an item's context and all its choices go into ONE row with a tree-shaped attention
mask: the context runs once, each choice sees only the context and itself, short items share a
row instead of being padded, and the output head and log-softmax run only at the positions that
score a token. Tokenization follows lm-eval's `_encode_pair` (see `encode_choices`). `choose`
turns the scores into the `acc` and `acc_norm` predictions.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
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


def _segment_lengths(context_ids, choice_ids) -> list[int]:
    """Tokens each item feeds: its context, then every choice without its last token."""
    return [len(ctx) + sum(len(c) - 1 for c in choices)
            for ctx, choices in zip(context_ids, choice_ids, strict=True)]


def _pack(lengths: list[int], batch_size: int) -> Iterator[list[list[int]]]:
    """Batches of rows of item indices, longest items first.

    A batch has up to `batch_size` rows as wide as its longest item (a padded batch of
    `batch_size` items would be as large). Each row starts with one of the longest items left;
    its free room is then filled with the longest items that still fit, so short items share
    rows instead of being padded to the longest one.
    """
    if batch_size < 1:
        raise AmuroError(f"batch_size must be >= 1, got {batch_size}")
    pool = sorted((n, i) for i, n in enumerate(lengths))  # ascending; taken from the end
    while pool:
        width = pool[-1][0]
        rows = [[pool.pop()] for _ in range(min(batch_size, len(pool)))]
        for row in rows:
            room = width - row[0][0]
            while pool and room >= pool[0][0]:
                n, i = pool.pop(bisect.bisect_right(pool, (room, len(lengths))) - 1)
                row.append((n, i))
                room -= n
        yield [[i for _, i in row] for row in rows]


def _mask_for(model, allowed: torch.Tensor) -> torch.Tensor:
    """A (rows, 1, queries, keys) mask in the form the model's attention takes as given:
    boolean (True = attend) for SDPA, additive float for eager attention."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", "sdpa") or "sdpa"
    if impl == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min)
    if impl not in ("sdpa", "flex_attention"):
        raise AmuroError(f"multiple choice needs SDPA or eager attention (a custom 4D mask), "
                         f"the model uses {impl!r}")
    return allowed


@contextlib.contextmanager
def _logits_at(model, rows: torch.Tensor, cols: torch.Tensor):
    """Within the block, the model's output head sees only the hidden states at (rows, cols),
    as one sequence: out.logits is (1, len(rows), vocab), any post-processing of the logits
    (scaling, soft-capping) included. Models without an output-embedding module (test stubs)
    return every position; `gather` picks the same ones."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = None
    if isinstance(head, torch.nn.Module):
        handle = head.register_forward_pre_hook(
            lambda module, args: (args[0][rows, cols][None], *args[1:]))

    def gather(logits: torch.Tensor) -> torch.Tensor:
        if handle is None:
            return logits[rows, cols]
        if logits.shape[:2] != (1, len(rows)):
            raise AmuroError(f"{type(model).__name__}: its output head was not applied to the "
                             "hidden states as expected (logits of shape "
                             f"{tuple(logits.shape)})")
        return logits[0]

    try:
        yield gather
    finally:
        if handle is not None:
            handle.remove()


# --- per-item attention ------------------------------------------------------------------------
TREE_ATTENTION = "amuro_tree"  # registered with transformers' AttentionInterface
_LAYOUT = "amuro_tree_layout"  # the forward() keyword that carries a batch's segments


class _NoLayout(Exception):
    """The model's attention was called without the layout (its forward() drops keywords)."""


def _tree_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                    scaling: float | None = None, **kwargs):
    """Attention item by item (an AttentionInterface function): query (rows, heads, width, d),
    key/value (rows, kv heads, prefix + width, d). Each item's segment of a row attends to the
    shared prefix and to itself under its own tree mask (_PackedBatch), never to the other
    items of the row: the cost is each item's length squared, not the row's; padding gets 0."""
    segments = kwargs.get(_LAYOUT)
    if segments is None:
        raise _NoLayout
    for name in ("softcap", "s_aux", "sinks", "position_bias"):
        if kwargs.get(name) is not None:
            raise AmuroError(f"multiple choice: the model's attention uses {name!r}, which "
                             "per-item attention does not apply")
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    prefix = key.shape[2] - query.shape[2]
    gqa = query.shape[1] != key.shape[1]
    out = query.new_zeros(query.shape)
    for r, row in enumerate(segments):
        for start, end, mask in row:
            if window and prefix + end - start > window:
                raise AmuroError(f"multiple choice: an item of {prefix + end - start} tokens "
                                 f"exceeds the model's sliding attention window ({window})")
            k = key[r : r + 1, :, prefix + start : prefix + end]
            v = value[r : r + 1, :, prefix + start : prefix + end]
            if prefix:
                k = torch.cat([key[r : r + 1, :, :prefix], k], dim=2)
                v = torch.cat([value[r : r + 1, :, :prefix], v], dim=2)
            out[r : r + 1, :, start:end] = torch.nn.functional.scaled_dot_product_attention(
                query[r : r + 1, :, start:end], k, v, attn_mask=mask, is_causal=mask is None,
                scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def _tree_capable(model) -> bool:
    """Models built on transformers' AttentionInterface can take _tree_attention for a while."""
    cls = type(model)
    return (hasattr(model, "set_attn_implementation")
            and hasattr(cls, "_can_set_attn_implementation")
            and bool(cls._can_set_attn_implementation()))


@contextlib.contextmanager
def _attention_implementation(model, name: str):
    """The model runs with attention implementation `name` within the block, then with its
    own again."""
    before = model.config._attn_implementation
    if name == TREE_ATTENTION:
        from transformers import AttentionInterface

        AttentionInterface.register(TREE_ATTENTION, _tree_attention)
    model.set_attn_implementation(name)
    if model.config._attn_implementation != name:
        raise AmuroError(f"{type(model).__name__}: cannot switch its attention to {name!r}")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


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


def _tree_mask(n_context: int, bodies: list[int], prefix: int) -> torch.Tensor | None:
    """One item's mask, (its tokens, prefix + its tokens), True = attend: a context token sees
    the context up to itself; a choice token sees the whole context and its own choice up to
    itself; every token sees the prefix. None where that is plain causal attention."""
    if prefix == 0 and not any(bodies):
        return None
    branch = torch.tensor([0] * n_context + [j + 1 for j, m in enumerate(bodies)
                                             for _ in range(m)])
    ar = torch.arange(len(branch))
    own = (ar[None, :] <= ar[:, None]) & ((branch[None, :] == 0)
                                          | (branch[None, :] == branch[:, None]))
    return torch.cat([own.new_ones((len(branch), prefix)), own], dim=1)


class _PackedBatch:
    """The model inputs of one batch of packed rows, and where each choice token is scored.

    Row layout per item: its context, then each choice without its last token. Positions:
    the context counts from 0 (after the shared prefix, if any), each choice goes on from the
    end of its own context. Attention (`segments` for _tree_attention, or `full_mask()` as one
    mask): a context token sees its item's context up to itself; a choice token sees its
    item's whole context and its own choice up to itself (a tree: the choices of an item never
    see each other, items never see each other). A choice's first token is scored at its
    context's last position, its k-th at its own (k-1)-th.
    """

    def __init__(self, rows, context_ids, choice_ids, first_choice, pad_id: int, prefix: int,
                 device):
        width = max(sum(len(context_ids[i]) + sum(len(c) - 1 for c in choice_ids[i])
                        for i in row) for row in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        self.item = torch.full((len(rows), width), -1, dtype=torch.long)
        self.branch = torch.zeros((len(rows), width), dtype=torch.long)
        self.segments: list[list[tuple[int, int, torch.Tensor | None]]] = []
        sel_r: list[int] = []  # output positions needed (row, column)
        sel_c: list[int] = []
        tok_sel: list[int] = []  # per scored token: index into sel, target id, choice number
        tok_tgt: list[int] = []
        tok_choice: list[int] = []
        for r, row in enumerate(rows):
            t = 0
            self.segments.append([])
            for i in row:
                ctx = context_ids[i]
                n, begin = len(ctx), t
                ids[r, t : t + n] = torch.tensor(ctx, dtype=torch.long)
                pos[r, t : t + n] = torch.arange(n)
                self.item[r, t : t + n] = i
                t += n
                last = len(sel_r)
                sel_r.append(r)
                sel_c.append(t - 1)
                for j, choice in enumerate(choice_ids[i]):
                    g = first_choice[i] + j
                    tok_sel.append(last)
                    tok_tgt.append(choice[0])
                    tok_choice.append(g)
                    m = len(choice) - 1
                    if m == 0:
                        continue
                    ids[r, t : t + m] = torch.tensor(choice[:-1], dtype=torch.long)
                    pos[r, t : t + m] = torch.arange(n, n + m)
                    self.item[r, t : t + m] = i
                    self.branch[r, t : t + m] = j + 1
                    tok_sel.extend(range(len(sel_r), len(sel_r) + m))
                    tok_tgt.extend(choice[1:])
                    tok_choice.extend([g] * m)
                    sel_r.extend([r] * m)
                    sel_c.extend(range(t, t + m))
                    t += m
                mask = _tree_mask(n, [len(c) - 1 for c in choice_ids[i]], prefix)
                self.segments[-1].append((begin, t, None if mask is None else mask.to(device)))
        self.prefix = prefix
        self.ids, self.pos = ids.to(device), (pos + prefix).to(device)
        self.sel_r, self.sel_c = torch.tensor(sel_r, device=device), torch.tensor(sel_c,
                                                                                  device=device)
        self.tok_sel = torch.tensor(tok_sel, device=device)
        self.tok_tgt = torch.tensor(tok_tgt, device=device)
        self.tok_choice = torch.tensor(tok_choice)

    def full_mask(self) -> torch.Tensor:
        """Every row's attention as one (rows, 1, queries, prefix + keys) boolean mask."""
        item, branch = self.item, self.branch
        ar = torch.arange(item.shape[1])
        same = (item[:, :, None] == item[:, None, :]) & (item[:, None, :] >= 0)
        tree = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
        # padding attends to itself only (a query that sees no key would give NaN)
        allowed = (same & tree & (ar[None, :] <= ar[:, None])) | torch.eye(len(ar),
                                                                           dtype=torch.bool)
        allowed = torch.cat([allowed.new_ones(allowed.shape[:2] + (self.prefix,)), allowed], -1)
        return allowed[:, None].to(self.ids.device)


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
    `prefix_ids`, if given (its key/value cache computed once and given to every row).

    One forward pass per batch scores every choice of every item in it: each item's context
    and all its choices (but their last tokens) are laid out one after the other in a row
    (_PackedBatch), each choice attending only to its context and itself, so a context is run
    once, no key/value cache is copied, and short items share rows (`_pack`: `batch_size`
    rows as wide as the batch's longest item, about the size of a padded batch of
    `batch_size` items). Attention runs item by item (_tree_attention, for models built on
    transformers' AttentionInterface; others get the same pattern as one 4D mask), so an item
    costs its own length squared, not its row's. The output head runs only at the positions
    that score a token (an item's last context token, its choices' tokens but the last), and
    the log-softmax over the vocabulary is taken there, in float32.
    """
    _check_mc_inputs(context_ids, choice_ids)
    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)
    first_choice = np.cumsum([0] + [len(c) for c in choice_ids]).tolist()
    scores = torch.zeros(first_choice[-1], dtype=torch.float32)
    prefix_cache, prefix = None, len(prefix_ids or ())
    if prefix_ids:
        pre = torch.tensor([prefix_ids], dtype=torch.long, device=device)
        prefix_cache = _returned_cache(model(input_ids=pre, use_cache=True,
                                             **_last_logits_only(model)))
    tree = _tree_capable(model)
    lengths = _segment_lengths(context_ids, choice_ids)
    with progress(len(context_ids), "loglik", unit="item", leave=False) as bar, \
            contextlib.ExitStack() as attention:
        if tree:
            attention.enter_context(_attention_implementation(model, TREE_ATTENTION))
        for rows in _pack(lengths, batch_size):
            batch = _PackedBatch(rows, context_ids, choice_ids, first_choice, pad_id, prefix,
                                 device)
            kwargs: dict = {"use_cache": prefix_cache is not None}
            if prefix_cache is not None:
                kwargs[_cache_kwarg(model)] = _select_cache(
                    copy.deepcopy(prefix_cache),
                    torch.zeros(len(rows), dtype=torch.long, device=device))
            with _logits_at(model, batch.sel_r, batch.sel_c) as gather:
                try:
                    if not tree:
                        raise _NoLayout
                    out = model(input_ids=batch.ids, position_ids=batch.pos,
                                **{_LAYOUT: batch.segments}, **kwargs)
                except _NoLayout:  # not AttentionInterface-based, or drops the keyword
                    if tree:
                        attention.close()
                        tree = False
                        if prefix_cache is not None:  # the failed call may have extended it
                            kwargs[_cache_kwarg(model)] = _select_cache(
                                copy.deepcopy(prefix_cache),
                                torch.zeros(len(rows), dtype=torch.long, device=device))
                    out = model(input_ids=batch.ids, position_ids=batch.pos,
                                attention_mask=_mask_for(model, batch.full_mask()), **kwargs)
                logp = gather(out.logits).float().log_softmax(-1)
            del out, kwargs
            token_lp = logp[batch.tok_sel, batch.tok_tgt].cpu()
            scores.index_add_(0, batch.tok_choice, token_lp)
            bar.update(sum(len(row) for row in rows))
    flat = scores.tolist()
    return [[(flat[first_choice[i] + j], len(c)) for j, c in enumerate(choices)]
            for i, choices in enumerate(choice_ids)]


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
