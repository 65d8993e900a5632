"""Task and evaluation-set specifications: plain data passed from the workflow to each step.

A *task* is what a model is asked to do (NLI, summarization, ...): its type, prompt template
family and label words. An *eval set* is one file of scored examples belonging to a task, with
a role: ID (the task's own in-domain data) or OOD. Records in every data file look like
`{"id": str, "fields": {name: text}, "target": str}`; multiple-choice records also carry
`fields.choices` (the choice texts) and `label` (the index of the correct one, whose text is the
target).

Task types and how they are scored (amuro.scoring):
- `classification`: the label word whose first sub-token has the highest next-token logit;
  metric `accuracy`;
- `generation`: greedy decoding, one line; metric `rougeL`;
- `multiple_choice`: each choice ranked by the summed log-probability of its tokens after the
  prompt (lm-evaluation-harness); no label words; always both metrics `acc` and `acc_norm`
  (the config's `metric` may be omitted; if given it names the one printed in the log).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from amuro.errors import AmuroError
from amuro.io import check_json_types, parse_json_object

TASK_TYPES = ("classification", "generation", "multiple_choice")
MC_METRICS = ("acc", "acc_norm")  # every multiple_choice set reports both


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str  # "classification" | "generation" | "multiple_choice"
    template: str  # prompt template family, see amuro.prompts.TEMPLATES
    labels: tuple[str, ...] = ()  # label words, classification only
    metric: str = "accuracy"  # "accuracy" | "rougeL" | (multiple_choice) "acc" | "acc_norm"
    max_new_tokens: int = 5  # generation budget; unused by multiple_choice

    def __post_init__(self):
        if self.type not in TASK_TYPES:
            raise AmuroError(f"task {self.name!r}: field 'type' must be one of {TASK_TYPES}")
        if self.type == "classification" and len(self.labels) < 2:
            raise AmuroError(f"task {self.name!r}: field 'labels' needs at least two label words")
        if self.type == "multiple_choice":
            if self.labels:
                raise AmuroError(f"task {self.name!r}: a multiple_choice task takes its choices "
                                 "from each record; field 'labels' must be empty")
            # "accuracy" is the dataclass default (the metric was not given): read it as acc.
            if self.metric == "accuracy":
                object.__setattr__(self, "metric", "acc")
            if self.metric not in MC_METRICS:
                raise AmuroError(f"task {self.name!r}: field 'metric' of a multiple_choice task "
                                 f"must be one of {MC_METRICS} (both are always reported), "
                                 f"got {self.metric!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric an evaluation of this task reports (one metrics row each)."""
        return MC_METRICS if self.type == "multiple_choice" else (self.metric,)


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


DEFAULT_METRIC = {"classification": "accuracy", "generation": "rougeL", "multiple_choice": "acc"}


def task_from_dict(name: str, d: dict) -> TaskSpec:
    return TaskSpec(
        name=name,
        type=d["type"],
        template=d["template"],
        labels=tuple(d.get("labels") or ()),
        metric=d.get("metric") or DEFAULT_METRIC.get(d["type"], "accuracy"),
        max_new_tokens=int(d.get("max_new_tokens", 60 if d["type"] == "generation" else 5)),
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
    check_json_types("--plan", plan, PLAN_TYPES)
    for i, d in enumerate(plan["sets"]):
        check_json_types(f"--plan: sets[{i}]", d, SET_TYPES, required=SET_REQUIRED)
        check_json_types(f"--plan: sets[{i}].task", d["task"], TASK_JSON_TYPES,
                         required=("name", "type", "template"))
        unknown = sorted(set(d["task"]) - set(TASK_JSON_TYPES))
        if unknown:
            raise AmuroError(f"--plan: sets[{i}].task: unknown field(s) {unknown}; expected "
                             f"some of {sorted(TASK_JSON_TYPES)}")
    zero = plan.get("zero_shot_formats")
    if zero is not None and not set(zero) <= set(plan["formats"]):
        raise AmuroError(f"--plan: zero_shot_formats {zero} must be among formats "
                         f"{plan['formats']}")
    names = {d["name"] for d in plan["sets"]}
    for name, formats in (plan.get("set_formats") or {}).items():
        if name not in names:
            raise AmuroError(f"--plan: set_formats: {name!r} is not an eval set of the plan")
        if (not isinstance(formats, list) or not formats
                or not set(formats) <= set(plan["formats"])):
            raise AmuroError(f"--plan: set_formats: {name!r}: expected a non-empty list of "
                             f"formats among {plan['formats']}, got {formats!r}")
    plan["sets"] = [eval_set_from_dict(d) for d in plan["sets"]]
    return plan


def plan_cells(plan: dict, set_name: str) -> list[tuple[str, int]]:
    """The (format, shots) cells of one set: every format at every shot count, except that
    a set named in `set_formats` runs only in its formats there, and 0-shot runs only in
    `zero_shot_formats` when the plan names them (null: all)."""
    zero = plan.get("zero_shot_formats")
    formats = (plan.get("set_formats") or {}).get(set_name, plan["formats"])
    return [(fmt, int(k)) for fmt in plan["formats"] for k in plan["shots"]
            if fmt in formats and (int(k) != 0 or zero is None or fmt in zero)]


# JSON kinds of a hand-given --plan (amuro.io.check_json_types)
PLAN_TYPES = {"sets": "list[object]", "formats": "list[str]", "shots": "list[int]",
              "seed": "int", "batch_size": "int", "max_items": "int|null",
              "zero_shot_formats": "list[str]|null", "demonstrations": "str",
              "prefix_cache": "bool", "set_formats": "object|null"}
SET_REQUIRED = ("name", "task", "role", "test_path", "demo_path")
SET_TYPES = {"name": "str", "task": "object", "role": "str", "test_path": "str",
             "demo_path": "str", "labels": "list[str]|null"}
TASK_JSON_TYPES = {"name": "str", "type": "str", "template": "str",
                   "labels": "list[str]|null", "metric": "str|null", "max_new_tokens": "int"}
