"""Byte-level BPE tokenizer trained on the tiny world's corpus, wrapped for transformers."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"

# How often each whole word is repeated in the tokenizer's training text: enough for BPE to
# merge it into one token, so label words never share a first sub-token (" neutral" split into
# four pieces with a 4k vocabulary when it only occurred in task text).
_WHOLE_WORD_REPEATS = 2000


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, whole_words: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE; `whole_words` (e.g. label words) are pushed to be single tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    boost = [" ".join(f" {w}" for w in whole_words) for _ in range(_WHOLE_WORD_REPEATS)]
    tok.train_from_iterator(_chain(texts, boost), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=None,
        clean_up_tokenization_spaces=False,
    )


def _chain(*iterables):
    for it in iterables:
        yield from it
