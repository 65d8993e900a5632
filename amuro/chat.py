"""Instruction-tuning data: conversations rendered with a chat template, loss on assistant turns.

TULU records are `{"id", "messages": [{"role", "content"}, ...]}`. The conversation is rendered
with the chat template named by the setting `chat_template` ("tulu": open-instruct's
`<|user|>` / `<|assistant|>` format; "tokenizer": the checkpoint's own template); every
assistant turn (its content and the EOS the template puts after it) is learned, and system and
user turns and the role markers are masked (label IGNORE).
"""

from __future__ import annotations

from dataclasses import dataclass

from amuro.errors import AmuroError

IGNORE = -100  # the label of a token that carries no loss (cross_entropy's ignore_index)
CHAT_TEMPLATES = ("tulu", "tokenizer")
CHAT_ROLES = ("system", "user", "assistant")
# open-instruct's Tulu format (allenai/open-instruct, `tulu` chat template): every assistant turn
# ends with EOS; the last one has no newline after it.
TULU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class ChatTask:
    """An instruction-tuning task: records are conversations, not prompt/target pairs."""

    name: str
    template: str = "chat"
    type: str = "chat"


def check_chat_records(records: list[dict], path: str) -> None:
    """Every record a conversation with known roles, text in every turn and an assistant turn."""
    for i, rec in enumerate(records, 1):
        where = f"{path}: record {i}" + (f" (id {rec['id']!r})" if "id" in rec else "")
        messages = rec.get("messages")
        if not isinstance(messages, list) or not messages:
            raise AmuroError(f"{where}: field 'messages' must be a non-empty list of "
                             "{role, content} objects")
        for j, m in enumerate(messages):
            field = f"messages[{j}]"
            if not isinstance(m, dict):
                raise AmuroError(f"{where}: field '{field}' is not a {{role, content}} object")
            if m.get("role") not in CHAT_ROLES:
                raise AmuroError(f"{where}: field '{field}.role' is {m.get('role')!r}, "
                                 f"expected one of {list(CHAT_ROLES)}")
            content = m.get("content")
            if not isinstance(content, str) or not content.strip():
                raise AmuroError(f"{where}: field '{field}.content' is empty or not text")
        if not any(m["role"] == "assistant" for m in messages):
            raise AmuroError(f"{where}: field 'messages' has no assistant turn (nothing to learn)")


def chat_tokenizer(tokenizer, chat_template: str, checkpoint: str):
    """Install the chat template on the tokenizer (it is saved with the fine-tuned model)."""
    if chat_template == "tulu":
        if tokenizer.eos_token is None:
            raise AmuroError(f"{checkpoint}: the tokenizer has no EOS token, which the Tulu "
                             "template puts after every assistant turn")
        tokenizer.chat_template = TULU_CHAT_TEMPLATE
    elif not getattr(tokenizer, "chat_template", None):
        raise AmuroError(f"--settings: chat_template 'tokenizer' but the tokenizer of "
                         f"{checkpoint} has no chat template; use 'tulu'")
    if not tokenizer.is_fast:
        raise AmuroError(f"{checkpoint}: instruction tuning needs a fast tokenizer "
                         "(tokenizer.json), for token offsets")
    return tokenizer


def _render(tokenizer, messages, generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as err:  # jinja errors: the template refuses this conversation
        raise AmuroError(f"the chat template failed: {' '.join(str(err).split())}") from None


def assistant_spans(tokenizer, messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    A turn's span is what the template adds after the generation prompt up to the end of that
    turn (with the Tulu template: the content and EOS, not the newline that follows), found by
    rendering each prefix of the conversation (as open-instruct locates the turns of Tulu data).
    """
    text = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _render(tokenizer, messages[:i], True) if i else ""
        end_text = _render(tokenizer, messages[: i + 1])
        if not (end_text.startswith(start_text) and text.startswith(end_text)):
            raise AmuroError("the chat template renders a conversation differently from its "
                             "prefixes (assistant turns cannot be located); use 'tulu'")
        spans.append((len(start_text), len(end_text)))
    return text, spans


def encode_chat(records, tokenizer, max_length: int):
    """Token ids and labels per conversation: labels only on assistant turns.

    Tokens after the last assistant turn are dropped (they carry no loss). A conversation that
    is too long loses tokens from the left, never from its last assistant turn; a last turn
    longer than max_length keeps its first max_length tokens.
    """
    rendered = []
    for rec in records:
        try:
            rendered.append(assistant_spans(tokenizer, rec["messages"]))
        except AmuroError as err:
            raise AmuroError(f"record id {rec.get('id', '?')!r}: {err}") from None
    examples, n_truncated = [], 0
    for first in range(0, len(records), 512):  # batches: the Rust tokenizer runs in parallel
        chunk = rendered[first: first + 512]
        enc = tokenizer([text for text, _ in chunk], add_special_tokens=False,
                        return_offsets_mapping=True)
        for rec, (_, spans), ids, offsets in zip(records[first: first + 512], chunk,
                                                 enc["input_ids"], enc["offset_mapping"],
                                                 strict=True):
            ids, labels, truncated = _label_turns(rec, ids, offsets, spans, max_length)
            examples.append((ids, labels))
            n_truncated += truncated
    return examples, n_truncated


def _label_turns(rec, ids, offsets, spans, max_length: int):
    labels, last_start, last_end, k = [IGNORE] * len(ids), None, 0, 0
    for t, (start, end) in enumerate(offsets):  # offsets ascend
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k == len(spans):
            break
        # A token that overlaps a turn is learned: a merge across the turn's start (" yes"
        # after a prompt ending in a space) still carries the answer.
        if end > spans[k][0]:
            labels[t], last_end = ids[t], t + 1
            if k == len(spans) - 1 and last_start is None:
                last_start = t
    if last_start is None:
        raise AmuroError(f"record id {rec.get('id', '?')!r}: no token of its assistant turns "
                         "survives tokenization")
    ids, labels = list(ids[:last_end]), labels[:last_end]
    if len(ids) <= max_length:
        return ids, labels, False
    begin = min(len(ids) - max_length, last_start)
    return ids[begin: begin + max_length], labels[begin: begin + max_length], True
