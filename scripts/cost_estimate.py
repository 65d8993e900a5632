"""GPU-hours of a study's grid, from the rates benchmarks/gpu_bench.py measured; written into
README.md between the cost-estimate markers.

    python scripts/cost_estimate.py --bench benchmarks/gpu.json --config config/olmo1b.yaml
    python scripts/cost_estimate.py --check     # exit 1 when README's block is out of date

The work is counted from the config as the workflow lays it out (workflow/rules/common.smk:
a fine-tuning candidate per checkpoint x training task x seed x learning rate, one
instruction tuning per checkpoint, one evaluation per checkpoint x tuning over the sets and
(format, shots) cells amuro.tasks.plan_cells gives). What the config does not hold (split
sizes, prompt lengths) is in the tables below, and every assumption is printed with the result.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from amuro.tasks import plan_cells  # noqa: E402

START, END = "<!-- cost-estimate:start -->", "<!-- cost-estimate:end -->"
CONTEXT = 2048  # OLMo-1B's context: every prompt is fitted into it (amuro.truncation)
SEPARATOR = 2  # tokens of the demonstration separator "\n\n"
TEMPLATE = 15  # tokens a prompt template adds around its input
# Scored items: the size of each set's scored split (dataset cards); config max_items caps it.
TEST_ITEMS = {
    "xsum_test": 11334, "xlsum": 11535, "cnn_dailymail": 11490, "socialiqa_dev": 1954,
    "sciq": 1000, "tweetqa": 1086, "mnli_matched": 9815, "mnli_mismatched": 9832, "rte": 277,
    "gpt3nli": 30000, "paws_test": 8000, "qqp": 40430, "stsb": 1500, "arc_easy": 570,
    "arc_challenge": 299, "openbookqa": 500, "sciq_mc": 1000, "hellaswag": 10042,
    "boolq": 3270, "llmbar_natural": 100, "llmbar_neighbor": 134, "llmbar_gptinst": 92,
    "llmbar_gptout": 47, "llmbar_manual": 46,
}
# (input tokens, answer tokens) of one example: mean characters of the input and answer
# fields in the ../shared/data samples / 4 characters per token; sets without a sample take
# their sibling's (xlsum as xsum_test, gpt3nli as mnli). 0-shot prompt = input + TEMPLATE.
EXAMPLE_TOKENS = {
    "xsum_test": (531, 31), "xlsum": (531, 31), "cnn_dailymail": (841, 49),
    "socialiqa_dev": (25, 8), "sciq": (120, 19), "tweetqa": (41, 8), "mnli_matched": (33, 1),
    "mnli_mismatched": (33, 1), "rte": (77, 1), "gpt3nli": (33, 1), "paws_test": (56, 1),
    "qqp": (28, 1), "stsb": (17, 1), "arc_easy": (29, 6), "arc_challenge": (33, 7),
    "openbookqa": (14, 4), "sciq_mc": (136, 3), "hellaswag": (27, 14), "boolq": (154, 1),
    "llmbar_natural": (206, 1), "llmbar_neighbor": (224, 1), "llmbar_gptinst": (550, 1),
    "llmbar_gptout": (151, 1), "llmbar_manual": (406, 1),
    # training sets: as their test sets
    "xsum": (531, 31), "socialiqa": (25, 8), "mnli": (33, 1), "paws": (56, 1),
    "tulu": (700, 0),  # ASSUMED: a TULU v2 conversation, ~700 tokens after the 2,048 cut
}
PAPER_SFT_HOURS = 277.1  # Table 2: fine-tuning + evaluation of the 4 SFT tasks, A100-hours


def schema_default(path: tuple[str, ...], schema: dict):
    """The config schema's default for a key (set_default fills these in the workflow);
    None for a key the schema does not know."""
    node = schema
    for key in path:
        for branch in [node, *node.get("oneOf", []), *node.get("anyOf", [])]:
            if key in branch.get("properties", {}):
                node = branch["properties"][key]
                break
        else:
            return None
    return node.get("default")


def setting(cfg: dict, schema: dict, *path: str):
    node = cfg
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return schema_default(path, schema)
        node = node[key]
    return node


def example_tokens(ds: str) -> tuple[int, int]:
    if ds not in EXAMPLE_TOKENS:
        raise SystemExit(f"error: no prompt length for dataset {ds!r}: add it to "
                         "EXAMPLE_TOKENS in scripts/cost_estimate.py")
    return EXAMPLE_TOKENS[ds]


def prompt_tokens(ds: str, shots: int, reserve: int) -> int:
    """Mean prompt length after amuro's truncation policy: whole demonstrations are dropped
    until the prompt fits the context minus the reserve, then the input is cut."""
    inp, ans = example_tokens(ds)
    query, room = inp + TEMPLATE, CONTEXT - reserve
    if query >= room:
        return room
    demo = query + ans + SEPARATOR
    return query + min(shots, (room - query) // demo) * demo


# --- rates -------------------------------------------------------------------------------------
def measurement(bench: dict, name: str) -> dict:
    m = bench.get("measurements", {}).get(name)
    if m is None:
        raise SystemExit(f"error: {name!r} missing from the benchmark file "
                         f"(errors: {bench.get('errors') or 'none'})")
    return m["results"]


def line(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """(intercept, slope) through two points; flat when they share x."""
    slope = (y2 - y1) / (x2 - x1) if x2 != x1 else 0.0
    return y1 - slope * x1, slope


class Rates:
    """Seconds per training step and per scored item, from the measurements."""

    def __init__(self, bench: dict, dtype: str):
        long_, short = measurement(bench, "sft_xsum"), measurement(bench, "sft_short")
        self.step = line(short["tokens_per_step"], short["s_per_step"],
                         long_["tokens_per_step"], long_["s_per_step"])
        if self.step[0] < 0:  # noise: fall back to time proportional to tokens
            self.step = (0.0, long_["s_per_step"] / long_["tokens_per_step"])
        # a prompt's forward pass: a line in its length through the two classify runs
        # (a file without the short run, as the first H200 run: time proportional to length)
        cls = [measurement(bench, f"classify_{dtype}{k}") if k == "" or
               f"classify_{dtype}{k}" in bench["measurements"] else None
               for k in ("_short", "")]
        self.prefill = ((-1.0, 0.0) if cls[0] is None else
                        line(*(v for c in cls for v in (c["mean_prompt_tokens"],
                                                        c["s_per_item"]))))
        if self.prefill[0] < 0:
            self.prefill = (0.0, cls[1]["s_per_item"] / cls[1]["mean_prompt_tokens"])
        gens = [measurement(bench, f"generate_{dtype}_{k}") for k in ("short", "long")]
        # seconds per new token at a prompt length: what generation took beyond its prefill
        points = [(g["mean_prompt_tokens"],
                   max(0.0, g["s_per_item"] - self.prefill_s(g["mean_prompt_tokens"]))
                   / g["new_tokens_per_row"]) for g in gens]
        self.decode = line(*points[0], *points[1])
        if self.decode[1] < 0:  # longer prompts cannot decode faster: take the slower
            self.decode = (max(d for _, d in points), 0.0)
        self.mc = measurement(bench, f"mc_{dtype}")

    def step_s(self, tokens_per_step: float) -> float:
        return self.step[0] + self.step[1] * tokens_per_step

    def prefill_s(self, tokens: float) -> float:
        return self.prefill[0] + self.prefill[1] * tokens

    def item_s(self, kind: str, tokens: int, new_tokens: int) -> float:
        if kind == "classification":
            return self.prefill_s(tokens)
        if kind == "multiple_choice":  # the measured item, plus any longer context
            extra = max(0.0, tokens - self.mc["mean_context_tokens"])
            return self.mc["s_per_item"] + extra * self.prefill[1]
        return self.prefill_s(tokens) + new_tokens * (self.decode[0] + self.decode[1] * tokens)


# --- the grid ----------------------------------------------------------------------------------
def training_runs(cfg: dict, schema: dict) -> list[dict]:
    """One entry per kind of training run: how many, steps each, tokens per step."""
    ft, runs = cfg["finetune"], []
    checkpoints = sum(len(m.get("steps", [])) + len(m.get("revisions") or {})
                      for m in cfg["models"].values())
    seeds = setting(cfg, schema, "finetune", "seeds")
    for name, task in cfg["tasks"].items():
        if not task.get("train"):
            continue
        s = {**ft, **(setting(cfg, schema, "finetune", "per_task") or {}).get(name, {})}
        lrs = s["lr"] if isinstance(s["lr"], list) else [s["lr"]]
        pack = s.get("pack") or schema_default(("finetune", "pack"), schema)
        inp, ans = example_tokens(task["train"])
        per_example = min(inp + TEMPLATE + ans + 1, s["max_length"])  # + EOS
        records = s["batch_size"] * pack
        runs.append({"what": f"fine-tune {name}", "runs": checkpoints * len(seeds) * len(lrs),
                     "steps": math.ceil(s["max_examples"] / records) * s["epochs"],
                     "tokens_per_step": records * per_example,
                     "note": f"{checkpoints} checkpoints × {len(seeds)} seed(s) × {len(lrs)} "
                             f"learning rate(s); {s['max_examples']:,} examples, {s['epochs']} "
                             f"epochs, batch {records}, {per_example} tokens/example"})
    it = cfg.get("instruction_tuning")
    if it:
        def get(key):
            return it.get(key, schema_default(("instruction_tuning", key), schema))
        n = min(get("max_examples"), cfg["datasets"].get(it["dataset"], {})
                .get("max_items", {}).get("train", get("max_examples")))
        per_example = min(example_tokens(it["dataset"])[0], get("max_length"))
        runs.append({"what": "instruction tuning", "runs": checkpoints,
                     "steps": math.ceil(n / get("batch_size")) * get("epochs"),
                     "tokens_per_step": get("batch_size") * per_example,
                     "note": f"{checkpoints} checkpoints; {n:,} conversations, {get('epochs')} "
                             f"epochs, batch {get('batch_size')}, {per_example} tokens each"})
    return runs


def eval_cells(cfg: dict, schema: dict):
    """(tuning kind, set, task, shots) of every scored cell, with its item count, per
    checkpoint: base, each fine-tuned model (task x seed) and the instruction-tuned one.
    Mirrors eval_sets_for and eval_plan in workflow/rules/common.smk."""
    def ev(key):
        return setting(cfg, schema, "evaluate", key)

    tasks = cfg["tasks"]
    trained = [t for t in tasks if tasks[t].get("train")]
    seeds = setting(cfg, schema, "finetune", "seeds")
    it = cfg.get("instruction_tuning")
    bench_tasks = (it or {}).get("eval") or [t for t in tasks if t not in trained]
    tunings = [("base", None)] + [("fine-tuned", t) for t in trained for _ in seeds]
    tunings += [("instruction-tuned", "it")] if it else []
    for kind, train in tunings:
        sets = []
        for name, task in tasks.items():
            if kind == "instruction-tuned" and name not in bench_tasks:
                continue
            for role, names in (("ID", task["id"]), ("OOD", task.get("ood") or [])):
                sets += [(name, ds, role) for ds in names
                         if kind != "fine-tuned" or name == train or role == "ID"]
        plan = {"formats": ev("formats"),
                "shots": ev("base_shots") if kind == "base" else ev("finetuned_shots")}
        plan["zero_shot_formats"] = ev("base_zero_shot_formats" if kind == "base"
                                       else "finetuned_zero_shot_formats")
        if kind != "base":
            if ev("finetuned_formats") == "in_domain":
                plan["set_formats"] = {ds: [cfg["analysis"]["compare"]["format"]]
                                       for name, ds, role in sets
                                       if not (name == train and role == "ID")}
        for name, ds, _ in sets:
            caps = [TEST_ITEMS.get(ds), ev("max_items"),
                    cfg.get("datasets", {}).get(ds, {}).get("max_items", {}).get("test")]
            if caps[0] is None:
                raise SystemExit(f"error: no split size for dataset {ds!r}: add it to "
                                 "TEST_ITEMS in scripts/cost_estimate.py")
            items = min(c for c in caps if c)
            for _fmt, shots in plan_cells(plan, ds):
                yield kind, ds, tasks[name], shots, items


def estimate(bench: dict, cfg: dict, schema: dict) -> dict:
    """Hours per row: training (bf16 autocast, as finetune runs) and evaluation with the
    scoring rates in fp32 (as amuro.evaluate runs today) and in bf16 weights."""
    rates = {d: Rates(bench, d) for d in ("fp32", "bf16")}
    rows = []
    for run in training_runs(cfg, schema):
        hours = run["runs"] * run["steps"] * rates["fp32"].step_s(run["tokens_per_step"]) / 3600
        rows.append({**run, "hours": {"fp32": hours, "bf16": hours}})
    models = sum(len(m.get("steps", [])) + len(m.get("revisions") or {})
                 for m in cfg["models"].values())
    evals: dict[str, dict] = {}
    for kind, ds, task, shots, items in eval_cells(cfg, schema):
        new = task.get("max_new_tokens", 60) if task["type"] == "generation" else 0
        reserve = {"generation": new, "classification": 1}.get(
            task["type"], example_tokens(ds)[1] + 1)
        tokens = prompt_tokens(ds, shots, reserve)
        row = evals.setdefault(kind, {"what": f"evaluate {kind}", "cells": 0, "items": 0,
                                      "prompt_tokens": 0, "new_tokens": 0,
                                      "hours": {"fp32": 0.0, "bf16": 0.0}})
        row["cells"] += models
        row["items"] += models * items
        row["prompt_tokens"] += models * items * tokens
        row["new_tokens"] += models * items * new
        for dtype, r in rates.items():
            row["hours"][dtype] += models * items * r.item_s(task["type"], tokens, new) / 3600
    rows += evals.values()
    return {"rows": rows, "checkpoints": models}


# --- the README block --------------------------------------------------------------------------
def fmt_hours(h: float) -> str:
    return f"{h:,.1f}" if h >= 10 else f"{h:.2f}"


def measured_line(bench: dict) -> str:
    m = bench["measurements"]
    sft, gen = m["sft_xsum"]["results"], m["generate_fp32_short"]["results"]
    parts = [f"SFT {sft['tokens_per_s']:,.0f} tokens/s at XSum lengths (batch 8"
             + (f", MFU {sft['mfu']:.0%})" if sft.get("mfu") else ")")]
    if "sft_xsum_grouped" in m:
        parts.append(f"{m['sft_xsum_grouped']['results']['tokens_per_s']:,.0f} with "
                     "length-grouped batches")
    if "sft_xsum_foreach" in m:
        parts.append(f"{m['sft_xsum_foreach']['results']['tokens_per_s']:,.0f} with "
                     "finetune.main's default (non-fused) AdamW")
    for dtype in ("fp32", "bf16"):
        gen = m[f"generate_{dtype}_short"]["results"]
        mc = m[f"mc_{dtype}"]["results"]
        parts.append(f"{dtype} scoring: greedy {gen['new_tokens_per_s']:,.0f} new tokens/s "
                     f"(batch 32, ~{gen['mean_prompt_tokens']:.0f}-token prompts), multiple "
                     f"choice {mc['items_per_s']:,.0f} items/s")
    return "; ".join(parts)


def render(bench: dict, cfg: dict, schema: dict, bench_path: str, config_path: str) -> str:
    est = estimate(bench, cfg, schema)
    gpu = bench.get("gpu_name")
    real = gpu and not bench.get("tiny")
    out = [START, ""]
    if real:
        out.append(f"Measured by `{bench_path}` on one **{gpu}** (torch {bench['torch']}, "
                   f"transformers {bench['transformers']}, {bench['started'][:10]}): "
                   f"{measured_line(bench)}.")
        if bench.get("caveat"):
            out += ["", f"**Caveat.** {bench['caveat']}"]
    else:
        out.append(f"**Not a GPU measurement.** `{bench_path}` is a "
                   f"{'`--tiny` ' if bench.get('tiny') else ''}run on "
                   f"{gpu or 'a CPU'} ({bench['model']['n_params']:,} parameters), so the hours "
                   "below only show the arithmetic; run `bash benchmarks/gpu.sh` on a GPU and "
                   "regenerate this block.")
    unit = f"{gpu}-hours" if real else "hours (not GPU)"
    it = cfg.get("instruction_tuning")
    it_note = (f"Instruction tuning assumes {example_tokens(it['dataset'])[0]} tokens per "
               f"{it['dataset']} conversation (not measured). " if it else "")
    out += ["", f"| work (`{config_path}`) | amount | {unit}, scoring fp32 (today) "
            "| scoring bf16 |", "|---|---|---:|---:|"]
    total = {"fp32": 0.0, "bf16": 0.0}
    sft_block = {"fp32": 0.0, "bf16": 0.0}
    for row in est["rows"]:
        if "steps" in row:
            amount = f"{row['runs']} runs × {row['steps']:,} steps ({row['note']})"
        else:
            amount = (f"{row['items']:,} scored items ({row['cells']:,} cells), "
                      f"{row['prompt_tokens'] / 1e9:.2f}B prompt tokens, "
                      f"{row['new_tokens'] / 1e9:.3f}B new tokens at most")
        out.append(f"| {row['what']} | {amount} | {fmt_hours(row['hours']['fp32'])} | "
                   f"{fmt_hours(row['hours']['bf16'])} |")
        for d in total:
            total[d] += row["hours"][d]
            if "instruction" not in row["what"]:
                sft_block[d] += row["hours"][d]
    prefill_note = ("a line in its length through the two `classify` runs"
                    if "classify_fp32_short" in bench["measurements"] else
                    "time proportional to its length, from the one `classify` run")
    out.append(f"| **total** | | **{fmt_hours(total['fp32'])}** | "
               f"**{fmt_hours(total['bf16'])}** |")
    out += ["", f"The SFT block alone (fine-tuning, base and fine-tuned evaluation, the part "
            f"of Table 2 the paper puts at {PAPER_SFT_HOURS} A100-hours): "
            f"{fmt_hours(sft_block['fp32'])} {unit} as amuro runs today, "
            f"{fmt_hours(sft_block['bf16'])} with bf16 scoring.", "",
            "Assumptions: training steps cost what `sft_xsum` and `sft_short` measured "
            "(fused AdamW, random batches of 8, bf16 autocast over fp32 weights; "
            "finetune.main builds torch's default AdamW today, `sft_xsum_foreach`), a straight "
            "line in tokens per step through the two; the learning-rate grid trains every "
            "candidate in full, held-out losses (500 items a run) are not counted. Evaluation "
            f"scores full test splits (sizes from the dataset cards, capped by the config's "
            f"`max_items`; demonstrations carved out of a test split are not subtracted) with "
            f"batch 32 and per-item demonstrations; prompt lengths are the mean input of the "
            f"`shared/data` samples (characters / 4) + {TEMPLATE} template tokens, k-shot "
            f"prompts add k demonstrations and drop whole ones to fit {CONTEXT} tokens "
            "(amuro.truncation). A prompt's forward pass costs " + prefill_note +
            " (classification is that pass alone); generation adds "
            "`max_new_tokens` decoded tokens per item (every item runs to the limit: an upper "
            "bound) at a per-token time that is a line through the two `generate` prompt "
            "lengths (flat at the slower one if the longer decoded faster); multiple choice "
            "costs the measured item plus any longer context. " + it_note +
            "Random weights: timings do not depend on the values. Regenerate with "
            f"`python scripts/cost_estimate.py --bench {bench_path} --config {config_path}`.",
            "", END]
    # prose wrapped as the rest of README (tables cannot be)
    return "\n".join(line if line.startswith("|") else
                     textwrap.fill(line, 100, break_long_words=False, break_on_hyphens=False)
                     for line in out)


def shown(path: str) -> str:
    """A path as the block names it: relative to the repository, wherever this runs from."""
    full = Path(path).resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else path


def replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"error: README has no {START} ... {END} block")
    return pattern.sub(lambda _: block, text, count=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="benchmarks/gpu.json")
    ap.add_argument("--config", default="config/olmo1b.yaml")
    ap.add_argument("--schema", default=str(ROOT / "workflow/schemas/config.schema.yaml"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the README block differs from what the files give")
    ap.add_argument("--print", action="store_true", help="print the block, change nothing")
    args = ap.parse_args(argv)
    bench = json.loads(Path(args.bench).read_text())
    cfg = yaml.safe_load(Path(args.config).read_text())
    schema = yaml.safe_load(Path(args.schema).read_text())
    block = render(bench, cfg, schema, shown(args.bench), shown(args.config))
    if args.print:
        print(block)
        return 0
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, block)
    if args.check:
        if new != text:
            print(f"error: {readme}: the cost-estimate block is out of date; run python "
                  f"scripts/cost_estimate.py --bench {args.bench} --config {args.config}",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        readme.write_text(new, encoding="utf-8")
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
