"""Compute per experiment type (paper App. C, Table 2), from what the run itself measured.

Every job's wall time and CPU time come from its Snakemake benchmark file; the device it ran on
from its timing file ("device", default cpu). An evaluation job scores several kinds of cells in
one process; its time is split between them in proportion to the seconds each cell took (the
evaluation step records them in timing.json), so start-up and model loading are shared out too:

- fine-tuned models: in-domain (role ID, training format), out-of-domain (OOD, training format),
  cross-task (other tasks' sets, training format), task format (every other format);
- base checkpoints: in-context (few-shot) evaluation;
- instruction-tuned models: their benchmark evaluation.
GPU hours are the wall hours of jobs that ran on a GPU; CPU hours are the benchmark's cpu_time.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from amuro.errors import AmuroError
from amuro.io import read_json_object

PRETRAIN = "pre-training"
FINETUNE = "fine-tuning"
EVAL_BASE = "evaluation: base in-context"
EVAL_ID = "evaluation: in-domain"
EVAL_OOD = "evaluation: out-of-domain"
EVAL_CROSS = "evaluation: cross-task"
EVAL_FORMAT = "evaluation: task format"
INSTRUCT = "instruction tuning"
EVAL_IT = "evaluation: instruction-tuned"
EXPERIMENTS = [PRETRAIN, FINETUNE, INSTRUCT, EVAL_BASE, EVAL_ID, EVAL_OOD, EVAL_CROSS,
               EVAL_FORMAT, EVAL_IT]
COST_COLUMNS = ["experiment", "train_task", "n_jobs", "wall_hours", "cpu_hours", "gpu_hours",
                "device"]
SCHEMA = {"experiment": pl.String, "train_task": pl.String, "n_jobs": pl.Int64,
          "wall_hours": pl.Float64, "cpu_hours": pl.Float64, "gpu_hours": pl.Float64,
          "device": pl.String}


def read_benchmark(path: str | Path) -> tuple[float, float]:
    """(wall seconds, cpu seconds) of a Snakemake benchmark TSV (its last repeat)."""
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: benchmark file not found")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise AmuroError(f"{path}: benchmark file has no rows")
    last = rows[-1]
    try:
        wall = float(last["s"])
        cpu = float(last["cpu_time"]) if last.get("cpu_time") not in (None, "", "NA") else 0.0
    except (KeyError, ValueError):
        raise AmuroError(f"{path}: expected numeric columns 's' and 'cpu_time'") from None
    return wall, cpu


def _read_metrics(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found")
    try:
        df = pl.read_csv(path, infer_schema_length=0)
    except pl.exceptions.PolarsError as err:
        raise AmuroError(f"{path}: cannot read ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in ("tuning", "eval_set", "role") if c not in df.columns]
    if missing:
        raise AmuroError(f"{path}: missing column(s) {', '.join(missing)}")
    if not df.height:
        raise AmuroError(f"{path}: no rows")
    return df


def eval_shares(timing: dict, metrics: pl.DataFrame, train_format: str, source: str
                ) -> dict[str, float]:
    """Fraction of an evaluation job's time that went to each experiment type."""
    cells = timing.get("cells")
    if not isinstance(cells, list) or not cells:
        raise AmuroError(f"{source}: field cells: expected a list of per-cell timings")
    roles = dict(zip(metrics["eval_set"].to_list(), metrics["role"].to_list(), strict=True))
    base = metrics["tuning"][0] == "base"
    instructed = metrics["tuning"][0] == "it"
    secs: dict[str, float] = {}
    for c in cells:
        try:
            eval_set, fmt, seconds = c["eval_set"], c["format"], float(c["seconds"])
        except (KeyError, TypeError, ValueError):
            raise AmuroError(f"{source}: field cells: each needs eval_set, format, seconds"
                             ) from None
        if base:
            kind = EVAL_BASE
        elif instructed:
            kind = EVAL_IT
        elif fmt != train_format:
            kind = EVAL_FORMAT
        else:
            kind = {"ID": EVAL_ID, "OOD": EVAL_OOD}.get(roles.get(eval_set), EVAL_CROSS)
        secs[kind] = secs.get(kind, 0.0) + seconds
    total = sum(secs.values())
    return {k: (v / total if total else 1 / len(secs)) for k, v in secs.items()}


def cost_table(jobs: list[dict], train_format: str) -> pl.DataFrame:
    """COST_COLUMNS from job descriptions {kind: pretrain|finetune|evaluate, benchmark, timing,
    metrics (evaluate only), train_task (finetune/evaluate of a fine-tuned model)}."""
    acc: dict[tuple[str, str], dict] = {}

    def add(experiment, task, wall, cpu, device, share=1.0):
        a = acc.setdefault((experiment, task or ""), {"n_jobs": 0, "wall": 0.0, "cpu": 0.0,
                                                      "gpu": 0.0, "devices": set()})
        a["n_jobs"] += 1
        a["wall"] += wall * share
        a["cpu"] += cpu * share
        a["gpu"] += wall * share if device == "cuda" else 0.0
        a["devices"].add(device)

    for job in jobs:
        wall, cpu = read_benchmark(job["benchmark"])
        timing = read_json_object(job["timing"]) if job.get("timing") else {}
        # a step's own CPU count (settings.json keeps it under "timing"): the benchmark sees
        # only the job's process, which under the zygote hands the work to another one
        own = (timing.get("timing") or timing).get("cpu_s")
        cpu = max(cpu, float(own)) if isinstance(own, int | float) else cpu
        device = str(timing.get("device", "cpu"))
        if job["kind"] == "pretrain":
            add(PRETRAIN, "", wall, cpu, device)
        elif job["kind"] == "finetune":
            add(FINETUNE, job.get("train_task"), wall, cpu, device)
        elif job["kind"] == "instruction_tune":
            add(INSTRUCT, job.get("train_task"), wall, cpu, device)
        elif job["kind"] == "evaluate":
            missing = [k for k in ("timing", "metrics") if not job.get(k)]
            if missing:
                raise AmuroError(f"--jobs: evaluate job {job['benchmark']}: needs "
                                 f"{' and '.join(missing)}")
            metrics = _read_metrics(job["metrics"])
            shares = eval_shares(timing, metrics, train_format, job["timing"])
            for kind, share in shares.items():
                add(kind, job.get("train_task"), wall, cpu, device, share)
        else:
            raise AmuroError("--jobs: kind must be pretrain, finetune, instruction_tune or "
                             f"evaluate, got {job['kind']!r}")
    rows = [{"experiment": e, "train_task": t, "n_jobs": a["n_jobs"],
             "wall_hours": a["wall"] / 3600, "cpu_hours": a["cpu"] / 3600,
             "gpu_hours": a["gpu"] / 3600, "device": "+".join(sorted(a["devices"]))}
            for (e, t), a in acc.items()]
    order = {e: i for i, e in enumerate(EXPERIMENTS)}
    rows.sort(key=lambda r: (order[r["experiment"]], r["train_task"]))
    return pl.DataFrame(rows, schema=SCHEMA)
