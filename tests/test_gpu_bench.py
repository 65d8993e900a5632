"""benchmarks/gpu_bench.py on a tiny model on the CPU, and scripts/cost_estimate.py's
arithmetic on hand-made rates and a hand-made grid (known answers)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_cost_script():
    spec = importlib.util.spec_from_file_location("cost_estimate",
                                                  ROOT / "scripts" / "cost_estimate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cost = load_cost_script()


def numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_tiny_cpu_run_and_its_estimate(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--tiny", "--device", "cpu",
         "--budget-s", "1", "--threads", "1", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads(out.read_text())
    assert bench["tiny"] is True and bench["device"] == "cpu" and bench["gpu_name"] is None
    assert not bench["errors"] and not bench["skipped"]
    assert bench["model"]["config"]["num_hidden_layers"] == 2
    expected = {"sft_xsum", "sft_xsum_grouped", "sft_xsum_foreach", "sft_short"} | {
        f"{kind}_{dtype}{suffix}" for dtype in ("fp32", "bf16") for kind, suffix in
        (("generate", "_short"), ("generate", "_long"), ("classify", ""),
         ("classify", "_short"), ("mc", ""))}
    assert set(bench["measurements"]) == expected
    for name, m in bench["measurements"].items():
        assert m["settings"] and m["results"]["seconds"] > 0, name
        values = list(numbers(m["results"]))
        assert all(math.isfinite(v) and v >= 0 for v in values), (name, m["results"])
    sft = bench["measurements"]["sft_xsum"]["results"]
    assert sft["tokens_per_s"] > 0 and sft["mfu"] is None  # no peak FLOP/s for a CPU
    assert bench["measurements"]["sft_xsum_grouped"]["results"]["padding_share"] < sft[
        "padding_share"]
    gen = bench["measurements"]["generate_fp32_short"]["results"]
    assert gen["new_tokens_per_row"] == gen_settings(bench)["max_new_tokens"]  # no early stop
    assert bench["measurements"]["mc_bf16"]["results"]["items_per_s"] > 0

    block = cost.render(bench, yaml.safe_load((ROOT / "config/olmo1b.yaml").read_text()),
                        schema(), "gpu.json", "config/olmo1b.yaml")
    assert "**Not a GPU measurement.**" in block and "| **total** |" in block


def gen_settings(bench):
    return bench["measurements"]["generate_fp32_short"]["settings"]


def schema():
    return yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


# --- known answers -----------------------------------------------------------------------------
def hand_bench(speedup_bf16: float = 2.0) -> dict:
    """A prompt's pass costs tokens / 1000 s; a training step tokens / 1000 s; a new token
    0.01 s; a multiple-choice item 0.5 s. bf16 scoring takes half the time."""
    m = {"sft_short": {"tokens_per_step": 1000, "s_per_step": 1.0},
         "sft_xsum": {"tokens_per_step": 4000, "s_per_step": 4.0}}
    for dtype, f in (("fp32", 1.0), ("bf16", 1 / speedup_bf16)):
        m[f"classify_{dtype}_short"] = {"mean_prompt_tokens": 100, "s_per_item": 0.1 * f}
        m[f"classify_{dtype}"] = {"mean_prompt_tokens": 1000, "s_per_item": 1.0 * f}
        m[f"generate_{dtype}_short"] = {"mean_prompt_tokens": 100, "new_tokens_per_row": 10,
                                        "s_per_item": (0.1 + 10 * 0.01) * f}
        m[f"generate_{dtype}_long"] = {"mean_prompt_tokens": 1000, "new_tokens_per_row": 10,
                                       "s_per_item": (1.0 + 10 * 0.01) * f}
        m[f"mc_{dtype}"] = {"mean_context_tokens": 100, "s_per_item": 0.5 * f}
    return {"tiny": True, "gpu_name": None, "model": {"n_params": 1},
            "measurements": {k: {"results": v} for k, v in m.items()}}


HAND_CONFIG = {
    "models": {"m": {"source": "hub", "repo": "x/y", "steps": [1, 2]}},  # 2 checkpoints
    "tasks": {
        "nli": {"type": "classification", "template": "nli", "labels": ["a", "b"],
                "train": "mnli", "id": ["mnli_matched"], "ood": ["rte"]},
        "summ": {"type": "generation", "template": "summarization", "max_new_tokens": 10,
                 "train": None, "id": ["xsum_test"]},
    },
    "finetune": {"epochs": 2, "batch_size": 10, "lr": [1e-5, 1e-6], "max_examples": 100,
                 "max_length": 2048, "seeds": [1]},
    "evaluate": {"formats": ["default"], "base_shots": [0], "finetuned_shots": [0],
                 "max_items": 50},
    "analysis": {"compare": {"format": "default"}},
}


@pytest.fixture
def hand_tables(monkeypatch):
    monkeypatch.setattr(cost, "TEMPLATE", 0)
    monkeypatch.setattr(cost, "EXAMPLE_TOKENS", {
        "mnli": (49, 0),  # + EOS: 50 tokens an example, 500 a step
        "mnli_matched": (100, 1), "rte": (200, 1), "xsum_test": (1000, 0)})


def test_known_answer(hand_tables):
    est = cost.estimate(hand_bench(), HAND_CONFIG, schema())
    rows = {r["what"]: r for r in est["rows"]}
    assert set(rows) == {"fine-tune nli", "evaluate base", "evaluate fine-tuned"}
    # 2 checkpoints x 1 seed x 2 learning rates; 100 examples / batch 10 x 2 epochs; 0.5 s a step
    train = rows["fine-tune nli"]
    assert (train["runs"], train["steps"], train["tokens_per_step"]) == (4, 20, 500)
    assert train["hours"]["fp32"] == pytest.approx(4 * 20 * 0.5 / 3600)
    # per checkpoint, 50 items each (max_items): mnli_matched 0.1 s, rte 0.2 s, xsum_test
    # 1.0 s prefill + 10 new tokens x 0.01 s; base and the fine-tuned model score all three
    per_checkpoint = 50 * 0.1 + 50 * 0.2 + 50 * (1.0 + 10 * 0.01)
    for kind in ("base", "fine-tuned"):
        row = rows[f"evaluate {kind}"]
        assert row["items"] == 2 * 3 * 50 and row["cells"] == 2 * 3
        assert row["prompt_tokens"] == 2 * 50 * (100 + 200 + 1000)
        assert row["new_tokens"] == 2 * 50 * 10
        assert row["hours"]["fp32"] == pytest.approx(2 * per_checkpoint / 3600)
        assert row["hours"]["bf16"] == pytest.approx(per_checkpoint / 3600)
    total = sum(r["hours"]["fp32"] for r in est["rows"])
    assert total == pytest.approx((40 + 2 * 2 * per_checkpoint) / 3600)  # 0.0944 h


def test_prompt_length_follows_the_truncation_policy():
    # XSum: a 546-token query, 579-token demonstrations; 4 shots do not fit 2048 - 60 tokens,
    # so whole demonstrations are dropped: 2 stay
    assert cost.prompt_tokens("xsum_test", 0, 60) == 531 + cost.TEMPLATE
    assert cost.prompt_tokens("xsum_test", 4, 60) == 546 + 2 * 579
    assert cost.prompt_tokens("mnli_matched", 4, 1) == 48 + 4 * (48 + 1 + 2)


def test_decode_time_never_falls_with_prompt_length():
    bench = hand_bench()
    long_ = bench["measurements"]["generate_fp32_long"]["results"]
    long_["s_per_item"] = 1.0 + 10 * 0.001  # decoded faster after the longer prompt
    rates = cost.Rates(bench, "fp32")
    assert rates.decode == (pytest.approx(0.01), 0.0)  # the slower one, flat


def write_inputs(tmp_path):
    bench, cfg = tmp_path / "gpu.json", tmp_path / "config.yaml"
    bench.write_text(json.dumps(hand_bench()))
    cfg.write_text(yaml.safe_dump(HAND_CONFIG))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{cost.START}\nstale numbers\n{cost.END}\n\nafter\n")
    return ["--bench", str(bench), "--config", str(cfg), "--readme", str(readme)], readme


def test_check_fails_on_a_stale_block_and_passes_once_rewritten(tmp_path, hand_tables, capsys):
    args, readme = write_inputs(tmp_path)
    assert cost.main([*args, "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert "stale numbers" in readme.read_text()  # --check changes nothing
    assert cost.main(args) == 0
    text = readme.read_text()
    assert "stale numbers" not in text and text.endswith("\n\nafter\n")
    assert "**Not a GPU measurement.**" in text
    assert cost.main([*args, "--check"]) == 0


def test_readme_block_matches_the_committed_measurement():
    assert cost.main(["--check", "--bench", str(ROOT / "benchmarks/gpu.json"),
                      "--config", str(ROOT / "config/olmo1b.yaml")]) == 0
