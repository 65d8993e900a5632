"""Shared fixtures: a tiny random OLMo checkpoint and small eval sets, built in seconds; the toy
study run once per session (`local_toy_study`); a real one-node SLURM cluster (`slurm_cluster`)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Import `amuro` from this checkout even when it is not pip-installed into the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402
from slurm_cluster import slurm_cluster  # noqa: E402, F401  (a session fixture: a real SLURM)

LABEL_WORDS = ("entailment", "neutral", "contradiction", "yes", "no")

SENTENCES = [
    "The cat sat on the mat.",
    "A dog runs in the park every morning.",
    "The river flows past the old mill.",
    "Anna reads a book about the sea.",
    "Is the sky blue? yes. Is grass red? no.",
    "The premise entails the hypothesis: entailment, neutral or contradiction.",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Folder with a tiny random OlmoForCausalLM (safetensors) and its BPE tokenizer.

    The label words are single tokens; context length is 128 tokens.
    """
    import torch
    from transformers import OlmoConfig, OlmoForCausalLM

    from amuro.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tiny_checkpoint")
    tokenizer = train_tokenizer(SENTENCES * 20, vocab_size=400, whole_words=LABEL_WORDS)
    eos = tokenizer.eos_token_id
    config = OlmoConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    torch.manual_seed(0)
    model = OlmoForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


NLI_LABELS = ("entailment", "neutral", "contradiction")


def _nli_rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "fields": {"premise": SENTENCES[i % 4], "hypothesis": SENTENCES[(i + 1) % 4]},
            "target": NLI_LABELS[i % 3],
        }
        for i in range(n)
    ]


def _summ_rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "fields": {"passage": " ".join(SENTENCES[i % 4 : i % 4 + 2])},
            "target": SENTENCES[i % 4].rstrip("."),
        }
        for i in range(n)
    ]


@pytest.fixture
def eval_sets(tmp_path):
    """Two small eval sets (NLI classification, summarization generation) as EvalSet objects."""
    from amuro.tasks import EvalSet, TaskSpec

    nli = TaskSpec("nli", "classification", "nli", labels=NLI_LABELS, metric="accuracy")
    summ = TaskSpec("summ", "generation", "summarization", metric="rougeL", max_new_tokens=8)
    return {
        "tw_nli": EvalSet(
            "tw_nli",
            nli,
            "ID",
            _write_jsonl(tmp_path / "nli_test.jsonl", _nli_rows("t", 6)),
            _write_jsonl(tmp_path / "nli_demo.jsonl", _nli_rows("d", 8)),
        ),
        "tw_summ": EvalSet(
            "tw_summ",
            summ,
            "OOD",
            _write_jsonl(tmp_path / "summ_test.jsonl", _summ_rows("t", 5)),
            _write_jsonl(tmp_path / "summ_demo.jsonl", _summ_rows("d", 8)),
        ),
    }


# ---- the toy study, run once per session ----------------------------------------------------


class ToyStudy:
    """A finished run of config/test/config.yaml: its working directory `work`, Snakemake's
    output (stdout and stderr) and its wall time `seconds`."""

    def __init__(self, work: Path, proc, seconds: float):
        self.work, self.seconds = work, seconds
        self.output = proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def local_toy_study(tmp_path_factory) -> ToyStudy:
    """The toy study run once per session with the local executor (`--cores 2`) and its jobs
    started from a zygote (as `make study` runs them), shared by the end-to-end test and the
    SLURM test, whose jobs start as plain processes: the two must agree byte for byte.
    Read-only: a test that runs Snakemake again (even a dry run) does it on a copy."""
    from test_workflow import TEST_CONFIG, snakemake

    work = tmp_path_factory.mktemp("local_toy_study") / "study"
    work.mkdir()
    t0 = time.monotonic()
    proc = snakemake("--cores", "2", "--configfile", str(TEST_CONFIG), "--directory", str(work),
                     zygote=True)
    return ToyStudy(work, proc, time.monotonic() - t0)


# ---- a small pre-trained series and NLI training data -------------------------------------

SERIES_MODEL = {"model_type": "olmo", "hidden_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}
SERIES_TRAIN = {"batch_size": 4, "seq_len": 64, "lr": 3e-3, "warmup_steps": 2, "vocab_size": 400,
                "log_every": 5}
NLI_TASK = {"name": "nli", "type": "classification", "template": "nli",
            "labels": ["entailment", "neutral", "contradiction"]}


@pytest.fixture(scope="session")
def nli_series(tmp_path_factory) -> Path:
    """A tiny-world series pre-trained here (checkpoints step0, step4, step10 under ckpt/) and
    its tw_nli data (48 training records under data/tw_nli/)."""
    from amuro.make_world import main as make_world_main
    from amuro.pretrain import main as pretrain_main

    root = tmp_path_factory.mktemp("series")
    make_world_main([
        "--people", "8", "--documents", "300", "--train-size", "48", "--demo-size", "4",
        "--test-size", "8", "--datasets", "tw_nli", "--corpus", str(root / "corpus.txt"),
        "--data-dir", str(root / "data"), "--summary", str(root / "summary.json"),
    ])
    pretrain_main([
        "--corpus", str(root / "corpus.txt"), "--out-dir", str(root / "ckpt"),
        "--save-steps", "0", "4", "10", "--model-config", json.dumps(SERIES_MODEL),
        "--train", json.dumps(SERIES_TRAIN), "--whole-words", *NLI_TASK["labels"],
    ])
    return root


@pytest.fixture
def cli_error(capsys):
    """Run an entry point that must fail on bad input; return its one-line error message
    after checking it is one line, starts with 'error: ' and exits with status 2."""
    from amuro.errors import run_cli

    def run(main, argv) -> str:
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        return err

    return run

