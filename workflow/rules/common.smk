# Helpers shared by every stage: config validation, wildcard constraints, input functions and
# the parameters passed to each `python -m amuro.<step>` entry point. Light imports only: every
# cluster job re-parses the workflow, so torch and transformers stay out of here.

import json
import os
import sys

from snakemake.utils import validate

from amuro.tinyworld.datasets import DATASETS as TINYWORLD_DATASETS


def config_error(message):
    """Stop before any job runs, with one line naming the field and what was expected."""
    print(f"error: config: {message}", file=sys.stderr)
    raise SystemExit(1)


def validate_config(cfg):
    try:
        validate(cfg, schema="../schemas/config.schema.yaml", set_default=True)
    except Exception as err:  # snakemake wraps jsonschema's ValidationError in a WorkflowError
        # snakemake raises it inside `except ValidationError`, so the original is the context
        cause = err.__context__ if hasattr(err.__context__, "absolute_path") else err
        where = ".".join(str(p) for p in getattr(cause, "absolute_path", [])) or "(top level)"
        config_error(f"{where}: {getattr(cause, 'message', str(err)).splitlines()[0]}")
    owner = {}
    for name, task in cfg["tasks"].items():
        if task["type"] == "classification" and not task.get("labels"):
            config_error(f"tasks.{name}.labels: a classification task needs its label words")
        sets = {"id": task["id"], "ood": task.get("ood", [])}
        if task.get("train"):
            sets["train"] = [task["train"]]
        for field, names in sets.items():
            for ds in names:
                if ds not in TINYWORLD_DATASETS:
                    config_error(f"tasks.{name}.{field}: unknown dataset {ds!r}; expected one "
                                 f"of {sorted(TINYWORLD_DATASETS)}")
                if owner.setdefault(ds, name) != name:
                    config_error(f"tasks.{name}.{field}: dataset {ds!r} already belongs to "
                                 f"task {owner[ds]!r}")
            if field == "train" and "train" not in TINYWORLD_DATASETS[names[0]][2]:
                config_error(f"tasks.{name}.train: dataset {names[0]!r} has no train split")
    for ds in cfg.get("datasets", {}):
        if ds not in owner:
            config_error(f"datasets.{ds}: not used by any task")
    cmp, ev = cfg["analysis"]["compare"], cfg["evaluate"]
    for key, allowed in (("format", ev["formats"]), ("base_shots", ev["base_shots"]),
                         ("finetuned_shots", ev["finetuned_shots"])):
        field = {"format": "formats"}.get(key, key)
        if cmp[key] not in allowed:
            config_error(f"analysis.compare.{key}: {cmp[key]!r} is not evaluated; expected one "
                         f"of evaluate.{field} {allowed}")
    for name in cfg["finetune"].get("per_task", {}):
        if name not in cfg["tasks"]:
            config_error(f"finetune.per_task.{name}: unknown task; expected one of "
                         f"{sorted(cfg['tasks'])}")


validate_config(config)

MODELS = config["models"]
TASKS = config["tasks"]
TRAIN_TASKS = [name for name, task in TASKS.items() if task.get("train")]
TUNINGS = ["base"] + [f"sft-{name}" for name in TRAIN_TASKS]


def sets_of(task):
    return [(ds, "ID") for ds in TASKS[task]["id"]] + [(ds, "OOD") for ds in TASKS[task]["ood"]]


ALL_SETS = [ds for task in TASKS for ds, _ in sets_of(task)]
DATA_FILES = [f"results/data/{ds}/{split}.jsonl"
              for task in TASKS for ds, _ in sets_of(task) for split in ("demo", "test")]
DATA_FILES += [f"results/data/{TASKS[t]['train']}/train.jsonl" for t in TRAIN_TASKS]
LABEL_WORDS = sorted({w for t in TASKS.values() for w in t.get("labels", [])}
                     | {w for d in config.get("datasets", {}).values() for w in d.get("labels", [])})


def _alternatives(values):
    return "|".join(sorted(values, key=len, reverse=True))


wildcard_constraints:
    model=_alternatives(MODELS),
    step=r"\d+",
    tuning=_alternatives(TUNINGS),
    task=_alternatives(TRAIN_TASKS),


def checkpoint_dir(model, step):
    return f"results/checkpoints/{model}/step{step}"


def model_steps(model):
    return sorted(MODELS[model]["steps"])


def series_dir(wildcards, output):
    """The folder that holds a series' manifest and checkpoints."""
    return os.path.dirname(output.manifest)


def task_spec(name):
    t = TASKS[name]
    is_cls = t["type"] == "classification"
    return {
        "name": name,
        "type": t["type"],
        "template": t["template"],
        "labels": t.get("labels", []),
        "metric": t.get("metric", "accuracy" if is_cls else "rougeL"),
        "max_new_tokens": t.get("max_new_tokens", 5 if is_cls else 60),
    }


# --- fine-tuning --------------------------------------------------------------------------
_FT_KEYS = ("epochs", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_examples",
            "max_length", "seed", "format", "lora")


def finetune_settings(wildcards):
    ft = config["finetune"]
    settings = {k: ft[k] for k in _FT_KEYS if k in ft}
    settings.update(ft.get("per_task", {}).get(wildcards.task, {}))
    return json.dumps(settings, sort_keys=True)


def finetune_task(wildcards):
    return json.dumps(task_spec(wildcards.task), sort_keys=True)


def finetune_checkpoint(wildcards):
    return checkpoint_dir(wildcards.model, wildcards.step)


def finetune_train_file(wildcards):
    return f"results/data/{TASKS[wildcards.task]['train']}/train.jsonl"


# --- evaluation ---------------------------------------------------------------------------
def model_dir(wildcards):
    if wildcards.tuning == "base":
        return checkpoint_dir(wildcards.model, wildcards.step)
    return f"results/models/{wildcards.model}/step{wildcards.step}/{wildcards.tuning}"


def train_task_of(tuning):
    return "" if tuning == "base" else tuning.split("-", 1)[1]


def eval_sets_for(tuning):
    """Base: every set. Fine-tuned on t: t's ID and OOD sets plus every other task's ID sets."""
    trained = train_task_of(tuning)
    chosen = []
    for task in TASKS:
        for ds, role in sets_of(task):
            if not trained or task == trained or role == "ID":
                chosen.append((task, ds, role))
    return chosen


def eval_inputs(wildcards):
    files = {"model": model_dir(wildcards)}
    for _, ds, _ in eval_sets_for(wildcards.tuning):
        files[f"{ds}_test"] = f"results/data/{ds}/test.jsonl"
        files[f"{ds}_demo"] = f"results/data/{ds}/demo.jsonl"
    return files


def eval_plan(wildcards):
    ev = config["evaluate"]
    datasets = config.get("datasets", {})
    sets = [
        {
            "name": ds,
            "task": task_spec(task),
            "role": role,
            "test_path": f"results/data/{ds}/test.jsonl",
            "demo_path": f"results/data/{ds}/demo.jsonl",
            "labels": datasets.get(ds, {}).get("labels", []),
        }
        # sorted: the order of keys in a config file must not change params (and rerun jobs)
        for task, ds, role in sorted(eval_sets_for(wildcards.tuning), key=lambda t: t[1])
    ]
    shots = ev["base_shots"] if wildcards.tuning == "base" else ev["finetuned_shots"]
    plan = {"sets": sets, "formats": ev["formats"], "shots": shots, "seed": ev["seed"],
            "batch_size": ev["batch_size"], "max_items": ev["max_items"]}
    return json.dumps(plan, sort_keys=True)


def eval_meta(wildcards):
    return json.dumps({"model": wildcards.model, "step": int(wildcards.step),
                       "tuning": "base" if wildcards.tuning == "base" else "sft",
                       "train_task": train_task_of(wildcards.tuning)}, sort_keys=True)


# --- aggregation --------------------------------------------------------------------------
def all_metrics(wildcards=None):
    return [f"results/eval/{m}/step{s}/{t}/metrics.csv"
            for m in MODELS for s in model_steps(m) for t in TUNINGS]


def all_predictions(wildcards=None):
    return [path.replace("metrics.csv", "predictions.jsonl") for path in all_metrics()]


def all_manifests(wildcards=None):
    return [f"results/checkpoints/{m}/manifest.json" for m in MODELS]


def manifest_args(wildcards, input):
    return " ".join(f"{m}={path}" for m, path in zip(MODELS, input.manifests))


def all_finetuned(wildcards=None):
    return [f"results/models/{m}/step{s}/sft-{t}"
            for m in MODELS for s in model_steps(m) for t in TRAIN_TASKS]


def compare_args(wildcards=None):
    """The FT-vs-base comparison and bootstrap settings every table step shares."""
    an = config["analysis"]
    cmp, boot = an["compare"], an["bootstrap"]
    return (f"--format {cmp['format']} --base-shots {cmp['base_shots']}"
            f" --ft-shots {cmp['finetuned_shots']} --bootstrap-resamples {boot['resamples']}"
            f" --bootstrap-seed {boot['seed']}")


def cost_jobs(wildcards=None):
    """Every compute job with its benchmark and timing files, for the cost table (JSON)."""
    jobs = []
    for m in MODELS:
        jobs.append({"kind": "pretrain", "benchmark": f"results/benchmarks/pretrain/{m}.tsv",
                     "timing": f"results/checkpoints/{m}/timing.json"})
        for s in model_steps(m):
            for t in TRAIN_TASKS:
                jobs.append({"kind": "finetune", "train_task": t,
                             "benchmark": f"results/benchmarks/finetune/{m}/step{s}/{t}.tsv"})
            for tuning in TUNINGS:
                eval_dir = f"results/eval/{m}/step{s}/{tuning}"
                jobs.append({"kind": "evaluate", "train_task": train_task_of(tuning),
                             "benchmark": f"results/benchmarks/evaluate/{m}/step{s}/{tuning}.tsv",
                             "timing": f"{eval_dir}/timing.json",
                             "metrics": f"{eval_dir}/metrics.csv"})
    return json.dumps(jobs, sort_keys=True)


TABLES = ["perf", "ft_vs_base", "mrc", "mrc_summary", "ood", "groups", "ft_gain_by_group",
          "format", "format_summary", "cost"]


def final_outputs():
    return [f"results/{name}.csv" for name in TABLES] + ["results/report.html"]
