r"""Prompt formats (paper Table 3) for every template family, as declarative data.

Three formats exist for every family — including those the paper's code left without `io`:
- `default`: `### Field:` headers with newlines between parts (Yang et al.'s layout); the
  question-answer families use the corpus's own `Question: / Answer:` lines, and every
  multiple-choice family is exactly lm-evaluation-harness's prompt for the benchmark it
  copies (listed after the template table): the paper evaluates those sets as
  lm-eval does, and an amuro score is then comparable with an lm-eval score of the same model;
- `instruct`: a human-readable instruction, then the fields;
- `io`: the raw input, then the output.
`instruct` and `io` are the paper's other two phrasings (Table 3); they stay available for every
family, the multiple-choice ones included.

Every prompt ends without trailing whitespace and every completion is `" " + target`, so a
label word is always scored as the same token sequence (with its leading space) in all formats.
A multiple-choice family scores each choice as the completion `" " + choice`; its few-shot
demonstrations show the correct choice (the record's target) as their answer.

Template table — the one place where every template is documented (a test checks it against
TEMPLATES). `\n` is a newline; a template that continues on the next line goes on without a
space; `{labels}` is the label words as "a, b or c".

summarization (generation)
  default   ### Input:\n{passage}\n### Summary:
  instruct  Write a one-sentence summary of the passage.\n\nPassage: {passage}\n\nSummary:
  io        {passage}

question_generation (generation)
  default   ### Context:\n{context}\n### Answer:\n{answer}\n### Question:
  instruct  Write the question that is answered by the answer, given the context.\n\n
            Context: {context}\nAnswer: {answer}\n\nQuestion:
  io        {context} {answer}

nli (classification)
  default   ### Premise:\n{premise}\n### Hypothesis:\n{hypothesis}\n### Label:
  instruct  Does the premise entail the hypothesis? Answer {labels}.\n\nPremise: {premise}\n
            Hypothesis: {hypothesis}\n\nAnswer:
  io        {premise} {hypothesis}

paraphrase (classification)
  default   ### Sentence 1:\n{sentence1}\n### Sentence 2:\n{sentence2}\n### Paraphrase:
  instruct  Do the two sentences mean the same thing? Answer {labels}.\n\nSentence 1: {sentence1}\n
            Sentence 2: {sentence2}\n\nAnswer:
  io        {sentence1} {sentence2}

qa (generation)
  default   Question: {question}\nAnswer:
  instruct  Answer the question in a few words.\n\nQuestion: {question}\n\nAnswer:
  io        {question}

yes_no (classification)
  default   Question: {question}\nAnswer:
  instruct  Answer the question with {labels}.\n\nQuestion: {question}\n\nAnswer:
  io        {question}

pairwise (classification: LLMBar, labels 1/2)
  default   ### Instruction:\n{instruction}\n### Output (1):\n{output_1}\n### Output (2):\n
            {output_2}\n### Which output is better? Answer {labels}.\n### Answer:
  instruct  Which output is better? Answer {labels}.\n\nInstruction: {instruction}\n
            Output (1): {output_1}\nOutput (2): {output_2}\n\nAnswer:
  io        {instruction} {output_1} {output_2}

arc (multiple_choice: ARC-Easy/-Challenge, PIQA; SciQ without its passage)
  default   Question: {question}\nAnswer:
  instruct  Answer the question.\n\nQuestion: {question}\n\nAnswer:
  io        {question}

openbookqa (multiple_choice: OpenBookQA, whose question stem the choice completes)
  default   {question}
  instruct  Answer the question.\n\nQuestion: {question}\n\nAnswer:
  io        {question}

sciq (multiple_choice: SciQ with its support passage)
  default   {passage}\nQuestion: {question}\nAnswer:
  instruct  Answer the question using the passage.\n\nPassage: {passage}\nQuestion: {question}\n\n
            Answer:
  io        {passage} {question}

hellaswag (multiple_choice: `question` holds the context, each choice is an ending)
  default   {question}
  instruct  Complete the description with the most likely ending.\n\n{question}
  io        {question}

boolq (multiple_choice: choices no/yes)
  default   {passage}\nQuestion: {question}?\nAnswer:
  instruct  Read the passage and answer the question with yes or no.\n\nPassage: {passage}\n
            Question: {question}?\n\nAnswer:
  io        {passage} {question}?

lm-evaluation-harness equivalents: the `default` format of each multiple-choice family renders
the string of lm-eval 0.4.13's `doc_to_text` for the record its adapter (amuro.data.adapters)
writes, the record's `choices` are its `doc_to_choice` in the same order, and `label` its
`doc_to_target`; each choice is scored as `target_delimiter` (" ") + choice, demonstrations are
joined by its `fewshot_delimiter` ("\n\n"), and `acc` / `acc_norm` are its definitions
(amuro.scoring.choose). tests/test_multiple_choice.py checks real rows against strings rendered
by these definitions. Task YAMLs (lm_eval/tasks/...):

- arc, adapter arc: tasks arc_easy, arc_challenge (arc/arc_easy.yaml, arc_challenge.yaml):
  doc_to_text `Question: {{question}}\nAnswer:`, doc_to_choice `{{choices.text}}`,
  doc_to_target `{{choices.label.index(answerKey)}}`.
- arc, adapter piqa: task piqa (piqa/piqa.yaml): doc_to_text `Question: {{goal}}\nAnswer:`,
  doc_to_choice `{{[sol1, sol2]}}`, doc_to_target `label`.
- openbookqa, adapter openbookqa: task openbookqa (openbookqa/openbookqa.yaml): doc_to_text
  `question_stem`, doc_to_choice `{{choices.text}}`, doc_to_target
  `{{choices.label.index(answerKey.lstrip())}}`.
- sciq, adapter sciq_mc: task sciq (sciq/sciq.yaml): doc_to_text
  `{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:`, doc_to_choice
  `{{[distractor1, distractor2, distractor3, correct_answer]}}`, doc_to_target 3.
- hellaswag, adapter hellaswag: task hellaswag (hellaswag/hellaswag.yaml, utils.py): doc_to_text
  `{{query}}` = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
  doc_to_choice `choices` = preprocess(each ending), doc_to_target `{{label}}`.
- boolq, adapter boolq: task boolq (super_glue/boolq/default.yaml): doc_to_text
  `{{passage}}\nQuestion: {{question}}?\nAnswer:`, doc_to_choice `["no", "yes"]`, doc_to_target
  `label` (1 = true).

What the adapters do for it: OpenBookQA's stem is the whole prompt (lm-eval has no
`Question:`/`Answer:` lines there; the `arc` family on an OpenBookQA set is the former amuro
prompt); HellaSwag's context gets the activity label and lm-eval's `preprocess` (WikiHow's
`[title]` and `[step]` markers) and so do its endings, so for hellaswag `default` and `io`
coincide; BoolQ's passage is SuperGLUE's, `<title> -- <passage>`, when the source row has a
`title` (the original `dev.jsonl`; SuperGLUE's rows already carry it; the `google/boolq` hub
export has dropped it, and a passage without it is not lm-eval's prompt); SciQ's support loses
its leading whitespace only (`lstrip`). lm-eval's boolq task reports `acc` only; amuro also
reports `acc_norm` by the same definition. Fields are read stripped of surrounding whitespace
(lm-eval renders them raw): a source row with leading or trailing whitespace in a question or
choice would differ (none of the shared samples has one).
"""

from __future__ import annotations

import string

from amuro.errors import AmuroError

FORMATS = ("default", "instruct", "io")

TEMPLATES: dict[str, dict[str, str]] = {
    "summarization": {
        "default": "### Input:\n{passage}\n### Summary:",
        "instruct": (
            "Write a one-sentence summary of the passage.\n\nPassage: {passage}\n\nSummary:"
        ),
        "io": "{passage}",
    },
    "question_generation": {
        "default": "### Context:\n{context}\n### Answer:\n{answer}\n### Question:",
        "instruct": (
            "Write the question that is answered by the answer, given the context.\n\n"
            "Context: {context}\nAnswer: {answer}\n\nQuestion:"
        ),
        "io": "{context} {answer}",
    },
    "nli": {
        "default": "### Premise:\n{premise}\n### Hypothesis:\n{hypothesis}\n### Label:",
        "instruct": (
            "Does the premise entail the hypothesis? Answer {labels}.\n\n"
            "Premise: {premise}\nHypothesis: {hypothesis}\n\nAnswer:"
        ),
        "io": "{premise} {hypothesis}",
    },
    "paraphrase": {
        "default": "### Sentence 1:\n{sentence1}\n### Sentence 2:\n{sentence2}\n### Paraphrase:",
        "instruct": (
            "Do the two sentences mean the same thing? Answer {labels}.\n\n"
            "Sentence 1: {sentence1}\nSentence 2: {sentence2}\n\nAnswer:"
        ),
        "io": "{sentence1} {sentence2}",
    },
    # The question-answer families use the corpus's own "Question: / Answer:" lines as their
    # default format (as lm-evaluation-harness does for ARC and SciQ): these are the tasks
    # whose pattern pre-training is meant to teach.
    "qa": {
        "default": "Question: {question}\nAnswer:",
        "instruct": "Answer the question in a few words.\n\nQuestion: {question}\n\nAnswer:",
        "io": "{question}",
    },
    "yes_no": {
        "default": "Question: {question}\nAnswer:",
        "instruct": "Answer the question with {labels}.\n\nQuestion: {question}\n\nAnswer:",
        "io": "{question}",
    },
    # LLMBar: a classification family (labels "1"/"2", scored by first sub-token).
    "pairwise": {
        "default": (
            "### Instruction:\n{instruction}\n### Output (1):\n{output_1}\n"
            "### Output (2):\n{output_2}\n### Which output is better? Answer {labels}.\n"
            "### Answer:"
        ),
        "instruct": (
            "Which output is better? Answer {labels}.\n\nInstruction: {instruction}\n"
            "Output (1): {output_1}\nOutput (2): {output_2}\n\nAnswer:"
        ),
        "io": "{instruction} {output_1} {output_2}",
    },
    # Multiple-choice families (records carry fields.choices; see MULTIPLE_CHOICE_FAMILIES).
    "arc": {
        "default": "Question: {question}\nAnswer:",
        "instruct": "Answer the question.\n\nQuestion: {question}\n\nAnswer:",
        "io": "{question}",
    },
    "openbookqa": {
        "default": "{question}",
        "instruct": "Answer the question.\n\nQuestion: {question}\n\nAnswer:",
        "io": "{question}",
    },
    "sciq": {
        "default": "{passage}\nQuestion: {question}\nAnswer:",
        "instruct": (
            "Answer the question using the passage.\n\nPassage: {passage}\n"
            "Question: {question}\n\nAnswer:"
        ),
        "io": "{passage} {question}",
    },
    "hellaswag": {
        "default": "{question}",
        "instruct": "Complete the description with the most likely ending.\n\n{question}",
        "io": "{question}",
    },
    "boolq": {
        "default": "{passage}\nQuestion: {question}?\nAnswer:",
        "instruct": (
            "Read the passage and answer the question with yes or no.\n\n"
            "Passage: {passage}\nQuestion: {question}?\n\nAnswer:"
        ),
        "io": "{passage} {question}?",
    },
}

# Families whose records are multiple choice (scored by log-likelihood of each choice).
MULTIPLE_CHOICE_FAMILIES = frozenset({"arc", "openbookqa", "sciq", "hellaswag", "boolq"})
# Fields a template renders even when empty: SciQ items without a support passage are real
# (lm-evaluation-harness renders them with an empty one). Every other field must hold text.
MAY_BE_EMPTY = {"sciq": ("passage",)}

DEMO_SEPARATOR = "\n\n"


def _label_list(labels: tuple[str, ...] | list[str]) -> str:
    labels = list(labels)
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def render_prompt(
    template: str, fmt: str, fields: dict, labels: tuple[str, ...] | list[str] = ()
) -> str:
    """The prompt for one record (without its answer)."""
    if template not in TEMPLATES:
        raise AmuroError(f"template {template!r} unknown; expected one of {sorted(TEMPLATES)}")
    if fmt not in TEMPLATES[template]:
        raise AmuroError(f"format {fmt!r} unknown; expected one of {FORMATS}")
    text = TEMPLATES[template][fmt]
    for name in template_fields(text) - {"labels"}:
        if name not in fields:
            raise AmuroError(f"template {template!r} needs field {name!r}, record has "
                             f"{sorted(fields)}")
        value = fields[name]
        may_be_empty = name in MAY_BE_EMPTY.get(template, ())
        if not isinstance(value, str) or not (value.strip() or may_be_empty):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise AmuroError(f"template {template!r} needs field {name!r} as a non-empty "
                             f"string, got {shown}")
    # format_map over a copy in which the template's own parameter wins: a record key can
    # never collide with `labels` (str.format(**fields, labels=...) raised TypeError)
    return text.format_map({**fields, "labels": _label_list(labels)})


def template_fields(text: str) -> set[str]:
    """The names a template reads (`{passage}` -> "passage")."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def completion(target: str) -> str:
    return " " + target.strip()


def render_example(template: str, fmt: str, record: dict, labels=()) -> tuple[str, str]:
    """(prompt, completion) for a record `{"fields": {...}, "target": str}`."""
    return render_prompt(template, fmt, record["fields"], labels), completion(record["target"])


def render_few_shot(
    template: str, fmt: str, demos: list[dict], query: dict, labels=()
) -> tuple[list[str], str]:
    """Demonstration blocks (prompt + answer each) and the query prompt, not yet joined.

    Kept apart so the truncation policy can drop demonstrations before touching the query.
    """
    blocks = ["".join(render_example(template, fmt, d, labels)) for d in demos]
    return blocks, render_prompt(template, fmt, query["fields"], labels)


def join_few_shot(blocks: list[str], query_prompt: str) -> str:
    return DEMO_SEPARATOR.join([*blocks, query_prompt])


def choice_completions(record: dict) -> list[str]:
    """The completion scored for each choice of a multiple-choice record: `" " + choice`, the
    choice as the record has it (lm-eval's target_delimiter + doc_to_choice; adapters strip
    every choice but HellaSwag's, which keep what lm-eval's preprocess leaves)."""
    return [" " + c for c in record["fields"]["choices"]]
