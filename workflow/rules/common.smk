# Helpers shared by every stage: config validation, wildcard constraints, input functions and
# the parameters passed to each `python -m amuro.<step>` entry point. Light imports only: every
# cluster job re-parses the workflow, so torch and transformers stay out of here.

import json
import os
import re
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
        if getattr(cause, "context", None):  # oneOf/anyOf: say what the closest branch wanted
            from jsonschema.exceptions import best_match

            # the branch whose type matched is the one the user meant
            typed = [e for e in cause.context if e.validator != "type"]
            cause = best_match(typed or cause.context)
            where = ".".join(str(p) for p in cause.absolute_path) or where
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
                real = cfg.get("datasets", {}).get(ds, {}).get("adapter")
                if ds not in TINYWORLD_DATASETS and not real:
                    config_error(f"tasks.{name}.{field}: unknown dataset {ds!r}; expected one "
                                 f"of {sorted(TINYWORLD_DATASETS)} or an entry datasets.{ds} "
                                 f"with an adapter")
                if owner.setdefault(ds, name) != name:
                    config_error(f"tasks.{name}.{field}: dataset {ds!r} already belongs to "
                                 f"task {owner[ds]!r}")
                if real:
                    check_real_dataset(cfg, ds, field)
            if (field == "train" and names[0] in TINYWORLD_DATASETS
                    and "train" not in TINYWORLD_DATASETS[names[0]][2]):
                config_error(f"tasks.{name}.train: dataset {names[0]!r} has no train split")
    it_set = (cfg.get("instruction_tuning") or {}).get("dataset")
    for ds in cfg.get("datasets", {}):
        if ds not in owner and ds != it_set:
            config_error(f"datasets.{ds}: not used by any task")
    check_models(cfg)
    it = cfg.get("instruction_tuning")
    if it:
        ds = it["dataset"]
        real = cfg.get("datasets", {}).get(ds, {}).get("adapter")
        if ds not in TINYWORLD_DATASETS and real != "tulu":
            config_error(f"instruction_tuning.dataset: {ds!r} is neither a tiny-world chat "
                         f"dataset nor a datasets entry with adapter tulu")
        if real:
            check_real_dataset(cfg, ds, "train")
        for task in it.get("eval") or []:
            if task not in cfg["tasks"]:
                config_error(f"instruction_tuning.eval: unknown task {task!r}; expected one of "
                             f"{sorted(cfg['tasks'])}")
    for name, task_cfg in [("finetune", cfg["finetune"]), *[
            (f"finetune.per_task.{t}", o) for t, o in cfg["finetune"]["per_task"].items()]]:
        grid = task_cfg.get("lr")
        heldout = task_cfg.get("heldout", cfg["finetune"]["heldout"])
        if isinstance(grid, list) and len(grid) > 1 and heldout < 1:
            config_error(f"{name}.lr: a list of learning rates needs heldout > 0 to choose "
                         f"one (finetune.heldout or {name}.heldout)")
    cmp, ev = cfg["analysis"]["compare"], cfg["evaluate"]
    for key, allowed in (("format", ev["formats"]), ("base_shots", ev["base_shots"]),
                         ("finetuned_shots", ev["finetuned_shots"])):
        field = {"format": "formats"}.get(key, key)
        if cmp[key] not in allowed:
            config_error(f"analysis.compare.{key}: {cmp[key]!r} is not evaluated; expected one "
                         f"of evaluate.{field} {allowed}")
    for who in ("base", "finetuned"):
        key = f"{who}_zero_shot_formats"
        zero = ev[key]
        if zero is not None and not set(zero) <= set(ev["formats"]):
            config_error(f"evaluate.{key}: {zero} must be among evaluate.formats "
                         f"{ev['formats']}")
        if zero is not None and cmp[f"{who}_shots"] == 0 and cmp["format"] not in zero:
            config_error(f"analysis.compare.format: {cmp['format']!r} is not scored 0-shot; "
                         f"expected one of evaluate.{key} {zero}")
    for name in cfg["finetune"].get("per_task", {}):
        if name not in cfg["tasks"]:
            config_error(f"finetune.per_task.{name}: unknown task; expected one of "
                         f"{sorted(cfg['tasks'])}")


def check_models(cfg):
    pretrained = False
    for name, m in cfg["models"].items():
        if not m["steps"] and not m["revisions"]:
            config_error(f"models.{name}.steps: give at least one step (or a named revision)")
        if m["revisions"] and m["source"] != "hub":
            config_error(f"models.{name}.revisions: named revisions exist only for hub sources")
        clash = set(m["steps"]) & set(m["revisions"].values())
        if clash:
            config_error(f"models.{name}.revisions: step {min(clash)} is also in steps")
        pretrained |= m["source"] == "pretrain"
    if pretrained:
        for section in ("pretrain", "world"):
            if section not in cfg:
                config_error(f"{section}: required by a model with source: pretrain")
    elif any(ds in TINYWORLD_DATASETS for t in cfg["tasks"].values()
             for ds in [*t["id"], *t.get("ood", []), *([t["train"]] if t.get("train") else [])]):
        if "world" not in cfg:
            config_error("world: required by the tiny-world datasets the tasks use")


def check_real_dataset(cfg, ds, field):
    """A real dataset used as `field` (train / id / ood) needs a source for those splits."""
    from amuro.data.adapters import ADAPTERS  # pure Python, no torch

    d = cfg["datasets"][ds]
    if d["adapter"] not in ADAPTERS:
        config_error(f"datasets.{ds}.adapter: unknown adapter {d['adapter']!r}; expected one of "
                     f"{sorted(ADAPTERS)}")
    if field == "train":
        wanted = ["train"]
    else:
        wanted = ["test"] + ([d.get("demo_from", "train")] if d.get("demo_size", 32) > 0 else [])
    for split in dict.fromkeys(wanted):
        if not (d.get("files", {}).get(split) or d.get("url", {}).get(split)
                or (d.get("hub") and d.get("splits", {}).get(split))):
            config_error(f"datasets.{ds}: no source for its {split!r} split; expected "
                         f"files.{split}, url.{split}, or hub with splits.{split}")


validate_config(config)

MODELS = config["models"]
TASKS = config["tasks"]
TRAIN_TASKS = [name for name, task in TASKS.items() if task.get("train")]
# Instruction tuning (paper §3.2): one extra tuning per checkpoint, "it", on a chat mixture.
IT = config.get("instruction_tuning")
IT_TUNING, IT_TASK = "it", "instruct"
# Fine-tuning seeds are a grid axis: one model per (checkpoint, task, seed), named
# sft-<task>-seed<N>; the analyses average over seeds and resample them with the items.
SEEDS = config["finetune"]["seeds"]


def sft_tuning(task, seed):
    return f"sft-{task}-seed{seed}"


TUNINGS = (["base"] + [sft_tuning(name, s) for name in TRAIN_TASKS for s in SEEDS]
           + ([IT_TUNING] if IT else []))


def sets_of(task):
    return [(ds, "ID") for ds in TASKS[task]["id"]] + [(ds, "OOD") for ds in TASKS[task]["ood"]]


ALL_SETS = [ds for task in TASKS for ds, _ in sets_of(task)]
TRAIN_SETS = {TASKS[t]["train"] for t in TRAIN_TASKS} | ({IT["dataset"]} if IT else set())
REAL_DATASETS = sorted({ds for ds in [*ALL_SETS, *TRAIN_SETS]
                        if config["datasets"].get(ds, {}).get("adapter")})
WORLD_DATASETS = sorted({*ALL_SETS, *TRAIN_SETS} - set(REAL_DATASETS))
DATA_FILES = [f"results/data/{ds}/{split}.jsonl"
              for ds in WORLD_DATASETS if ds in ALL_SETS for split in ("demo", "test")]
DATA_FILES += [f"results/data/{ds}/train.jsonl" for ds in sorted(TRAIN_SETS)
               if ds in WORLD_DATASETS]
PRETRAINED = [m for m, spec in MODELS.items() if spec["source"] == "pretrain"]
FETCHED = [m for m in MODELS if m not in PRETRAINED]
LABEL_WORDS = sorted({w for t in TASKS.values() for w in t.get("labels", [])}
                     | {w for d in config.get("datasets", {}).values() for w in d.get("labels", [])})


def _alternatives(values):
    # An empty list must match nothing (an empty pattern would match the empty string).
    return "|".join(sorted(values, key=len, reverse=True)) or "(?!x)x"


wildcard_constraints:
    model=_alternatives(MODELS),
    step=r"\d+",
    tuning=_alternatives(TUNINGS),
    task=_alternatives(TRAIN_TASKS),
    seed=_alternatives(map(str, SEEDS)),


def checkpoint_dir(model, step):
    """Pre-trained here: under results/; fetched (hub, local, gguf): under resources/."""
    root = "results/checkpoints" if MODELS[model]["source"] == "pretrain" else "resources/models"
    return f"{root}/{model}/step{step}"


def model_steps(model):
    return sorted([*MODELS[model]["steps"], *MODELS[model]["revisions"].values()])


def series_dir(wildcards, output):
    """The folder that holds a series' manifest and checkpoints."""
    return os.path.dirname(output.manifest)


def task_spec(name):
    t = TASKS[name]
    is_gen = t["type"] == "generation"
    metric = {"classification": "accuracy", "generation": "rougeL", "multiple_choice": "acc"}
    return {
        "name": name,
        "type": t["type"],
        "template": t["template"],
        "labels": t.get("labels", []),
        "metric": t.get("metric", metric[t["type"]]),
        "max_new_tokens": t.get("max_new_tokens", 60 if is_gen else 5),
    }


# --- real datasets (rules in data.smk) ---------------------------------------------------
def dataset_cfg(ds):
    return config["datasets"][ds]


def splits_needed(ds):
    """Our splits a real dataset needs a source for: test and the demonstration pool if it is
    evaluated, train if a task trains on it."""
    d, evaluated = dataset_cfg(ds), ds in ALL_SETS
    splits = (["test"] if evaluated else []) + (["train"] if ds in TRAIN_SETS else [])
    if evaluated and d["demo_size"] > 0:
        splits.append(d["demo_from"])
    return list(dict.fromkeys(splits))


def dataset_source(ds, split):
    """A local file named in config, else the downloaded file, one per hub (id, config,
    revision, split) and shared by every dataset entry that reads it."""
    d = dataset_cfg(ds)
    if d.get("files", {}).get(split):
        return d["files"][split]
    url = d.get("url", {}).get(split)
    if url:
        ext = os.path.splitext(url.split("?")[0])[1].lstrip(".")
        # the extension names the file format and becomes part of a path: plain or json
        ext = ext if re.fullmatch(r"[A-Za-z0-9]{1,10}", ext) else "json"
        return f"resources/url/{ds}/{split}.{ext}"
    hub = d["hub"]
    config_dir = hub.get("config", "default")
    if hub.get("revision"):
        config_dir = f"{config_dir}@{hub['revision']}"
    return f"resources/hub/{hub['id']}/{config_dir}/{d['splits'][split]}.parquet"


def hub_download_args(wildcards):
    config_name, _, revision = wildcards.config.partition("@")
    args = ["--hub-id", f"{wildcards.owner}/{wildcards.repo}", "--split", wildcards.split]
    args += ["--config", config_name] if config_name != "default" else []
    args += ["--revision", revision] if revision else []
    return args  # a list: the rule's shell command quotes each item ({params.args:q})


def url_download_args(wildcards):
    return ["--url", dataset_cfg(wildcards.ds)["url"][wildcards.split]]


def prepare_args(ds):
    d = dataset_cfg(ds)
    demo = d["demo_size"] if ds in ALL_SETS else 0
    args = ["--name", ds, "--adapter", d["adapter"], "--seed", str(d["seed"]),
            "--demo-size", str(demo)]
    for split in splits_needed(ds):
        # A demonstration pool read from a train split nobody trains on is passed as `demo`,
        # so the whole train split is not written out as train.jsonl.
        ours = "demo" if split == "train" and ds not in TRAIN_SETS else split
        args += ["--split", f"{ours}={dataset_source(ds, split)}"]
    if demo > 0:
        from_split = d["demo_from"]
        args += ["--demo-from", "demo" if from_split == "train" and ds not in TRAIN_SETS
                 else from_split]
    for split, n in d.get("max_items", {}).items():
        if n is not None:
            args += ["--max-items", f"{split}={n}"]
    for split, path in d.get("labels_files", {}).items():
        args += ["--labels-file", f"{split}={path}"]
    return args  # quoted item by item in the shell command ({params.args:q})


def prepared_files(ds):
    evaluated = ds in ALL_SETS
    splits = (["test"] if evaluated else []) + (["train"] if ds in TRAIN_SETS else [])
    splits += ["demo"] if evaluated and dataset_cfg(ds)["demo_size"] > 0 else []
    return [f"results/data/{ds}/{split}.jsonl" for split in splits]


def downloads():
    """Every file the download rule would write (local files named in config excluded)."""
    return sorted({dataset_source(ds, split) for ds in REAL_DATASETS
                   for split in splits_needed(ds)
                   if not dataset_cfg(ds).get("files", {}).get(split)})


# --- fetched checkpoints (rules in checkpoints.smk) ----------------------------------------
def fetch_source(series):
    spec = MODELS[series]
    keys = ("repo", "branch_pattern", "path", "trust_remote_code", "tokens_per_step")
    return json.dumps({"type": spec["source"], **{k: spec[k] for k in keys if k in spec}},
                      sort_keys=True)


def fetch_which(series, step):
    """Always the step (its place in the series); a named revision is fetched by name."""
    named = {s: name for name, s in MODELS[series]["revisions"].items()}
    return ["--step", str(step)] + (["--revision", named[step]] if step in named else [])


def fetched_checkpoints():
    return [checkpoint_dir(m, s) for m in FETCHED for s in model_steps(m)]


# --- cluster resources (profiles/slurm) -----------------------------------------------------
def training_stage(name):
    """Resources of a training stage: the stage's, plus how often it saves resumable state
    (resources, not params: changing the interval must not rerun finished jobs)."""
    return {**stage(name), "resume_every_steps": config["resume"]["every_steps"],
            "resume_every_minutes": config["resume"]["every_minutes"]}


def resume_dir(output):
    """Where a training job keeps its resumable state: outside its output, which Snakemake
    deletes when the job fails (results/models/X -> resume/X)."""
    return f"resume/{str(output).removeprefix('results/models/')}"


def stage(name):
    """Resources of a compute stage from config; memory and run time scale with the attempt,
    so a job killed for memory or time is resubmitted with more."""
    spec = {"gpu": 0, "mem_mb": 4000, "runtime": 60, **config["resources"].get(name, {})}
    return {
        "gpu": spec["gpu"],
        "mem_mb": lambda wildcards, attempt: spec["mem_mb"] * attempt,
        "runtime": lambda wildcards, attempt: spec["runtime"] * attempt,
    }


# --- fine-tuning --------------------------------------------------------------------------
_FT_KEYS = ("epochs", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_examples",
            "max_length", "format", "lora", "heldout", "precision", "parallel", "pack")


def task_lrs(task):
    """The learning rates tried for a task: one, or a grid chosen from by held-out loss."""
    ft = config["finetune"]
    lr = ft["per_task"].get(task, {}).get("lr", ft["lr"])
    return lr if isinstance(lr, list) else [lr]


def lr_slug(lr):
    return f"{lr:g}"


GRID_TASKS = [t for t in TRAIN_TASKS if len(task_lrs(t)) > 1]
DIRECT_TASKS = [t for t in TRAIN_TASKS if t not in GRID_TASKS]


def finetune_settings(wildcards):
    ft = config["finetune"]
    settings = {k: ft[k] for k in _FT_KEYS if k in ft}
    settings.update(ft["per_task"].get(wildcards.task, {}))
    lr = getattr(wildcards, "lr", None)  # a candidate of the grid, or the task's one rate
    settings["lr"] = float(lr) if lr is not None else task_lrs(wildcards.task)[0]
    settings["seed"] = int(wildcards.seed)
    return json.dumps(settings, sort_keys=True)


def lr_candidates(wildcards):
    return [f"results/models/{wildcards.model}/step{wildcards.step}/candidates/"
            f"{sft_tuning(wildcards.task, wildcards.seed)}/lr{lr_slug(lr)}"
            for lr in task_lrs(wildcards.task)]


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
    if tuning == IT_TUNING:
        return IT_TASK
    return "" if tuning == "base" else tuning.split("-", 1)[1].rsplit("-seed", 1)[0]


def seed_of(tuning):
    """The fine-tuning seed of a tuning: 0 for a base checkpoint (nothing was trained)."""
    if tuning == IT_TUNING:
        return IT["seed"]
    return 0 if tuning == "base" else int(tuning.rsplit("-seed", 1)[1])


def benchmark_tasks():
    """Tasks nothing is fine-tuned on (the paper's benchmarks): what instruction-tuned
    models are evaluated on, unless instruction_tuning.eval names tasks."""
    named = (IT or {}).get("eval")
    return named or [t for t in TASKS if t not in TRAIN_TASKS]


def it_settings(wildcards=None):
    keys = ("epochs", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_examples",
            "max_length", "seed", "chat_template", "precision", "parallel")
    return json.dumps({k: IT[k] for k in keys if k in IT}, sort_keys=True)


def it_task(wildcards=None):
    return json.dumps({"name": IT_TASK, "type": "chat", "template": "chat"}, sort_keys=True)


def eval_sets_for(tuning):
    """Base: every set. Fine-tuned on t: t's ID and OOD sets plus every other task's ID sets.
    Instruction-tuned: the benchmark tasks' sets."""
    trained = train_task_of(tuning)
    chosen = []
    for task in TASKS:
        if tuning == IT_TUNING and task not in benchmark_tasks():
            continue
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
            "batch_size": ev["batch_size"], "max_items": ev["max_items"],
            "demonstrations": ev["demonstrations"]}
    zero = ev["base_zero_shot_formats" if wildcards.tuning == "base"
              else "finetuned_zero_shot_formats"]
    if zero is not None:
        plan["zero_shot_formats"] = zero
    trained = train_task_of(wildcards.tuning)
    if wildcards.tuning != "base" and ev["finetuned_formats"] == "in_domain":
        compared = [config["analysis"]["compare"]["format"]]
        plan["set_formats"] = {s["name"]: compared for s in sets
                               if not (s["task"]["name"] == trained and s["role"] == "ID")}
    return json.dumps(plan, sort_keys=True)


def eval_meta(wildcards):
    kind = {"base": "base", IT_TUNING: IT_TUNING}.get(wildcards.tuning, "sft")
    return json.dumps({"model": wildcards.model, "step": int(wildcards.step), "tuning": kind,
                       "train_task": train_task_of(wildcards.tuning),
                       "seed": seed_of(wildcards.tuning)}, sort_keys=True)


# --- aggregation --------------------------------------------------------------------------
def all_metrics(wildcards=None):
    return [f"results/eval/{m}/step{s}/{t}/metrics.csv"
            for m in MODELS for s in model_steps(m) for t in TUNINGS]


def all_predictions(wildcards=None):
    return [path.replace("metrics.csv", "predictions.jsonl") for path in all_metrics()]


def all_manifests(wildcards=None):
    return [f"results/checkpoints/{m}/manifest.json" for m in MODELS]


def manifest_args(wildcards, input):
    return [f"{m}={path}" for m, path in zip(MODELS, input.manifests)]


def all_finetuned(wildcards=None):
    return [f"results/models/{m}/step{s}/{t}"
            for m in MODELS for s in model_steps(m) for t in TUNINGS if t != "base"]


def compare_args(wildcards=None):
    """The FT-vs-base comparison and bootstrap settings every table step shares."""
    an = config["analysis"]
    cmp, boot = an["compare"], an["bootstrap"]
    return ["--format", cmp["format"], "--base-shots", str(cmp["base_shots"]),
            "--ft-shots", str(cmp["finetuned_shots"]),
            "--bootstrap-resamples", str(boot["resamples"]), "--bootstrap-seed", str(boot["seed"])]


def cost_jobs(wildcards=None):
    """Every compute job with its benchmark and timing files, for the cost table (JSON)."""
    jobs = []
    for m in MODELS:
        if m in PRETRAINED:  # fetched series cost no pre-training here
            jobs.append({"kind": "pretrain",
                         "benchmark": f"results/benchmarks/pretrain/{m}.tsv",
                         "timing": f"results/checkpoints/{m}/timing.json"})
        for s in model_steps(m):
            for t, seed in [(t, seed) for t in DIRECT_TASKS for seed in SEEDS]:
                jobs.append({"kind": "finetune", "train_task": t,
                             "benchmark": f"results/benchmarks/finetune/{m}/step{s}/"
                                          f"{t}-seed{seed}.tsv",
                             "timing": f"results/models/{m}/step{s}/{sft_tuning(t, seed)}/"
                                       "settings.json"})
            # every learning-rate candidate is training time spent
            for t, seed in [(t, seed) for t in GRID_TASKS for seed in SEEDS]:
                for lr in map(lr_slug, task_lrs(t)):
                    jobs.append({
                        "kind": "finetune", "train_task": t,
                        "benchmark": f"results/benchmarks/finetune/{m}/step{s}/"
                                     f"{t}-seed{seed}-lr{lr}.tsv",
                        "timing": f"results/models/{m}/step{s}/candidates/"
                                  f"{sft_tuning(t, seed)}/lr{lr}/settings.json"})
            if IT:
                jobs.append({"kind": "instruction_tune", "train_task": IT_TASK,
                             "benchmark": f"results/benchmarks/instruction_tune/{m}/step{s}.tsv",
                             "timing": f"results/models/{m}/step{s}/{IT_TUNING}/settings.json"})
            for tuning in TUNINGS:
                eval_dir = f"results/eval/{m}/step{s}/{tuning}"
                jobs.append({"kind": "evaluate", "train_task": train_task_of(tuning),
                             "benchmark": f"results/benchmarks/evaluate/{m}/step{s}/{tuning}.tsv",
                             "timing": f"{eval_dir}/timing.json",
                             "metrics": f"{eval_dir}/metrics.csv"})
    return json.dumps(jobs, sort_keys=True)


TABLES = ["perf", "ft_vs_base", "mrc", "mrc_summary", "ood", "groups", "ft_gain_by_group",
          "format", "format_summary", "format_change", "cost"]


def final_outputs():
    return [f"results/{name}.csv" for name in TABLES] + ["results/report.html"]
