"""One adapter per dataset: a source row (hub/parquet schema or original-file schema) -> record.

Records (one JSON object per line in the prepared files):
- task records: `{"id", "fields": {name: text}, "target"}`; the field names are those of the
  adapter's template family in `amuro.prompts.TEMPLATES`;
- multiple-choice records (`multiple_choice` family): `{"id", "fields": {"question", "choices":
  [text, ...], ["passage"]}, "target": text of the correct choice, "label": its index}`;
- LLMBar (`pairwise` family): fields `{instruction, output_1, output_2}`, target `"1"`/`"2"`;
- TULU v2 (`chat`): `{"id", "messages": [{"role", "content"}, ...]}`.

`Adapter.apply(row, index=..., split=...)` returns a record or a `Drop` (a reason, one fixed
string per kind of problem so that reasons can be counted). A field that a row lacks
altogether means the file has another schema: that raises `SchemaError` (one line, naming the
field and the schemas the adapter reads), never a drop. Ids: the source's id field when it has
one, else `<dataset>-<split>-<row index>` (index = 0-based position in the source file).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from amuro.data.readers import MALFORMED
from amuro.errors import AmuroError

NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "neutral")
YES_NO = ("yes", "no")
STSB_THRESHOLD = 3.5  # paper: STS-B score > 3.5 -> yes
CHAT_ROLES = ("system", "user", "assistant")

# Drop reasons shared by several adapters (each is counted as one category in summary.json).
R_MALFORMED = "malformed line (field count differs from the header)"
R_MISSING_LABEL = "missing label (null or empty)"
R_UNLABELED = ("label -1: unlabeled split (hub/GLUE test splits carry no gold labels); "
               "use a labeled split such as validation")
R_UNLABELED_GLUE_PARA = (
    "label -1: unlabeled split - the released code scored QQP/STS-B test rows like this, which "
    "made every gold label 'no'; use the labeled GLUE validation split"
)


class SchemaError(AmuroError):
    """A row lacks a field the adapter needs in every schema it knows."""

    def __init__(self, field: str, expected: str):
        self.field = field
        self.expected = expected
        super().__init__(f"field {field!r} missing; expected {expected}")


@dataclass(frozen=True)
class Drop:
    reason: str


class _Dropped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    dataset: str
    split: str
    index: int
    seed: int

    @property
    def default_id(self) -> str:
        return f"{self.dataset}-{self.split}-{self.index}"


@dataclass(frozen=True)
class Adapter:
    name: str
    family: str  # template family (amuro.prompts.TEMPLATES), or multiple_choice/pairwise/chat
    labels: tuple[str, ...]  # label words of a classification task; () otherwise
    schemas: str  # the row schemas it reads, for error messages and --list-adapters
    convert: Callable[[dict, Context], dict]

    @property
    def kind(self) -> str:
        if self.family == "chat":
            return "chat"
        if self.family == "multiple_choice":
            return "multiple_choice"
        return "classification" if self.labels else "generation"

    def apply(self, row: dict, *, index: int, split: str = "test", dataset: str | None = None,
              seed: int = 42) -> dict | Drop:
        """The record for `row`, or a `Drop`; raises SchemaError if a field is absent."""
        if MALFORMED in row:
            return Drop(R_MALFORMED)
        ctx = Context(dataset or self.name, split, index, seed)
        try:
            return self.convert(row, ctx)
        except _Dropped as d:
            return Drop(d.reason)
        except SchemaError as err:
            raise SchemaError(err.field, f"{err.expected} (adapter {self.name!r} reads "
                                         f"{self.schemas})") from None


# --- helpers -----------------------------------------------------------------------------------
def _pick(row: dict, *names: str, expected: str | None = None) -> str:
    """The first of `names` present in `row` (its name); SchemaError if none is."""
    for name in names:
        if name in row:
            return name
    alts = " or ".join(repr(n) for n in names)
    raise SchemaError(names[0], expected or f"a field {alts}")


def _text(row: dict, *names: str, expected: str | None = None) -> str:
    """The stripped text of the first present field of `names`; a drop if it is empty."""
    name = _pick(row, *names, expected=expected)
    value = row[name]
    if value is None:
        raise _Dropped(f"empty {name}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Dropped(f"{name} is not text")
    value = value.strip()
    if not value:
        raise _Dropped(f"empty {name}")
    return value


def _source_id(row: dict, ctx: Context, *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return ctx.default_id


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _class_label(value, *, by_int: dict[int, str], by_name: dict[str, str], unknown: str,
                 unlabeled: str = R_UNLABELED) -> str:
    """Map an int-coded (hub) or string (original file) label to a label word, or drop."""
    if _is_missing(value):
        raise _Dropped(R_MISSING_LABEL)
    number = _as_int(value)
    if number is not None:
        if number == -1:
            raise _Dropped(unlabeled)
        if number in by_int:
            return by_int[number]
        raise _Dropped(unknown)
    if isinstance(value, str) and value.strip() in by_name:
        return by_name[value.strip()]
    raise _Dropped(unknown)


def _record(ctx: Context, row: dict, fields: dict, target: str, *id_fields: str) -> dict:
    return {"id": _source_id(row, ctx, *id_fields), "fields": fields, "target": target}


# --- summarization -----------------------------------------------------------------------------
def _summarization(passage_field: str, summary_field: str):
    def convert(row, ctx):
        passage = _text(row, passage_field)
        summary = _text(row, summary_field)
        return _record(ctx, row, {"passage": passage}, summary, "id")

    return convert


def _cnn_dailymail(row, ctx):
    passage = _text(row, "article")
    bullets = [line.strip() for line in _text(row, "highlights").splitlines()]
    return _record(ctx, row, {"passage": passage}, " ".join(b for b in bullets if b), "id")


# --- question generation -----------------------------------------------------------------------
def _socialiqa(row, ctx):
    context = _text(row, "context")
    question = _text(row, "question")
    name = _pick(row, "label", expected="a field 'label' (\"1\"/\"2\"/\"3\"); the original "
                 "files keep labels in a separate .lst file: pass --labels-file SPLIT=PATH")
    letter = _class_label(row[name], by_int={1: "A", 2: "B", 3: "C"}, by_name={},
                          unknown="unknown label (expected 1/2/3 for answerA/B/C)")
    answer = _text(row, f"answer{letter}")
    return _record(ctx, row, {"context": context, "answer": answer}, question, "id")


def _sciq(row, ctx):
    context = _text(row, "support")
    answer = _text(row, "correct_answer")
    question = _text(row, "question")
    return _record(ctx, row, {"context": context, "answer": answer}, question, "id")


def _tweetqa(row, ctx):
    context = _text(row, "Tweet")
    question = _text(row, "Question")
    answers = row[_pick(row, "Answer", expected="a field 'Answer' (a list of answer texts)")]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, (list, tuple)) or not answers:
        raise _Dropped("empty Answer list")
    first = answers[0]
    if not isinstance(first, str) or not first.strip():
        raise _Dropped("empty first Answer")
    return _record(ctx, row, {"context": context, "answer": first.strip()}, question, "qid")


# --- NLI ---------------------------------------------------------------------------------------
_NLI_UNKNOWN = "unknown label (expected 0/1/2 or entailment/neutral/contradiction)"


def _mnli(row, ctx):
    if "premise" in row:  # hub: nyu-mll/glue mnli
        premise, hypothesis = _text(row, "premise"), _text(row, "hypothesis")
        value = row[_pick(row, "label")]
    else:  # GLUE tsv / MultiNLI jsonl
        premise = _text(row, "sentence1", expected="'premise' (hub) or 'sentence1' (GLUE tsv)")
        hypothesis = _text(row, "sentence2")
        value = row[_pick(row, "gold_label", expected="'gold_label' with 'sentence1'/'sentence2' "
                          "(GLUE tsv) or 'label' 0/1/2 with 'premise'/'hypothesis' (hub)")]
        if isinstance(value, str) and value.strip() == "-":
            raise _Dropped("no gold label ('-': the annotators did not agree)")
    target = _class_label(value, by_int=dict(enumerate(NLI3)), by_name={w: w for w in NLI3},
                          unknown=_NLI_UNKNOWN)
    return _record(ctx, row, {"premise": premise, "hypothesis": hypothesis}, target,
                   "pairID", "idx", "id")


def _rte(row, ctx):
    premise, hypothesis = _text(row, "sentence1"), _text(row, "sentence2")
    value = row[_pick(row, "label", expected="a field 'label' (0/1 or entailment/not_entailment)")]
    target = _class_label(
        value, by_int={0: "entailment", 1: "neutral"},
        by_name={"entailment": "entailment", "not_entailment": "neutral"},
        unknown="unknown label (expected 0/1 or entailment/not_entailment)",
    )
    return _record(ctx, row, {"premise": premise, "hypothesis": hypothesis}, target,
                   "idx", "index", "id")


def _gpt3nli(row, ctx):
    premise, hypothesis = _text(row, "text_a"), _text(row, "text_b")
    target = _class_label(row[_pick(row, "label")], by_int=dict(enumerate(NLI3)),
                          by_name={w: w for w in NLI3}, unknown=_NLI_UNKNOWN)
    return _record(ctx, row, {"premise": premise, "hypothesis": hypothesis}, target,
                   "guid", "id")


# --- paraphrase --------------------------------------------------------------------------------
_BINARY = {"by_int": {1: "yes", 0: "no"}, "by_name": {}}


def _paws(row, ctx):
    s1, s2 = _text(row, "sentence1"), _text(row, "sentence2")
    target = _class_label(row[_pick(row, "label")], **_BINARY,
                          unknown="unknown label (expected 0/1)")
    return _record(ctx, row, {"sentence1": s1, "sentence2": s2}, target, "id")


def _qqp(row, ctx):
    s1, s2 = _text(row, "question1"), _text(row, "question2")
    name = _pick(row, "label", "is_duplicate",
                 expected="'label' (hub) or 'is_duplicate' (GLUE tsv), 0/1")
    target = _class_label(row[name], **_BINARY, unknown="unknown label (expected 0/1)",
                          unlabeled=R_UNLABELED_GLUE_PARA)
    return _record(ctx, row, {"sentence1": s1, "sentence2": s2}, target, "idx", "id")


def _stsb(row, ctx):
    s1, s2 = _text(row, "sentence1"), _text(row, "sentence2")
    value = row[_pick(row, "label", "score",
                      expected="'label' (hub, float) or 'score' (GLUE tsv), 0-5")]
    if _is_missing(value):
        raise _Dropped(R_MISSING_LABEL)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise _Dropped("unknown label (expected a similarity score 0-5)") from None
    if isinstance(value, bool) or math.isnan(score):
        raise _Dropped("unknown label (expected a similarity score 0-5)")
    if score == -1:
        raise _Dropped(R_UNLABELED_GLUE_PARA)
    if not 0 <= score <= 5:
        raise _Dropped("unknown label (expected a similarity score 0-5)")
    target = "yes" if score > STSB_THRESHOLD else "no"
    return _record(ctx, row, {"sentence1": s1, "sentence2": s2}, target, "idx", "index")


# --- instruction tuning ------------------------------------------------------------------------
def _tulu(row, ctx):
    messages = row[_pick(row, "messages", expected="a field 'messages' ([{role, content}])")]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise _Dropped("no messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise _Dropped("message without role/content")
        if m["role"] not in CHAT_ROLES:
            raise _Dropped("unknown message role (expected system/user/assistant)")
        if not isinstance(m["content"], str):
            raise _Dropped("message content is not text")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise _Dropped("no non-empty assistant message")
    return {"id": _source_id(row, ctx, "id"), "messages": out}


# --- multiple choice ---------------------------------------------------------------------------
def _mc_record(ctx, row, question, choices, label, passage=None, *id_fields):
    if not choices:
        raise _Dropped("no choices")
    if any(not c for c in choices):
        raise _Dropped("empty choice text")
    fields = {"question": question, "choices": choices}
    if passage is not None:
        fields["passage"] = passage
    return {"id": _source_id(row, ctx, *id_fields), "fields": fields,
            "target": choices[label], "label": label}


def _choices(value) -> tuple[list[str], list[str]]:
    """(texts, labels) from `[{text, label}]` (official) or `{text: [], label: []}` (hub)."""
    if isinstance(value, dict) and "text" in value and "label" in value:
        texts, labels = list(value["text"]), list(value["label"])
        if len(texts) != len(labels):
            raise _Dropped("choices: text and label lists differ in length")
    elif isinstance(value, (list, tuple)) and all(
        isinstance(c, dict) and "text" in c and "label" in c for c in value
    ):
        texts, labels = [c["text"] for c in value], [c["label"] for c in value]
    else:
        raise _Dropped("choices not in a known layout ([{text,label}] or {text[],label[]})")
    return [str(t).strip() for t in texts], [str(lab).strip() for lab in labels]


def _lettered_mc(row, ctx, question_fields: tuple[str, ...]):
    """ARC / OpenBookQA: official `question{stem, choices[{text,label}]}` or hub layout."""
    name = _pick(row, *question_fields)
    if isinstance(row[name], dict):  # official jsonl
        q = row[name]
        stem = _text(q, "stem")
        texts, labels = _choices(q[_pick(q, "choices", expected="question.choices")])
    else:  # hub: question (ARC) / question_stem (OpenBookQA) str, choices {text[], label[]}
        stem = _text(row, name)
        texts, labels = _choices(row[_pick(row, "choices")])
    key = row[_pick(row, "answerKey", expected="a field 'answerKey' (A-E or 1-5)")]
    if _is_missing(key):
        raise _Dropped(R_MISSING_LABEL)
    key = str(key).strip()
    if key not in labels:
        raise _Dropped("answer key not among the choice labels")
    return _mc_record(ctx, row, stem, texts, labels.index(key), None, "id")


def _arc(row, ctx):
    return _lettered_mc(row, ctx, ("question",))


def _openbookqa(row, ctx):
    return _lettered_mc(row, ctx, ("question_stem", "question"))


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag `preprocess` (lm_eval/tasks/hellaswag/utils.py): strip, WikiHow's
    " [title]" becomes ". ", other bracketed markers ([step], [header], ...) go, and double
    spaces become single (one pass, as there)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row, ctx):
    """lm-eval's `process_docs`: the query is preprocess(activity_label + ": " + ctx_a + " " +
    ctx_b.capitalize()) and each choice preprocess(ending). A row without ctx_a/ctx_b uses its
    `ctx`; one without an activity label has no "label: " prefix."""
    if "ctx_a" in row:
        _text(row, "ctx_a")  # a drop if empty
        context = str(row["ctx_a"]) + " " + str(row.get("ctx_b") or "").capitalize()
    else:
        context = _text(row, "ctx", expected="'ctx_a'/'ctx_b' or 'ctx'")
    label_text = row.get("activity_label")
    if isinstance(label_text, str) and label_text.strip():
        context = label_text + ": " + context
    endings = row[_pick(row, "endings", expected="a field 'endings' (list of 4 texts)")]
    if not isinstance(endings, (list, tuple)):
        raise _Dropped("endings is not a list")
    value = row[_pick(row, "label", expected="a field 'label' (index into endings)")]
    if _is_missing(value):
        raise _Dropped(R_MISSING_LABEL + " - the HellaSwag test split is unlabeled")
    label = _as_int(value)
    if label is None or not 0 <= label < len(endings):
        raise _Dropped("unknown label (expected an index into endings)")
    choices = [hellaswag_preprocess(str(e)) for e in endings]
    return _mc_record(ctx, row, hellaswag_preprocess(context), choices, label, None, "ind", "id")


BOOLQ_CHOICES = ["no", "yes"]  # lm-eval's doc_to_choice; label 1 = the answer is true


def _boolq(row, ctx):
    """SuperGLUE's BoolQ, which lm-eval reads: the passage is `<title> -- <passage>` when the
    row has a title (the original files); SuperGLUE rows carry it in the passage already."""
    question = _text(row, "question")
    passage = _text(row, "passage")
    title = row.get("title")
    if isinstance(title, str) and title.strip():
        passage = f"{title.strip()} -- {passage}"
    name = _pick(row, "answer", "label", expected="'answer' (bool) or 'label' (0/1)")
    value = row[name]
    if _is_missing(value):
        raise _Dropped(R_MISSING_LABEL)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    elif not isinstance(value, bool):
        number = _as_int(value)
        if number == -1:
            raise _Dropped(R_UNLABELED)
        if number not in (0, 1):
            raise _Dropped("unknown label (expected true/false)")
        value = bool(number)
    return _mc_record(ctx, row, question, list(BOOLQ_CHOICES), int(value), passage, "idx", "id")


def _sciq_mc(row, ctx):
    """lm-eval's sciq: choices [distractor1, distractor2, distractor3, correct_answer] (so the
    label is 3), the support passage with its leading whitespace removed (may be empty)."""
    question = _text(row, "question")
    correct = _text(row, "correct_answer")
    distractors = [_text(row, f"distractor{i}") for i in (1, 2, 3)]
    support = row.get("support")
    passage = support.lstrip() if isinstance(support, str) else ""
    return _mc_record(ctx, row, question, [*distractors, correct], 3, passage, "id")


def _piqa(row, ctx):
    """lm-eval's piqa: `Question: {goal}` (the arc family), choices [sol1, sol2]."""
    goal = _text(row, "goal")
    sols = [_text(row, "sol1"), _text(row, "sol2")]
    value = row[_pick(row, "label", expected="a field 'label' (0/1; the original files keep "
                      "labels in a separate .lst file: pass --labels-file SPLIT=PATH)")]
    if _is_missing(value):
        raise _Dropped(R_MISSING_LABEL)
    label = _as_int(value)
    if label == -1:
        raise _Dropped(R_UNLABELED)
    if label not in (0, 1):
        raise _Dropped("unknown label (expected 0/1)")
    return _mc_record(ctx, row, goal, sols, label, None, "id")


def _llmbar(row, ctx):
    instruction = _text(row, "input")
    out1, out2 = _text(row, "output_1"), _text(row, "output_2")
    target = _class_label(row[_pick(row, "label", expected="a field 'label' (1 or 2)")],
                          by_int={1: "1", 2: "2"}, by_name={},
                          unknown="unknown label (expected 1 or 2)")
    return _record(ctx, row, {"instruction": instruction, "output_1": out1, "output_2": out2},
                   target, "id")


# --- registry ----------------------------------------------------------------------------------
ADAPTERS: dict[str, Adapter] = {a.name: a for a in [
    Adapter("xsum", "summarization", (), "document, summary, id",
            _summarization("document", "summary")),
    Adapter("xlsum", "summarization", (), "text, summary, id",
            _summarization("text", "summary")),
    Adapter("cnn_dailymail", "summarization", (),
            "article, highlights (newline-separated bullets), id", _cnn_dailymail),
    Adapter("socialiqa", "question_generation", (),
            "context, question, answerA/B/C, label 1/2/3 (in the row or a labels file)",
            _socialiqa),
    Adapter("sciq", "question_generation", (), "support, correct_answer, question", _sciq),
    Adapter("tweetqa", "question_generation", (), "Tweet, Answer [list], Question, qid",
            _tweetqa),
    Adapter("mnli", "nli", NLI3,
            "hub premise/hypothesis/label 0-2/idx or GLUE tsv "
            "sentence1/sentence2/gold_label/pairID",
            _mnli),
    Adapter("rte", "nli", NLI2,
            "sentence1, sentence2, label 0/1 (hub) or entailment/not_entailment (GLUE tsv)", _rte),
    Adapter("gpt3nli", "nli", NLI3, "text_a, text_b, label 0/1/2, guid", _gpt3nli),
    Adapter("paws", "paraphrase", YES_NO, "sentence1, sentence2, label 0/1, id", _paws),
    Adapter("qqp", "paraphrase", YES_NO,
            "question1, question2, label (hub) or is_duplicate (GLUE tsv) 0/1", _qqp),
    Adapter("stsb", "paraphrase", YES_NO,
            "sentence1, sentence2, label (hub float) or score (GLUE tsv) 0-5", _stsb),
    Adapter("tulu", "chat", (), "id, messages [{role, content}]", _tulu),
    Adapter("arc", "multiple_choice", (),
            "id, question{stem, choices[{text,label}]} (official) or question + "
            "choices{text[],label[]} (hub), answerKey A-E/1-5", _arc),
    Adapter("openbookqa", "multiple_choice", (),
            "id, question{stem, choices[{text,label}]} (official) or question_stem + "
            "choices{text[],label[]} (hub), answerKey", _openbookqa),
    Adapter("hellaswag", "multiple_choice", (), "ind, ctx (or ctx_a/ctx_b), endings [4], "
            "label int or string", _hellaswag),
    Adapter("boolq", "multiple_choice", YES_NO,
            "question, passage, title (optional), answer bool (or label 0/1)", _boolq),
    Adapter("sciq_mc", "multiple_choice", (),
            "question, correct_answer, distractor1-3, support", _sciq_mc),
    Adapter("piqa", "multiple_choice", (), "goal, sol1, sol2, label 0/1 (in the row or a labels "
            "file)", _piqa),
    Adapter("llmbar", "pairwise", ("1", "2"), "input, output_1, output_2, label 1/2", _llmbar),
]}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise AmuroError(f"--adapter: {name!r} unknown; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[name]


def input_key(record: dict) -> str:
    """The input text of a record (its fields, or its messages): equal keys = same input."""
    if "messages" in record:
        prompt = [m for m in record["messages"] if m["role"] != "assistant"]
        return json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    fields = {k: (" ".join(v.split()) if isinstance(v, str) else v)
              for k, v in record["fields"].items()}
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)
