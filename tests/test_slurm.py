"""The toy study on a real one-node SLURM cluster through profiles/slurm.

One run of config/test/config.yaml with `snakemake --profile profiles/slurm` on the cluster of
scripts/slurm-one-node.sh (fixture `slurm_cluster`) checks that every compute job is a SLURM
job and that the results equal the local run's (fixture `local_toy_study`), byte for byte.
The same run injects a fault: each summarization fine-tune holds after its first optimizer step
(AMURO_FAULT_HOLD_AT_STEP, a test hook of amuro.finetune) and the test cancels its SLURM job
with scancel (SIGTERM, as a preemption or a time limit would); Snakemake's retry must resume
from the saved state and still produce the same model as the uninterrupted local run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_workflow import ENV, ROOT, SNAKEMAKE, TEST_CONFIG

pytestmark = pytest.mark.slow

PROFILE = ROOT / "profiles" / "slurm"

# The profile's site keys and status polling, overridden for the one-node test cluster.
SLURM_OVERRIDES = [
    # Its only partition. A --default-resources on the command line replaces the profile's
    # list as a whole, so slurm_account is unset: the plugin tries to guess one with sacct,
    # finds none (no accounting) and submits without -A.
    "--default-resources", "slurm_partition=debug",
    # No accounting (no slurmdbd): sacct polling never returns. squeue sees a finished job's
    # state for MinJobAge seconds (600 in scripts/slurm-one-node.sh).
    "--slurm-status-command", "squeue",
    # First status check after 1 s instead of 40 s (the plugin adds 10 s per check after
    # which nothing finished, and falls back to this value when a job finishes).
    "--slurm-init-seconds-before-status-checks", "1",
    # The plugin deletes the SLURM log of a successful job; the test reads them.
    "--slurm-keep-successful-logs",
    # Every job that is ready waits in SLURM's queue (8 at most, after pre-training), so a
    # freed CPU is used at once rather than at Snakemake's next status check.
    "--jobs", "8",
]
# The profile's `set-resources: <rule>: cpus_per_gpu: 8` needs no override: for a job with
# gpu=0 the plugin ignores cpus_per_gpu and asks for --cpus-per-task=<threads>.

# Rules that run as SLURM jobs; every other rule of the workflow is a local rule.
SLURM_RULES = {"make_world", "pretrain_mini", "finetune", "finetune_candidate",
               "instruction_tune", "evaluate"}

# ---- injected fault ------------------------------------------------------------------------
# amuro.finetune's test hook: a run of TASK that did not resume holds at the end of optimizer
# step STEP (state saved, HOLDING written into its state folder) until it is killed; the retry
# resumes from the saved state. The toy summarization fine-tune has 3 steps per run and there
# are two checkpoints (step0, step6), so two runs hold, and each is cancelled once.
FAULT_TASK, FAULT_STEP = "summarization", 1
FAULT_ENV = {"AMURO_FAULT_HOLD_AT_STEP": f"{FAULT_TASK}:{FAULT_STEP}"}
FAULT_RUNS = [(step, seed) for step in (0, 6) for seed in (2, 3)]  # checkpoints x seeds
FAULT_STATE_DIRS = [f"resume/mini/step{s}/sft-{FAULT_TASK}-seed{k}" for s, k in FAULT_RUNS]

# Outputs that legitimately differ between two runs: timings and what is built from them
# (cost table, report, figures; PDFs also embed a creation date) and Snakemake's markers.
NOT_COMPARED = re.compile(r"^results/(benchmarks/|figures/|report\.html$|cost\.csv$)"
                          r"|(^|/)timing\.json$|(^|/)\.snakemake_timestamp$")


def holding_files(work: Path) -> list[Path]:
    """The HOLDING files under resume/ (os.walk, unlike Path.rglob, does not fail when a
    folder is removed while it walks: finished runs delete their state folders)."""
    return sorted(Path(folder) / "HOLDING" for folder, _, files in os.walk(work / "resume")
                  if "HOLDING" in files)


def run_slurm_study(work: Path, timeout: float = 900) -> tuple[str, float, dict[str, dict]]:
    """Run the toy study through the SLURM profile with the fault hook on, cancelling every
    holding fine-tune once with scancel. Returns Snakemake's output, the wall time and the
    HOLDING record of each cancelled run by state folder."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--profile", str(PROFILE),
           "--configfile", str(TEST_CONFIG), "--directory", str(work), *SLURM_OVERRIDES]
    log_path = work.parent / "snakemake-slurm.log"
    cancelled: dict[str, dict] = {}
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**ENV, **FAULT_ENV}, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:
                for holding in holding_files(work):
                    folder = holding.parent.relative_to(work).as_posix()
                    if folder in cancelled:
                        continue  # cancelled once; its retry resumes and removes the file
                    try:
                        info = json.loads(holding.read_text())
                    except (OSError, json.JSONDecodeError):
                        continue  # being written: read it at the next poll
                    assert info.get("slurm_job_id"), f"{holding}: not a SLURM job: {info}"
                    # SIGTERM to the job's processes (SIGKILL after KillWait), state CANCELLED
                    subprocess.run(["scancel", str(info["slurm_job_id"])], check=True,
                                   timeout=30)
                    cancelled[folder] = info
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(f"the SLURM run took over {timeout} s; log:\n"
                                         f"{log_path.read_text()[-5000:]}")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:  # Snakemake cancels its SLURM jobs on SIGTERM
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    seconds = time.monotonic() - t0
    output = log_path.read_text()
    assert proc.returncode == 0, f"snakemake --profile slurm failed:\n{output[-6000:]}"
    return output, seconds, cancelled


def announced_jobs(text: str, local: bool | None = None) -> set[tuple[str, str]]:
    """(rule, wildcards) of each job Snakemake announces in its output: `rule X:` (a job for
    the executor) or `localrule X:` (run by Snakemake itself; every job of a local run) and
    the indented lines below. `local` True or False keeps only one kind."""
    jobs, current = set(), None
    for line in [*text.splitlines(), ""]:
        header = re.match(r"\s*(local)?rule (\w+):$", line)
        wildcards = re.match(r"\s+wildcards: (.*)$", line)
        if current and (header or not line.startswith(" ")):  # the block ends
            jobs.add(current)
            current = None
        if header and (local is None or local == bool(header[1])):
            current = (header[2], "")
        elif current and wildcards:
            current = (current[0], wildcards[1])
    return jobs


def slurm_states(job_ids) -> dict[str, str]:
    """SLURM's own final state of each job (squeue keeps finished jobs for MinJobAge)."""
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T",
                           "--jobs", ",".join(sorted(job_ids))], capture_output=True, text=True,
                          timeout=30, check=True)
    return dict(line.split("|", 1) for line in proc.stdout.split())


def compared_files(work: Path) -> list[str]:
    files = (p.relative_to(work).as_posix() for p in (work / "results").rglob("*") if p.is_file())
    return sorted(f for f in files if not NOT_COMPARED.search(f))


def settings_without_timing(path: Path) -> tuple[dict, int | None]:
    """A model's settings.json without its timings, and the step its run resumed from."""
    record = json.loads(path.read_text())
    record.pop("timing", None)
    return record, record.pop("resumed_from_step", None)


def test_small_study_on_slurm_equals_local_run(slurm_cluster, local_toy_study, tmp_path,
                                               record_property):
    work = tmp_path / "study"
    work.mkdir()
    output, seconds, cancelled = run_slurm_study(work)
    record_property("slurm_run_seconds", round(seconds))  # in --junitxml reports
    print(f"\nSLURM run of the toy study: {seconds:.0f} s (local run: "
          f"{local_toy_study.seconds:.0f} s, cluster start: {slurm_cluster:.1f} s)")

    # Every compute job ran inside a SLURM job: the job steps' own Snakemake output (the SLURM
    # logs) announces exactly the jobs the local run ran outside local rules, and SLURM
    # reports every submission COMPLETED but the cancelled ones. (Evaluations may go out as
    # one group job per checkpoint: a log then announces several jobs.)
    submitted = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)",
                                output))
    ran_in_slurm = set().union(*(announced_jobs(Path(log).read_text())
                                 for log in submitted.values()))
    expected = {job for job in announced_jobs(local_toy_study.output) if job[0] in SLURM_RULES}
    assert {rule for rule, _ in expected} == SLURM_RULES
    assert ran_in_slurm == expected, ran_in_slurm ^ expected
    assert announced_jobs(output, local=False) == expected
    assert not {rule for rule, _ in announced_jobs(output, local=True)} & SLURM_RULES
    states = slurm_states(submitted)
    cancelled_ids = {str(info["slurm_job_id"]) for info in cancelled.values()}
    assert {i: s for i, s in states.items() if i not in cancelled_ids} == {
        i: "COMPLETED" for i in submitted if i not in cancelled_ids}, states
    assert {states[i] for i in cancelled_ids} == {"CANCELLED"}, states

    # The fault: each summarization fine-tune held at step 1 inside its SLURM job, was
    # cancelled, and Snakemake resubmitted it (attempt 2), which resumed from the saved state.
    assert sorted(cancelled) == FAULT_STATE_DIRS, cancelled
    assert all(info["step"] == FAULT_STEP for info in cancelled.values()), cancelled
    assert output.count("Trying to restart job") == len(FAULT_STATE_DIRS), output[-5000:]
    for step, seed in FAULT_RUNS:
        ft_log = (work / "logs" / "finetune" / "mini" / f"step{step}" /
                  f"{FAULT_TASK}-seed{seed}.log").read_text()
        assert f"[finetune] resumed from step {FAULT_STEP}" in ft_log, ft_log[-3000:]
    for step, seed in FAULT_RUNS:  # the cancelled SLURM job, then its retry (attempt 2)
        runs = {i: Path(log).read_text() for i, log in submitted.items()
                if f"/rule_finetune/mini_{step}_{FAULT_TASK}_{seed}/" in log}
        assert len(runs) == 2 and len(set(runs) & cancelled_ids) == 1, runs.keys()
        retry = next(text for i, text in runs.items() if i not in cancelled_ids)
        assert "--attempt 2" in retry
    # the state folders are removed once their run succeeded
    for folder in FAULT_STATE_DIRS:
        assert not (work / folder).exists(), folder
    assert not [files for _, _, files in os.walk(work / "resume") if files]

    # Same results as the local run, byte for byte: data, checkpoints, fine-tuned models
    # (weights and loss logs, resumed or not), per-model metrics and predictions, every table
    # but the cost table. settings.json is compared without its timings and the step its run
    # resumed from (none locally; step 1 for the cancelled runs).
    local = local_toy_study.work
    files = compared_files(local)
    assert compared_files(work) == files
    differ, resumed = [], {}
    for rel in files:
        a, b = local / rel, work / rel
        if a.name == "settings.json":
            (settings_a, resumed_a), (settings_b, resumed_b) = map(settings_without_timing,
                                                                   (a, b))
            same = settings_a == settings_b and resumed_a is None
            if resumed_b is not None:
                resumed[rel] = resumed_b
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            differ.append(rel)
    assert not differ, f"differ from the local run: {differ}"
    assert resumed == {f"results/models/mini/step{step}/sft-{FAULT_TASK}-seed{seed}/"
                       "settings.json": FAULT_STEP for step, seed in FAULT_RUNS}, resumed
    for rel in ("results/perf.csv", "results/ft_vs_base.csv", "results/mrc.csv",
                "results/scores.parquet", "results/eval/mini/step6/sft-summarization-seed2/"
                "predictions.jsonl", "results/models/mini/step6/sft-summarization-seed3/"
                "model.safetensors"):
        assert rel in files, rel
