"""Loading and saving checkpoints, seeding, and thread settings shared by every step."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from amuro.checkpoints import load_checked, load_failure
from amuro.errors import AmuroError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Use exactly the cores the workflow gave this job."""
    torch.set_num_threads(max(1, int(threads)))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise AmuroError(f"{path}: no tokenizer files (tokenizer.json) in checkpoint folder")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # invalid tokenizer.json / tokenizer_config.json / config.json
        raise AmuroError(f"{path}: cannot load the tokenizer ({load_failure(err)})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, *,
               trust_remote_code: bool = False):
    """Load a causal LM from a local Hugging Face folder, safetensors only.

    No remote code unless the caller passes the source's explicit `trust_remote_code: true`.
    Refuses a checkpoint that would leave weights randomly initialised (missing tensors).
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise AmuroError(f"{path}: not a checkpoint folder (config.json missing)")
    if not any(path.glob("*.safetensors")):
        raise AmuroError(f"{path}: no .safetensors weights (pickle weights are refused)")
    return load_checked(path, dtype=dtype, use_safetensors=True,
                        trust_remote_code=trust_remote_code)


class Stopwatch:
    """Named wall-clock phases, so each step can report load time versus compute time."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self._t, 3)
        self._t = now


def process_cpu_seconds() -> float:
    """CPU seconds (user + system, all threads) this process has used. The cost table reads
    it because a job started from the zygote (amuro/zygote.py) runs in a child of the server,
    whose CPU time Snakemake's benchmark of the job's own process does not see."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)
