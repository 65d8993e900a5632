"""Task and evaluation-set specifications: plain data passed from the workflow to each step.

A *task* is what a model is asked to do (NLI, summarization, ...): its type, prompt template
family and label words. An *eval set* is one file of scored examples belonging to a task, with
a role: ID (the task's own in-domain data) or OOD. Records in every data file look like
`{"id": str, "fields": {name: text}, "target": str}`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from amuro.errors import AmuroError
from amuro.io import parse_json_object

TASK_TYPES = ("classification", "generation")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str  # "classification" | "generation"
    template: str  # prompt template family, see amuro.prompts.TEMPLATES
    labels: tuple[str, ...] = ()  # label words, classification only
    metric: str = "accuracy"  # "accuracy" | "rougeL"
    max_new_tokens: int = 5

    def __post_init__(self):
        if self.type not in TASK_TYPES:
            raise AmuroError(f"task {self.name!r}: field 'type' must be one of {TASK_TYPES}")
        if self.type == "classification" and len(self.labels) < 2:
            raise AmuroError(f"task {self.name!r}: field 'labels' needs at least two label words")


@dataclass(frozen=True)
class EvalSet:
    name: str  # dataset slug, e.g. "tw_nli"
    task: TaskSpec
    role: str  # "ID" | "OOD"
    test_path: str
    demo_path: str  # pool of few-shot demonstrations, disjoint from test_path
    labels: tuple[str, ...] = field(default=())  # overrides task labels (e.g. 2-label OOD NLI)

    @property
    def label_words(self) -> tuple[str, ...]:
        return self.labels or self.task.labels


def task_from_dict(name: str, d: dict) -> TaskSpec:
    return TaskSpec(
        name=name,
        type=d["type"],
        template=d["template"],
        labels=tuple(d.get("labels") or ()),
        metric=d.get("metric", "accuracy" if d["type"] == "classification" else "rougeL"),
        max_new_tokens=int(d.get("max_new_tokens", 5 if d["type"] == "classification" else 60)),
    )


def eval_set_to_dict(s: EvalSet) -> dict:
    d = asdict(s)
    d["task"] = asdict(s.task)
    return d


def eval_set_from_dict(d: dict) -> EvalSet:
    t = dict(d["task"])
    task = TaskSpec(**{**t, "labels": tuple(t.get("labels") or ())})
    return EvalSet(
        name=d["name"],
        task=task,
        role=d["role"],
        test_path=d["test_path"],
        demo_path=d["demo_path"],
        labels=tuple(d.get("labels") or ()),
    )


def parse_eval_plan(text: str) -> dict:
    """An evaluation plan (JSON text): {"sets": [EvalSet dicts], "formats": [...], "shots": [...]}.

    The workflow passes it inline so that Snakemake's params trigger reruns when it changes.
    """
    plan = parse_json_object("--plan", text)
    for key in ("sets", "formats", "shots"):
        if key not in plan:
            raise AmuroError(f"--plan: evaluation plan lacks field {key!r}")
    plan["sets"] = [eval_set_from_dict(d) for d in plan["sets"]]
    return plan
