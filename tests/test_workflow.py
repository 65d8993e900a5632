"""The Snakemake workflow: dry runs, lint, config validation, and one real end-to-end run."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "config" / "test" / "config.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
       "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
       "MPLBACKEND": "Agg"}


def snakemake(*args, cwd=ROOT, check=True, zygote=False):
    """Run Snakemake on this workflow; with `zygote`, its jobs start from a pre-imported
    server (amuro/zygote.py), as `make study` runs them."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), *args]
    if zygote:
        cmd = [sys.executable, "-m", "amuro.zygote", *cmd]
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def job_counts(proc) -> dict[str, int]:
    output = proc.stdout + proc.stderr  # snakemake's logger may use either stream
    assert "Job stats:" in output, output[-3000:]
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_dry_run_lists_the_full_default_grid(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    n_steps = len(cfg["models"]["tiny"]["steps"])
    n_train = sum(1 for t in cfg["tasks"].values() if t.get("train"))
    # in an empty folder, so results of an earlier run in the checkout don't shrink the plan
    counts = job_counts(snakemake("-n", "--configfile", str(ROOT / "config" / "config.yaml"),
                                  "--directory", str(tmp_path)))
    assert counts["make_world"] == 1 and counts["pretrain_tiny"] == 1
    n_seeds = len(cfg["finetune"]["seeds"])
    assert n_seeds >= 2  # fine-tuning seeds are a grid axis of the default study
    assert counts["finetune"] == n_steps * n_train * n_seeds
    assert counts["instruction_tune"] == n_steps  # the default study instruction-tunes too
    # base, each task and seed, instruction-tuned
    assert counts["evaluate"] == n_steps * (n_train * n_seeds + 2)
    assert counts["aggregate"] == 1
    for rule in ("table_mrc", "table_ood", "table_groups", "table_formats", "table_cost",
                 "figures", "report"):
        assert counts[rule] == 1, rule


def test_dry_run_lists_the_papers_grid_offline(tmp_path):
    """config/olmo1b.yaml: 8 OLMo-1B checkpoints (7 steps + main) x 4 tasks x 3 learning rates,
    plus instruction tuning and the benchmarks, planned without the network (a dry run never
    downloads)."""
    counts = job_counts(snakemake("-n", "--configfile", str(ROOT / "config" / "olmo1b.yaml"),
                                  "--directory", str(tmp_path)))
    assert counts["fetch_olmo1b"] == 8 and counts["manifest_olmo1b"] == 1
    assert counts["finetune_candidate"] == 8 * 4 * 3 and counts["select_lr"] == 8 * 4
    # per checkpoint: base, 4 task fine-tunes and the TULU instruction-tuned model
    assert counts["instruction_tune"] == 8 and counts["evaluate"] == 8 * 6
    assert "make_world" not in counts and "finetune" not in counts
    # each hub split is downloaded once, however many dataset entries read it; LLMBar's five
    # subsets come from GitHub
    assert counts["download_hub"] == 36 and counts["download_url"] == 5
    assert sum(v for k, v in counts.items() if k.startswith("prepare_")) == 29


def test_slurm_profile_dry_run_asks_for_gpus(tmp_path):
    """The profile plans the paper's grid without contacting SLURM: GPU rules ask for the
    configured GPU, memory and time, with the profile's site keys."""
    proc = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile",
                     str(ROOT / "config" / "olmo1b.yaml"), "--directory", str(tmp_path))
    out = proc.stdout + proc.stderr
    blocks = out.split("\n\n")
    candidate = next(b for b in blocks if "rule finetune_candidate:" in b)
    assert "gpu=1" in candidate and "mem_mb=64000" in candidate and "runtime=240" in candidate
    assert "slurm_partition=gpu" in candidate and "cpus_per_gpu=8" in candidate
    evaluate = next(b for b in blocks if "rule evaluate:" in b)
    assert "gpu=1" in evaluate and "runtime=120" in evaluate
    aggregate = next(b for b in blocks if "rule aggregate:" in b)
    assert "gpu=1" not in aggregate


# Prints, for each group job Snakemake forms, its jobs and the resources it would request.
GROUP_PROBE = """
import sys
import snakemake.api  # noqa: F401  (import order: snakemake.dag needs the api loaded)
import snakemake.dag as dag
update = dag.DAG._update_group_components
def probe(self):
    update(self)
    for group in {id(g): g for g in self._group.values()}.values():
        r = dict(group.resources.items())
        tunings = sorted(j.wildcards_dict["tuning"] for j in group.jobs)
        print("GROUP", group.groupid, ",".join(tunings), r["gpu"], r["mem_mb"], r["runtime"],
              r["cpus_per_gpu"], file=sys.stderr)
dag.DAG._update_group_components = probe
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[1:]]
main()
"""


def test_slurm_profile_groups_a_checkpoints_evaluations_without_adding_gpus(tmp_path):
    """One submission per checkpoint for its 6 evaluations (base, 4 fine-tuned, instruction-
    tuned), asking for one GPU and the largest memory, with the run times added, even when
    --cores would let Snakemake run the group's jobs side by side."""
    proc = subprocess.run(
        [sys.executable, "-c", GROUP_PROBE, "-s", str(ROOT / "Snakefile"), "-n", "--profile",
         str(ROOT / "profiles" / "slurm"), "--configfile", str(ROOT / "config" / "olmo1b.yaml"),
         "--directory", str(tmp_path), "--cores", "16"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    groups = [line.split()[1:] for line in proc.stderr.splitlines() if line.startswith("GROUP")]
    steps = yaml.safe_load((ROOT / "config" / "olmo1b.yaml").read_text())["models"]["olmo1b"]
    assert len(groups) == len(steps["steps"]) + len(steps["revisions"])
    for name, tunings, gpu, mem_mb, runtime, cpus_per_gpu in groups:
        assert name.startswith("evaluate_olmo1b_step")
        assert tunings == ("base,it,sft-nli-seed42,sft-paraphrase-seed42,"
                           "sft-question_generation-seed42,sft-summarization-seed42")
        assert (gpu, mem_mb, runtime, cpus_per_gpu) == ("1", "64000", str(6 * 120), "8")


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_config_agrees_with_schema():
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for path in (ROOT / "config" / "config.yaml", TEST_CONFIG):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def _broken(tmp_path, edit) -> Path:
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    edit(cfg)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["finetune"].update(lr=-0.1), "finetune.lr: -0.1 is less than or equal"),
        (lambda c: c["world"].pop("seed"), "world: 'seed' is a required property"),
        (lambda c: c["tasks"]["nli"].update(ood=["tw_mystery"]),
         "tasks.nli.ood: unknown dataset 'tw_mystery'"),
        (lambda c: c["tasks"].update(bogus={"type": "ranking", "template": "nli", "id": ["x"]}),
         "tasks.bogus.type: 'ranking' is not one of"),
        (lambda c: c["finetune"].update(per_task={"poetry": {"lr": 1e-3}}),
         "finetune.per_task.poetry: unknown task"),
        (lambda c: c["analysis"]["compare"].update(base_shots=3),
         "analysis.compare.base_shots: 3 is not evaluated"),
        (lambda c: c["analysis"].update(groups={"min_rise": -1}),
         "analysis.groups.min_rise: -1 is less than the minimum of 0"),
    ],
)
def test_bad_config_stops_with_one_line_before_any_job(tmp_path, edit, expected):
    proc = snakemake("-n", "--configfile", str(_broken(tmp_path, edit)), "--directory",
                     str(tmp_path), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: config:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_end_to_end_small_study(local_toy_study, tmp_path):
    # the session's one local run of the toy study (conftest.py), shared with test_slurm.py
    work = local_toy_study.work

    with open(work / "results" / "perf.csv") as fh:
        perf = list(csv.DictReader(fh))
    # per step, rows per (format, shots) cell: a multiple-choice set has two (acc, acc_norm).
    # base: 5 sets + tw_facts_mc, 2 formats x 2 shots; each fine-tuned model (2 tasks x 2
    # seeds): own ID and OOD, the other task's ID, tw_truth, tw_facts_mc; instruction-tuned:
    # tw_truth and tw_facts_mc
    assert len(perf) == 2 * ((5 + 2) * 2 * 2 + 2 * 2 * (4 + 2) * 2 + (1 + 2) * 2)
    assert {r["seed"] for r in perf if r["tuning"] == "sft"} == {"2", "3"}
    assert {r["seed"] for r in perf if r["tuning"] == "base"} == {"0"}
    assert {r["metric"] for r in perf if r["eval_set"] == "tw_facts_mc"} == {"acc", "acc_norm"}
    assert {r["tuning"] for r in perf} == {"base", "sft", "it"}
    assert {r["role"] for r in perf} == {"ID", "OOD", "cross"}
    assert all(0.0 <= float(r["value"]) <= 1.0 and int(r["n"]) == 8 for r in perf)
    assert all(float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in perf)
    with open(work / "results" / "ft_vs_base.csv") as fh:
        diffs = list(csv.DictReader(fh))
    # every fine-tuned (and instruction-tuned) cell at 0 shots, averaged over its seeds,
    # paired with the base model's 2-shot cell on the same items
    assert len(diffs) == 2 * (2 * (4 + 2) * 2 + (1 + 2) * 2)
    assert all(int(r["n_paired"]) == 8 for r in diffs)
    assert {(r["tuning"], r["n_seeds"]) for r in diffs} == {("sft", "2"), ("it", "1")}
    assert {r["tokens"] for r in perf if r["step"] == "6"} == {str(6 * 4 * 64)}
    with open(work / "results" / "mrc.csv") as fh:
        mrc = list(csv.DictReader(fh))
    # nli's cross-task sets: tw_news (generation), tw_truth; summarization's: tw_nli, tw_truth
    # (and both meet tw_facts_mc, multiple choice); the instruction-tuned model has no MRC
    assert sorted((r["step"], r["train_task"], r["direction"]) for r in mrc) == sorted(
        (step, task, direction) for step in ("0", "6") for task, direction in (
            ("nli", "classification->classification"), ("nli", "classification->generation"),
            ("nli", "classification->multiple_choice"), ("nli", "classification->all"),
            ("summarization", "generation->classification"),
            ("summarization", "generation->multiple_choice"), ("summarization", "generation->all")))
    _check_tables_figures_report(work / "results")
    # NLI's learning rate was chosen by held-out loss; the evaluated model is the chosen run.
    for step, seed in [(step, seed) for step in ("0", "6") for seed in (2, 3)]:
        chosen = work / "results" / "models" / "mini" / f"step{step}" / f"sft-nli-seed{seed}"
        selection = json.loads((chosen / "selection.json").read_text())
        losses = {c["lr"]: c["heldout_loss"] for c in selection["candidates"]}
        assert set(losses) == {1.0e-3, 3.0e-4}
        assert selection["chosen"]["lr"] == min(losses, key=losses.get)
        settings = json.loads((chosen / "settings.json").read_text())
        assert settings["settings"]["lr"] == selection["chosen"]["lr"]
        assert settings["settings"]["seed"] == seed
        assert settings["heldout_n"] == 4 and settings["n_examples"] == 20
        # instruction tuning: the chat template is saved with the model and named
        it_dir = work / "results" / "models" / "mini" / f"step{step}" / "it"
        assert (it_dir / "chat_template.jinja").stat().st_size > 0
        assert json.loads((it_dir / "settings.json").read_text())["chat_template"] == "tulu"
    for rule in ("pretrain", "finetune", "evaluate"):
        assert list((work / "results" / "benchmarks" / rule).rglob("*.tsv")), rule
    assert (work / "logs" / "aggregate" / "aggregate.log").exists()

    # Nothing left to do; then one changed training setting reruns only what depends on it.
    # On a copy (mtimes and Snakemake's metadata kept), so the shared run stays untouched.
    work = tmp_path / "study"
    shutil.copytree(local_toy_study.work, work, symlinks=True)
    assert "Nothing to be done" in snakemake("-n", "--configfile", str(TEST_CONFIG),
                                             "--directory", str(work)).stdout
    changed = yaml.safe_load(TEST_CONFIG.read_text())
    changed["finetune"]["per_task"]["summarization"] = {"lr": 5.0e-4}
    changed_path = tmp_path / "changed.yaml"
    changed_path.write_text(yaml.safe_dump(changed))
    counts = job_counts(snakemake("-n", "--configfile", str(changed_path), "--directory",
                                  str(work)))
    assert counts == {"finetune": 4, "evaluate": 4, "aggregate": 1, "table_mrc": 1,
                      "table_ood": 1, "table_groups": 1, "table_formats": 1, "table_cost": 1,
                      "figures": 1, "report": 1, "all": 1}

    # One target pulls in only the jobs it needs.
    fresh = tmp_path / "fresh"
    one_model = "results/eval/mini/step6/sft-nli-seed2/metrics.csv"
    counts = job_counts(snakemake("-n", one_model, "--configfile", str(TEST_CONFIG),
                                  "--directory", str(fresh)))
    assert counts == {"make_world": 1, "pretrain_mini": 1, "finetune_candidate": 2,
                      "select_lr": 1, "evaluate": 1}
    counts = job_counts(snakemake("-n", "results/mrc.csv", "--configfile", str(TEST_CONFIG),
                                  "--directory", str(fresh)))
    assert counts == {"make_world": 1, "pretrain_mini": 1, "finetune": 4,
                      "finetune_candidate": 8, "select_lr": 4, "instruction_tune": 2,
                      "evaluate": 12, "aggregate": 1, "table_mrc": 1}


TABLES = ["perf", "ft_vs_base", "mrc", "mrc_summary", "ood", "groups", "ft_gain_by_group",
          "format", "format_summary", "format_change", "cost"]
FIGURES = ["fig02_base_fewshot", "fig03_ft_vs_base_examples", "fig04_gain_by_group",
           "fig05_format_examples", "fig06_ood_examples", "fig07_ood_ratio",
           "fig08_untrained_sets", "fig09_ft_vs_base_id", "fig10_ft_vs_base_ood",
           "fig11_cross_from_classification", "fig12_cross_from_generation",
           "fig13_formats_all"]


def _check_tables_figures_report(results: Path) -> None:
    for name in TABLES:
        with open(results / f"{name}.csv") as fh:
            assert len(list(csv.DictReader(fh))) > 0, name
    with open(results / "cost.csv") as fh:
        experiments = {r["experiment"] for r in csv.DictReader(fh)}
    assert {"pre-training", "fine-tuning", "instruction tuning", "evaluation: base in-context",
            "evaluation: in-domain", "evaluation: out-of-domain", "evaluation: cross-task",
            "evaluation: task format", "evaluation: instruction-tuned"} == experiments
    index = json.loads((results / "figures" / "figures.json").read_text())
    assert [f["name"] for f in index] == FIGURES
    for fig in index:
        for name in fig["files"]:
            assert (results / "figures" / name).stat().st_size > 5000, name
    panels = {f["name"]: f["panels"] for f in index}
    # one panel per fine-tuned task on its in-domain set; base and fine-tuned per format
    assert panels["fig09_ft_vs_base_id"] == ["nli → tw_nli", "summarization → tw_news"]
    assert panels["fig10_ft_vs_base_ood"] == ["nli → tw_nli2", "summarization → tw_stories"]
    assert panels["fig13_formats_all"] == ["tw_nli: base", "tw_nli: fine-tuned",
                                           "tw_news: base", "tw_news: fine-tuned"]
    assert panels["fig07_ood_ratio"] == ["fine-tuned task → OOD set"]
    page = (results / "report.html").read_text()
    for section in ("learn in pre-training", "Table 5", "Task format", "mean ratio of change",
                    "out-of-domain", "Compute", "Run settings"):
        assert section in page, section
    assert page.count("<img ") == len(FIGURES)
    assert "95% CI" in page and "Fine-tuning on <b>classification</b> tasks changed" in page
