"""Multiple-choice tasks: prompt families, lm-eval tokenization, log-likelihood scoring with one
context pass per item, acc / acc_norm, and the evaluation CLI on MC and LLMBar-style sets."""

from __future__ import annotations

import csv
import json
import math
import random
import re
from types import SimpleNamespace

import pytest
import torch
from shared_data import DATA

import amuro.prompts as prompts
import amuro.scoring as scoring
from amuro.errors import AmuroError, run_cli
from amuro.evaluate import _check_records, fit_choices, main
from amuro.prompts import (
    FORMATS,
    MULTIPLE_CHOICE_FAMILIES,
    TEMPLATES,
    join_few_shot,
    render_few_shot,
    render_prompt,
)
from amuro.scoring import (
    NewlineTokens,
    _cache_kwarg,
    _greedy_batch,
    _left_pad,
    _pack,
    choose,
    classify,
    encode_choices,
    loglik_choices,
)
from amuro.tasks import EvalSet, TaskSpec, eval_set_to_dict, task_from_dict
from amuro.truncation import DROPPED_DEMOS, NONE, TRUNCATED_INPUT


# --- task spec -------------------------------------------------------------------------------
def test_task_spec_multiple_choice():
    t = TaskSpec("arc_easy", "multiple_choice", "arc")
    assert (t.labels, t.metric, t.metrics) == ((), "acc", ("acc", "acc_norm"))
    assert task_from_dict("arc_easy", {"type": "multiple_choice", "template": "arc"}) == t
    assert TaskSpec("h", "multiple_choice", "hellaswag", metric="acc_norm").metrics == (
        "acc", "acc_norm")  # fmt: skip
    assert TaskSpec("nli", "classification", "nli", labels=("a", "b")).metrics == ("accuracy",)
    with pytest.raises(AmuroError, match="'labels' must be empty"):
        TaskSpec("boolq", "multiple_choice", "boolq", labels=("yes", "no"))
    with pytest.raises(AmuroError, match="must be one of \\('acc', 'acc_norm'\\)"):
        TaskSpec("arc", "multiple_choice", "arc", metric="rougeL")


# --- prompts ---------------------------------------------------------------------------------
def _documented_templates() -> dict[str, dict[str, str]]:
    """Parse the template table of amuro.prompts' docstring."""
    doc = prompts.__doc__
    start = doc.index("\n\n", doc.index("Template table")) + 2
    table = doc[start : doc.index("lm-evaluation-harness equivalents")]
    out: dict[str, dict[str, str]] = {}
    family = fmt = None
    for line in table.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            family = line.split(" (")[0]
            out[family] = {}
        elif line[2:12].strip():
            fmt = line[2:12].strip()
            out[family][fmt] = line[12:]
        else:
            out[family][fmt] += line[12:]
    return {f: {k: v.replace("\\n", "\n") for k, v in d.items()} for f, d in out.items()}


def test_docstring_table_documents_every_template():
    assert _documented_templates() == TEMPLATES
    for family, formats in TEMPLATES.items():
        assert tuple(formats) == FORMATS, family
        for template in formats.values():
            assert template == template.rstrip()  # no trailing whitespace before " " + answer
    assert MULTIPLE_CHOICE_FAMILIES <= set(TEMPLATES)


MC_RECORD = {"id": "q1", "fields": {"question": "Which gas do plants take in?",
                                    "choices": ["oxygen", "carbon dioxide", "helium"],
                                    "passage": "Plants take in carbon dioxide."},
             "target": "carbon dioxide", "label": 1}  # fmt: skip


def test_lm_eval_style_default_prompts():
    f = MC_RECORD["fields"]
    assert render_prompt("arc", "default", f) == "Question: Which gas do plants take in?\nAnswer:"
    assert render_prompt("sciq", "default", f) == (
        "Plants take in carbon dioxide.\nQuestion: Which gas do plants take in?\nAnswer:")
    boolq = {"question": "is the sky blue", "passage": "The sky is blue.", "choices": ["yes", "no"]}
    assert render_prompt("boolq", "default", boolq) == (
        "The sky is blue.\nQuestion: is the sky blue?\nAnswer:")
    assert render_prompt("hellaswag", "default", {"question": "A man is", "choices": []}) == (
        "A man is")
    assert render_prompt("openbookqa", "default", f) == "Which gas do plants take in?"
    pair = {"instruction": "Say hi.", "output_1": "Hi!", "output_2": "Bye."}
    text = render_prompt("pairwise", "instruct", pair, ("1", "2"))
    assert text.startswith("Which output is better? Answer 1 or 2.\n\nInstruction: Say hi.\n")
    assert "Output (1): Hi!\nOutput (2): Bye.\n\nAnswer:" in text
    assert "Which output is better? Answer 1 or 2." in render_prompt("pairwise", "default", pair,
                                                                     ("1", "2"))


# Real rows of ../shared/data as lm-evaluation-harness 0.4.13 renders them: the strings below are
# its doc_to_text / doc_to_choice / doc_to_target for these rows, written out by hand from the
# task YAML named (lm-eval is only in the optional [bench] extra, so tests do not import it;
# benchmarks/bench_mc.py compares every item against lm-eval's own task objects).
LM_EVAL_ROWS = [  # (adapter, sample file, row, family, doc_to_text, doc_to_choice, target)
    # arc/arc_easy.yaml (arc_challenge.yaml includes it): "Question: {{question}}\nAnswer:",
    # choices "{{choices.text}}", target "{{choices.label.index(answerKey)}}"
    ("arc", "arc_challenge/test.jsonl", 0, "arc",
     "Question: An astronomer observes that a planet rotates faster after a meteorite impact. "
     "Which is the most likely effect of this increase in rotation?\nAnswer:",
     ["Planetary density will decrease.", "Planetary years will become longer.",
      "Planetary days will become shorter.", "Planetary gravity will become stronger."], 2),
    ("arc", "arc_easy/test.json", 0, "arc",
     "Question: Which statement best explains why photosynthesis is the foundation of most food "
     "webs?\nAnswer:",
     ["Sunlight is the source of energy for nearly all ecosystems.",
      "Most ecosystems are found on land instead of in water.",
      "Carbon dioxide is more available than other gases.",
      "The producers in all ecosystems are plants."], 0),
    # openbookqa/openbookqa.yaml: doc_to_text question_stem (no Question:/Answer: lines)
    ("openbookqa", "openbookqa/test.jsonl", 1, "openbookqa",
     "There is most likely going to be fog around:",
     ["a marsh", "a tundra", "the plains", "a desert"], 0),
    # sciq/sciq.yaml: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:",
    # choices "{{[distractor1, distractor2, distractor3, correct_answer]}}", target 3
    ("sciq_mc", "sciq/test.json", 59, "sciq",
     "Smooth muscle regulates air flow in lungs.\nQuestion: Which kind of muscle regulates air "
     "flow in lungs?\nAnswer:", ["vascular", "striated", "alveoli", "smooth"], 3),
    ("sciq_mc", "sciq/test.json", 35, "sciq",  # empty support: the prompt starts with "\n"
     "\nQuestion: In what type of animals may a body cavity be present or absent?\nAnswer:",
     ["vertebrate", "bicellular", "nonvascular", "triploblastic"], 3),
    # super_glue/boolq/default.yaml: "{{passage}}\nQuestion: {{question}}?\nAnswer:" over
    # SuperGLUE's passage "<title> -- <passage>", choices ["no", "yes"], target label
    ("boolq", "boolq/dev.jsonl", 106, "boolq",
     "Gambling in Australia -- Gamblers' winnings in Australia are not taxed . There are 3 main "
     "reasons for that:\nQuestion: do you pay tax on gambling winnings in australia?\nAnswer:",
     ["no", "yes"], 0),
    ("boolq", "boolq/dev.jsonl", 8, "boolq",
     "American entry into Canada by land -- Persons driving into Canada must have their "
     "vehicle's registration document and proof of insurance.\nQuestion: can u drive in canada "
     "with us license?\nAnswer:", ["no", "yes"], 1),
    # hellaswag/hellaswag.yaml + utils.py: "{{query}}" = preprocess(activity_label + ": " +
    # ctx_a + " " + ctx_b.capitalize()), choices preprocess(ending), target label
    ("hellaswag", "hellaswag/val.jsonl", 0, "hellaswag",
     "Roof shingle removal: A man is sitting on a roof. He",
     ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
      "is holding a rubik's cube.", "starts pulling up roofing on a roof."], 3),
    ("hellaswag", "hellaswag/val.jsonl", 1, "hellaswag",
     "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady",
     ["swings and lands in her arms.", "pulls the barbell forward.",
      "pulls a rope attached to the barbell.", "stands and lifts the weight over her head."], 3),
]  # fmt: skip


@pytest.mark.parametrize("adapter,path,row,family,text,choices,target", LM_EVAL_ROWS)
def test_default_prompts_are_lm_eval_task_definitions(adapter, path, row, family, text, choices,
                                                      target):
    if not DATA.is_dir():
        pytest.skip(f"real data samples not found at {DATA}")
    from amuro.data.adapters import get_adapter
    from amuro.data.readers import read_rows

    rec = get_adapter(adapter).apply(read_rows(DATA / path)[row], index=row)
    assert render_prompt(family, "default", rec["fields"]) == text
    assert rec["fields"]["choices"] == choices and rec["label"] == target
    # target_delimiter " " + each choice is what is scored; demonstrations show the gold one
    assert prompts.choice_completions(rec) == [" " + c for c in choices]
    blocks, query = render_few_shot(family, "default", [rec], rec)
    assert join_few_shot(blocks, query) == text + " " + choices[target] + "\n\n" + text


def test_piqa_renders_as_lm_eval():
    """piqa/piqa.yaml: "Question: {{goal}}\nAnswer:", choices [sol1, sol2] (the arc family)."""
    from amuro.data.adapters import get_adapter

    rec = get_adapter("piqa").apply({"goal": "How do I open a jar?", "sol1": "Twist the lid.",
                                     "sol2": "Shake it.", "label": 0}, index=0)
    assert render_prompt("arc", "default", rec["fields"]) == (
        "Question: How do I open a jar?\nAnswer:")
    assert prompts.choice_completions(rec) == [" Twist the lid.", " Shake it."]


def test_mc_demonstrations_show_the_correct_choice():
    demo = {**MC_RECORD, "id": "d1"}
    blocks, query = render_few_shot("arc", "default", [demo], MC_RECORD)
    assert blocks == ["Question: Which gas do plants take in?\nAnswer: carbon dioxide"]
    assert prompts.choice_completions(MC_RECORD) == [" oxygen", " carbon dioxide", " helium"]


REAL_MC = [  # (adapter, sample file, family)
    ("arc", "arc_challenge/test.jsonl", "arc"), ("arc", "arc_easy/test.json", "arc"),
    ("openbookqa", "openbookqa/test.jsonl", "openbookqa"),
    ("openbookqa", "openbookqa/test.jsonl", "arc"), ("hellaswag", "hellaswag/val.jsonl",
                                                     "hellaswag"),
    ("boolq", "boolq/dev.jsonl", "boolq"), ("sciq_mc", "sciq/test.json", "sciq"),
    ("sciq_mc", "sciq/test.json", "arc"),
]  # fmt: skip


@pytest.mark.parametrize("adapter,path,family", REAL_MC)
def test_real_mc_records_validate_and_render(adapter, path, family, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"real data samples not found at {DATA}")
    from amuro.data.adapters import Drop, get_adapter
    from amuro.data.readers import read_rows

    rows = read_rows(DATA / path)
    records = [r for i, row in enumerate(rows[:50])
               if not isinstance(r := get_adapter(adapter).apply(row, index=i), Drop)]
    assert records
    s = EvalSet("x", TaskSpec("x", "multiple_choice", family), "ID", "t", "d")
    _check_records(str(DATA / path), records, s, FORMATS)  # no error
    for rec in records:
        for fmt in FORMATS:
            text = render_prompt(family, fmt, rec["fields"])
            assert text == text.rstrip() and "{" not in text.replace(rec["fields"]["question"], "")


def test_real_llmbar_records_render():
    if not DATA.is_dir():
        pytest.skip(f"real data samples not found at {DATA}")
    from amuro.data.adapters import get_adapter
    from amuro.data.readers import read_rows

    rows = read_rows(DATA / "llmbar/natural.json")
    rec = get_adapter("llmbar").apply(rows[0], index=0)
    for fmt in FORMATS:
        assert rec["fields"]["output_2"] in render_prompt("pairwise", fmt, rec["fields"],
                                                          ("1", "2"))


# --- tokenization at the context / continuation boundary -------------------------------------
class MergingTokenizer:
    """Characters are tokens, except that "ab" is one token (ord("a") + 1000): a merge that can
    cross the context / continuation boundary. Batched calls like a fast tokenizer."""

    bos_token_id = None
    eos_token_id = 7

    def _one(self, text):
        ids, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                ids.append(1097)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def __call__(self, text, add_special_tokens=False):
        if isinstance(text, list):
            return {"input_ids": [self._one(t) for t in text]}
        return {"input_ids": self._one(text)}


def test_encode_choices_follows_lm_eval():
    tok = MergingTokenizer()
    ctx, conts = encode_choices(tok, "Q: x\nA:", [" yes", " no"])
    assert ctx == tok._one("Q: x\nA:")
    assert conts == [tok._one(" yes"), tok._one(" no")]
    # Trailing whitespace of the context moves to the front of each continuation.
    assert encode_choices(tok, "A: ", ["yes"]) == (tok._one("A:"), [tok._one(" yes")])
    # The continuation is what follows the context's token count in the encoded whole string:
    # "xa" + "bc" encodes as x, ab, c, so after the two context tokens only "c" is left.
    assert encode_choices(tok, "xa", ["bc"]) == ([ord("x"), ord("a")], [[ord("c")]])
    with pytest.raises(AmuroError, match="encodes to no tokens after the context"):
        encode_choices(tok, "xa", ["b"])
    # An empty context is the BOS token, else EOS (lm-eval's prefix token).
    assert encode_choices(tok, "", [" a"]) == ([7], [tok._one(" a")])


def test_encode_choices_real_tokenizer(tiny_checkpoint):
    from amuro.modeling import load_tokenizer

    tok = load_tokenizer(tiny_checkpoint)
    context = "### Premise:\nThe cat sat.\n### Label:"
    ctx, conts = encode_choices(tok, context, [" entailment", " neutral", " the cat"])
    enc = tok(context, add_special_tokens=False)["input_ids"]
    assert ctx == enc
    assert conts[0] == conts[0][:1] and len(conts[1]) == 1  # label words are single tokens
    for cont, text in zip(conts, [" entailment", " neutral", " the cat"], strict=True):
        assert ctx + cont == tok(context + text, add_special_tokens=False)["input_ids"]
        assert tok.decode(cont) == text


# --- truncation with room for the longest choice ---------------------------------------------
class CharTokenizer(MergingTokenizer):
    def _one(self, text):
        return [ord(c) for c in text]


def _text(ids):
    return "".join(chr(i) for i in ids)


def test_fit_choices_drops_demos_then_cuts_left():
    tok = CharTokenizer()
    blocks, query, conts = ["AAAA", "BBBB"], "question?", [" x", " yyy"]
    full = "AAAA\n\nBBBB\n\nquestion?"
    ctx, cont_ids, action = fit_choices(blocks, query, conts, tok, len(full) + 4)
    assert (_text(ctx), action) == (full, NONE)
    assert [_text(c) for c in cont_ids] == [" x", " yyy"]
    ctx, _, action = fit_choices(blocks, query, conts, tok, len(full) + 3)  # longest: 4 tokens
    assert (_text(ctx), action) == ("BBBB\n\nquestion?", DROPPED_DEMOS)
    ctx, _, action = fit_choices(blocks, query, conts, tok, 4 + 4)
    assert (_text(ctx), action) == ("ion?", TRUNCATED_INPUT)
    # trailing whitespace of the prompt moves into the continuations
    ctx, cont_ids, _ = fit_choices([], "q: ", [" x"], tok, 10)
    assert (_text(ctx), [_text(c) for c in cont_ids]) == ("q:", ["  x"])
    with pytest.raises(AmuroError, match="leaves no room for the prompt"):
        fit_choices([], "q", [" long choice"], tok, 12)


# --- log-likelihood scoring ------------------------------------------------------------------
class BigramStub(torch.nn.Module):
    """Next-token log-probabilities depend on the current token only (a fixed table), so every
    score can be computed by hand. Returns a legacy tuple cache and records its inputs."""

    def __init__(self, logp: torch.Tensor):
        super().__init__()
        self.logp = torch.nn.Parameter(logp, requires_grad=False)
        self.calls = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False):
        self.calls.append((input_ids.clone(), past_key_values is not None))
        return SimpleNamespace(logits=self.logp[input_ids], past_key_values=((input_ids,),))


def _bigram_table(vocab: int, rows: dict[int, dict[int, float]]) -> torch.Tensor:
    """Log-probabilities; unspecified mass spread evenly over the other tokens."""
    table = torch.zeros(vocab, vocab)
    for tok in range(vocab):
        given = rows.get(tok, {})
        rest = (1.0 - sum(given.values())) / (vocab - len(given))
        for nxt in range(vocab):
            table[tok, nxt] = math.log(given.get(nxt, rest))
    return table


def test_hand_computed_acc_and_acc_norm_disagree():
    # Context ends in token 1. Choice A "Paris" is token 2; choice B "the city of Lyon" is
    # tokens 3, 4. log P(A) = log 0.4 = -0.916; log P(B) = log 0.5 + log 0.5 = -1.386.
    # acc picks A (-0.916 > -1.386); per character A: -0.916/5 = -0.183, B: -1.386/16 = -0.087,
    # so acc_norm picks B, the gold answer.
    model = BigramStub(_bigram_table(6, {1: {2: 0.4, 3: 0.5}, 3: {4: 0.5}}))
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    [res] = loglik_choices(model, tok, [[5, 1]], [[[2], [3, 4]]], batch_size=4)
    assert [n for _, n in res] == [1, 2]
    assert res[0][0] == pytest.approx(math.log(0.4), abs=1e-6)
    assert res[1][0] == pytest.approx(2 * math.log(0.5), abs=1e-6)
    picked = choose([ll for ll, _ in res], ["Paris", "the city of Lyon"])
    assert picked == {"acc": 0, "acc_norm": 1}
    # Per-character normalization uses the choice text without the joining space (lm-eval).
    assert choose([-1.0, -2.0], ["ab", "abcd"]) == {"acc": 0, "acc_norm": 0}  # tie -> first
    assert choose([-2.0, -2.0], ["abc", "abc"]) == {"acc": 0, "acc_norm": 0}


def test_single_token_choices_need_one_pass():
    model = BigramStub(_bigram_table(6, {1: {2: 0.4, 3: 0.5}}))
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    out = loglik_choices(model, tok, [[1], [5, 1]], [[[2], [3]], [[3]]], batch_size=8)
    assert len(model.calls) == 1
    assert out[0][1][0] == pytest.approx(math.log(0.5)) and out[1][0][0] == out[0][1][0]


def _tiny_model(kind: str):
    """olmo, llama (SDPA attention, grouped KV heads), llama_eager (eager attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM, OlmoConfig, OlmoForCausalLM

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, max_position_embeddings=128, pad_token_id=0,
                  bos_token_id=1, eos_token_id=1)  # fmt: skip
    torch.manual_seed(0)
    if kind.startswith("llama"):
        config = LlamaConfig(**common, num_key_value_heads=2)
        if kind == "llama_eager":
            config._attn_implementation = "eager"
        return LlamaForCausalLM(config).eval()
    return OlmoForCausalLM(OlmoConfig(**common, num_key_value_heads=4)).eval()


def _random_items(n: int, seed: int = 1):
    """Context tokens 2..31, continuation tokens 32..63 (so a test can tell them apart)."""
    rng = random.Random(seed)
    ctxs = [[rng.randrange(2, 32) for _ in range(rng.randint(1, 14))] for _ in range(n)]
    choices = [[[rng.randrange(32, 64) for _ in range(rng.randint(1, 5))]
                for _ in range(rng.randint(1, 5))] for _ in range(n)]
    return ctxs, choices


def _naive(model, ctx, cont) -> float:
    """Full-sequence scoring: run context + continuation, sum the continuation's log-probs."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return sum(logp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont))


@pytest.mark.parametrize("tree", [True, False], ids=["per-item attention", "one 4D mask"])
@pytest.mark.parametrize("kind", ["olmo", "llama", "llama_eager"])
def test_packed_scoring_equals_full_sequence_scoring(kind, tree, monkeypatch):
    model = _tiny_model(kind)
    own = model.config._attn_implementation
    if not tree:  # a model that is not built on transformers' AttentionInterface
        monkeypatch.setattr(scoring, "_tree_capable", lambda model: False)
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    ctxs, choices = _random_items(11)
    naive = [[_naive(model, c, ch) for ch in chs] for c, chs in zip(ctxs, choices, strict=True)]
    runs = {bs: loglik_choices(model, tok, ctxs, choices, bs) for bs in (1, 4, 11)}
    for out in runs.values():
        for got, want, chs in zip(out, naive, choices, strict=True):
            assert [n for _, n in got] == [len(c) for c in chs]
            assert [ll for ll, _ in got] == pytest.approx(want, abs=1e-4)
    # Results come back in input order whatever order the items are given in.
    perm = list(range(len(ctxs)))
    random.Random(3).shuffle(perm)
    shuffled = loglik_choices(model, tok, [ctxs[i] for i in perm], [choices[i] for i in perm], 3)
    for k, i in enumerate(perm):
        assert [ll for ll, _ in shuffled[k]] == pytest.approx(
            [ll for ll, _ in runs[1][i]], abs=1e-4)  # fmt: skip
    assert model.config._attn_implementation == own  # switched back


def test_model_that_drops_keywords_falls_back_to_one_mask():
    """A forward() that does not pass keywords on to its attention: the batch runs again with
    the tree as one 4D mask (the shared prefix's cache copied again), same scores."""
    model = _tiny_model("llama")
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    ctxs, choices = _random_items(7, seed=4)
    prefix = [5, 9, 2]
    want = loglik_choices(model, tok, ctxs, choices, 3, prefix_ids=prefix)
    seen = []

    def drop(module, args, kwargs):
        seen.append(scoring._LAYOUT in kwargs)
        kwargs.pop(scoring._LAYOUT, None)
        return args, kwargs

    model.model.register_forward_pre_hook(drop, with_kwargs=True)
    got = loglik_choices(model, tok, ctxs, choices, 3, prefix_ids=prefix)
    assert seen[:3] == [False, True, False]  # the prefix, the tree try, the mask retry
    assert model.config._attn_implementation == "sdpa"
    for g, w in zip(got, want, strict=True):
        assert [ll for ll, _ in g] == pytest.approx([ll for ll, _ in w], abs=1e-4)


@pytest.mark.parametrize("kind", ["olmo", "llama"])
def test_shared_prefix_cache_equals_full_sequences(kind):
    """A prefix run once per batch and copied to every row scores, classifies and generates
    as the prefix written out in front of every item."""
    model = _tiny_model(kind)
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1, get_vocab=lambda: {"a": 63},
                          batch_decode=lambda ids, **kw: [str(i) for i in ids])
    ctxs, choices = _random_items(9)
    prefix = [5, 9, 2, 17, 30]
    full = loglik_choices(model, tok, [prefix + c for c in ctxs], choices, 4)
    cached = loglik_choices(model, tok, ctxs, choices, 4, prefix_ids=prefix)
    for got, want in zip(cached, full, strict=True):
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], abs=1e-4)
    labels = [40, 41, 42]
    full_c = classify(model, tok, [prefix + c for c in ctxs], labels, 4)
    cached_c = classify(model, tok, ctxs, labels, 4, prefix_ids=prefix)
    assert [p for p, _ in cached_c] == [p for p, _ in full_c]
    for (_, a), (_, b) in zip(cached_c, full_c, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    tokens = NewlineTokens(tok, 64)
    for rows in ([0, 1, 2, 3], [4, 5, 6, 7, 8]):
        ids, mask = _left_pad([ctxs[i] for i in rows], 0, "cpu")
        with_prefix = _greedy_batch(model, ids, mask, 6, None, tokens, _cache_kwarg(model),
                                    prefix)
        ids, mask = _left_pad([prefix + ctxs[i] for i in rows], 0, "cpu")
        assert with_prefix == _greedy_batch(model, ids, mask, 6, None, tokens,
                                            _cache_kwarg(model))


def test_one_pass_per_batch_each_context_once():
    model = _tiny_model("olmo")
    calls = []
    model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(kwargs["input_ids"].clone()), with_kwargs=True)
    heads = []
    model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: heads.append(tuple(args[0].shape)))
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    ctxs, choices = _random_items(10, seed=5)
    loglik_choices(model, tok, ctxs, choices, batch_size=4)
    lengths = [len(c) + sum(len(x) - 1 for x in chs) for c, chs in zip(ctxs, choices, strict=True)]
    batches = list(_pack(lengths, 4))
    assert len(calls) == len(batches)  # one forward pass per batch, contexts and choices in it
    fed = [t for ids in calls for t in ids.flatten().tolist()]
    assert sorted(t for t in fed if 2 <= t < 32) == sorted(t for c in ctxs for t in c)
    assert sorted(t for t in fed if t >= 32) == sorted(t for chs in choices for c in chs
                                                       for t in c[:-1])
    for ids, rows in zip(calls, batches, strict=True):
        assert ids.shape == (len(rows), max(sum(lengths[i] for i in row) for row in rows))
    # the output head sees only the scored positions: one per item, one per choice token
    # but its last
    assert sum(h[1] for h in heads) == sum(1 + sum(len(c) - 1 for c in chs) for chs in choices)


def test_pack_fills_rows_with_short_items():
    # width 10: rows [10] and [9 + 1]; then width 3: rows [3] and [2 + 1]
    assert list(_pack([10, 9, 3, 2, 1, 1], 2)) == [[[0], [1, 5]], [[2], [3, 4]]]
    assert list(_pack([4, 4, 4], 1)) == [[[2]], [[1]], [[0]]]
    assert [len(b) for b in _pack([2] * 9, 4)] == [4, 4, 1]  # equal lengths: nothing to fill
    assert list(_pack([4, 2, 2, 2, 1], 2)) == [[[0], [3, 2]], [[1], [4]]]  # 4 | 2+2; 2 | 1
    with pytest.raises(AmuroError, match="batch_size must be >= 1"):
        list(_pack([1], 0))


def test_loglik_rejects_bad_input():
    model = BigramStub(_bigram_table(4, {}))
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    with pytest.raises(AmuroError, match="item 0: no choices"):
        loglik_choices(model, tok, [[1]], [[]], 1)
    with pytest.raises(AmuroError, match="empty context"):
        loglik_choices(model, tok, [[]], [[[1]]], 1)


# --- evaluation CLI --------------------------------------------------------------------------
SENTENCES = [
    "The cat sat on the mat.",
    "A dog runs in the park every morning.",
    "The river flows past the old mill.",
    "Anna reads a book about the sea.",
]
ANSWERS = ["the mat", "the park", "the old mill", "a book", "the sea", "every morning"]


@pytest.fixture(scope="module")
def mc_checkpoint(tmp_path_factory):
    """A tiny random OLMo (context 128) whose tokenizer has " 1" and " 2" as single tokens."""
    from transformers import OlmoConfig, OlmoForCausalLM

    from amuro.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("mc_checkpoint")
    tok = train_tokenizer(SENTENCES * 20, vocab_size=350, whole_words=("1", "2", "yes", "no"))
    eos = tok.eos_token_id
    config = OlmoConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                        max_position_embeddings=128, bos_token_id=eos, eos_token_id=eos,
                        pad_token_id=eos)  # fmt: skip
    torch.manual_seed(0)
    OlmoForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def _mc_rows(prefix, n):
    rows = []
    for i in range(n):
        choices = [ANSWERS[(i + k) % len(ANSWERS)] for k in range(2 + i % 3)]
        label = i % len(choices)
        rows.append({"id": f"{prefix}{i}",
                     "fields": {"question": f"Where is it? {SENTENCES[i % 4]}",
                                "choices": choices},
                     "target": choices[label], "label": label})  # fmt: skip
    return rows


def _pair_rows(prefix, n):
    return [{"id": f"{prefix}{i}",
             "fields": {"instruction": SENTENCES[i % 4], "output_1": SENTENCES[(i + 1) % 4],
                        "output_2": SENTENCES[(i + 2) % 4]},
             "target": "12"[i % 2]} for i in range(n)]  # fmt: skip


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def mc_sets(tmp_path):
    arc = TaskSpec("arc_easy", "multiple_choice", "arc")
    llmbar = TaskSpec("llmbar", "classification", "pairwise", labels=("1", "2"))
    return [
        EvalSet("arc_easy", arc, "OOD", _write(tmp_path / "arc_test.jsonl", _mc_rows("t", 7)),
                _write(tmp_path / "arc_demo.jsonl", _mc_rows("d", 6))),
        EvalSet("llmbar", llmbar, "OOD", _write(tmp_path / "pair_test.jsonl", _pair_rows("t", 5)),
                _write(tmp_path / "pair_demo.jsonl", _pair_rows("d", 6))),
    ]


def _argv(ckpt, sets, out, **plan_extra):
    plan = {"sets": [eval_set_to_dict(s) for s in sets], "formats": ["default", "instruct"],
            "shots": [0, 4], "seed": 1234, "batch_size": 3, "max_items": None, **plan_extra}
    meta = {"model": "tiny", "step": 100, "tuning": "base", "train_task": None}
    return ["--model", str(ckpt), "--plan", json.dumps(plan), "--meta", json.dumps(meta),
            "--metrics", str(out / "metrics.csv"), "--predictions", str(out / "predictions.jsonl"),
            "--timing", str(out / "timing.json")]  # fmt: skip


def test_evaluate_cli_multiple_choice_and_pairwise(mc_checkpoint, mc_sets, tmp_path, capsys):
    out = tmp_path / "out"
    main(_argv(mc_checkpoint, mc_sets, out))
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    mc = [r for r in rows if r["eval_set"] == "arc_easy"]
    pair = [r for r in rows if r["eval_set"] == "llmbar"]
    assert len(mc) == 2 * 2 * 2 and len(pair) == 2 * 2  # formats x shots (x acc, acc_norm)
    assert {(r["format"], r["shots"], r["metric"]) for r in mc} == {
        (f, k, m) for f in ("default", "instruct") for k in ("0", "4") for m in ("acc", "acc_norm")}
    assert {(r["eval_type"], r["scoring"], r["n"], r["role"]) for r in mc} == {
        ("multiple_choice", "loglik", "7", "OOD")}  # fmt: skip
    assert {(r["eval_type"], r["scoring"], r["metric"], r["n"]) for r in pair} == {
        ("classification", "first_subtoken", "accuracy", "5")}  # fmt: skip
    # 4-shot prompts overflow the 128-token context: demonstrations were dropped.
    assert any(int(r["n_truncated"]) > 0 for r in mc if r["shots"] == "4")
    assert all(r["n_truncated"] == "0" for r in rows if r["shots"] == "0")

    preds = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    mc_preds = [p for p in preds if p["eval_set"] == "arc_easy"]
    assert len(mc_preds) == 2 * 2 * 2 * 7 and len(preds) - len(mc_preds) == 2 * 2 * 5
    assert list(mc_preds[0]) == ["eval_set", "format", "shots", "metric", "id", "prediction",
                                 "target", "score", "truncation"]  # fmt: skip
    records = {r["id"]: r for r in _mc_rows("t", 7)}
    for p in mc_preds:
        assert p["prediction"] in records[p["id"]]["fields"]["choices"]
        assert p["score"] == float(p["prediction"] == p["target"])
    for r in rows:  # every metrics row is the mean of its predictions rows
        scores = [p["score"] for p in preds if (p["eval_set"], p["format"], str(p["shots"]),
                                               p["metric"]) == (r["eval_set"], r["format"],
                                                                r["shots"], r["metric"])]
        assert len(scores) == int(r["n"]) and sum(scores) / len(scores) == pytest.approx(
            float(r["value"]))  # fmt: skip
    assert {p["metric"] for p in preds if p["eval_set"] == "llmbar"} == {"accuracy"}
    assert {p["prediction"] for p in preds if p["eval_set"] == "llmbar"} <= {"1", "2"}
    err = capsys.readouterr().err
    assert re.search(r"\[evaluate\] arc_easy default 4-shot: acc=\S+ acc_norm=\S+ n=7", err)

    # 0-shot predictions equal naive lm-eval scoring of each prompt + " " + choice.
    from amuro.modeling import load_model, load_tokenizer

    model, tok = load_model(mc_checkpoint), load_tokenizer(mc_checkpoint)
    for metric in ("acc", "acc_norm"):
        got = {p["id"]: p["prediction"] for p in mc_preds
               if (p["format"], p["shots"], p["metric"]) == ("default", 0, metric)}
        for rec in records.values():
            prompt = render_prompt("arc", "default", rec["fields"])
            ctx = tok(prompt, add_special_tokens=False)["input_ids"]
            lls = [_naive(model, ctx, tok(prompt + " " + c, add_special_tokens=False)[
                "input_ids"][len(ctx):]) for c in rec["fields"]["choices"]]
            assert got[rec["id"]] == rec["fields"]["choices"][choose(lls, rec["fields"][
                "choices"])[metric]]


BAD_MC = [  # (change to record 3, words the error must contain)
    ({"fields": {"question": "q", "choices": "a b"}}, ["'fields.choices'", "'a b'"]),
    ({"fields": {"question": "q", "choices": []}}, ["'fields.choices'", "non-empty list"]),
    ({"fields": {"question": "q", "choices": ["a", ""]}}, ["'fields.choices'"]),
    ({"fields": {"question": "q", "choices": ["a", 3]}}, ["'fields.choices'"]),
    ({"fields": {"question": "q"}}, ["'fields.choices'", "None"]),
    ({"label": 5}, ["'label'", "got 5"]),
    ({"label": True}, ["'label'", "got True"]),
    ({"label": "1"}, ["'label'", "got '1'"]),
    ({"target": "not a choice"}, ["'target'", "'not a choice'"]),
]  # fmt: skip


@pytest.mark.parametrize("change,words", BAD_MC)
def test_bad_mc_record_one_line_error(mc_checkpoint, mc_sets, tmp_path, cli_error, change,
                                      words):
    s = mc_sets[0]
    rows = _mc_rows("t", 7)
    rows[2] = {**rows[2], **change}
    _write(tmp_path / "arc_test.jsonl", rows)
    out = tmp_path / "out"
    err = cli_error(main, _argv(mc_checkpoint, [s], out))
    assert s.test_path in err and "record 3 (id 't2')" in err
    for word in words:
        assert word in err
    assert not out.exists() or not any(out.iterdir())


def test_template_must_match_task_type(mc_checkpoint, mc_sets, tmp_path, capsys):
    s = mc_sets[0]
    wrong = [EvalSet(s.name, TaskSpec("arc_easy", "multiple_choice", "nli"), "OOD", s.test_path,
                     s.demo_path)]  # fmt: skip
    with pytest.raises(SystemExit):
        run_cli(main, _argv(mc_checkpoint, wrong, tmp_path / "a"))
    assert "needs a multiple-choice template family" in capsys.readouterr().err
    wrong = [EvalSet(s.name, TaskSpec("arc_easy", "generation", "arc"), "OOD", s.test_path,
                     s.demo_path)]  # fmt: skip
    with pytest.raises(SystemExit):
        run_cli(main, _argv(mc_checkpoint, wrong, tmp_path / "b"))
    assert "must be multiple_choice" in capsys.readouterr().err
