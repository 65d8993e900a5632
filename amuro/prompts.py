"""Prompt formats (paper Table 3) for every template family, as declarative data.

Three formats exist for every family — including those the paper's code left without `io`:
- `default`: `### Field:` headers with newlines between parts (Yang et al.'s layout);
- `instruct`: a human-readable instruction, then the fields;
- `io`: the raw input, then the output.

Every prompt ends without trailing whitespace and every completion is `" " + target`, so a
label word is always scored as the same token sequence (with its leading space) in all formats.
"""

from __future__ import annotations

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
}

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
    try:
        return TEMPLATES[template][fmt].format(**fields, labels=_label_list(labels))
    except KeyError as err:
        raise AmuroError(
            f"template {template!r} needs field {err.args[0]!r}, record has {sorted(fields)}"
        ) from None


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
