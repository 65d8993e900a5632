"""Fine-tuning under preemption, and data-parallel fine-tuning, as real processes.

A run held after a given step (AMURO_FAULT_HOLD_AT_STEP) is killed the way a cluster kills a
job, then the same command is run again; the model and its loss log must equal those of a run
that was never interrupted, bit for bit, on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import NLI_TASK as NLI
from safetensors.torch import load_file

from amuro.io import sha256_file

# 24 of the series' 48 NLI records, batch 8: 3 steps an epoch, 6 in all; a stop at step 4 is
# inside epoch 2.
SETTINGS = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "max_length": 128, "seed": 1,
            "max_examples": 24, "warmup_ratio": 0.2}
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
       "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def command(root: Path, out: Path, state: Path | None, settings=SETTINGS, *extra) -> list[str]:
    cmd = [sys.executable, "-m", "amuro.finetune", "--checkpoint", str(root / "ckpt" / "step10"),
           "--train", str(root / "data" / "tw_nli" / "train.jsonl"), "--task", json.dumps(NLI),
           "--settings", json.dumps(settings), "--out", str(out), *extra]
    return cmd + (["--state-dir", str(state)] if state else [])


def run(cmd, hold: str | None = None) -> subprocess.CompletedProcess:
    env = {**ENV, **({"AMURO_FAULT_HOLD_AT_STEP": hold} if hold else {})}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def run_and_kill(cmd, state: Path, hold: str, sig: int) -> subprocess.CompletedProcess:
    """Start a run held after a step, wait until it holds, send it `sig`."""
    proc = subprocess.Popen(cmd, env={**ENV, "AMURO_FAULT_HOLD_AT_STEP": hold},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (state / "HOLDING").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached the held step"
        time.sleep(0.1)
    assert json.loads((state / "HOLDING").read_text())["pid"] == proc.pid
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def reference(nli_series, tmp_path_factory):
    """An uninterrupted run (with state saving on, which must not change anything)."""
    base = tmp_path_factory.mktemp("reference")
    proc = run(command(nli_series, base / "model", base / "state", SETTINGS,
                       "--save-every-steps", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (base / "state").exists()  # removed once the model is saved
    return base / "model"


def assert_same_model(out: Path, reference: Path):
    assert sha256_file(out / "model.safetensors") == sha256_file(reference / "model.safetensors")
    assert (out / "train_log.csv").read_text() == (reference / "train_log.csv").read_text()


def test_sigterm_saves_state_and_the_rerun_matches_an_uninterrupted_run(nli_series, reference,
                                                                       tmp_path):
    out, state = tmp_path / "model", tmp_path / "state"
    cmd = command(nli_series, out, state)  # no interval saves: only the signal saves
    killed = run_and_kill(cmd, state, "nli:4", signal.SIGTERM)
    assert killed.returncode == 143, killed.stderr[-3000:]
    assert "stopped by SIGTERM after step 4" in killed.stderr
    assert not out.exists()  # no half-written output
    assert json.loads((state / "LATEST").read_text())["step"] == 4

    rerun = run(cmd, hold="nli:4")  # the hook only holds a fresh run, never a resumed one
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from step 4" in rerun.stderr
    assert_same_model(out, reference)
    assert json.loads((out / "settings.json").read_text())["resumed_from_step"] == 4
    assert not state.exists()


def test_sigkill_loses_only_the_steps_after_the_last_interval_save(nli_series, reference, tmp_path):
    out, state = tmp_path / "model", tmp_path / "state"
    cmd = command(nli_series, out, state, SETTINGS, "--save-every-steps", "2")
    killed = run_and_kill(cmd, state, "nli:5", signal.SIGKILL)  # no chance to save
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((state / "LATEST").read_text())["step"] == 4

    rerun = run(cmd)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from step 4" in rerun.stderr  # step 5 is trained again
    assert_same_model(out, reference)


def test_state_from_different_settings_is_never_resumed(nli_series, reference, tmp_path):
    out, state = tmp_path / "model", tmp_path / "state"
    other = {**SETTINGS, "lr": 1e-3}
    killed = run_and_kill(command(nli_series, tmp_path / "other", state, other), state, "nli:4",
                          signal.SIGTERM)
    assert killed.returncode == 143 and (state / "LATEST").exists()

    rerun = run(command(nli_series, out, state))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "saved state is from a different run" in rerun.stderr
    assert "resumed" not in rerun.stderr
    assert_same_model(out, reference)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_take_the_same_steps_as_one(nli_series, reference, tmp_path, strategy):
    """torchrun with 2 processes (gloo on CPU): the global batch is split between them and
    the loss normalised over the whole batch, so the run equals the single-process one up to
    the order of float sums. 24 examples in batches of 8 split 4 + 4."""
    out = tmp_path / "model"
    proc = run(command(nli_series, out, None, {**SETTINGS, "parallel": strategy}, "--gpus", "2",
                       "--threads", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"x2 {strategy}" in proc.stderr
    info = json.loads((out / "settings.json").read_text())
    assert info["processes"] == 2
    mine, single = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert mine.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(mine[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    losses = [float(r.split(",")[2]) for r in (out / "train_log.csv").read_text().split()[1:]]
    ref = [float(r.split(",")[2]) for r in (reference / "train_log.csv").read_text().split()[1:]]
    assert losses == pytest.approx(ref, rel=1e-4)


def test_a_process_left_without_examples_still_takes_its_part(nli_series, tmp_path):
    """17 examples in batches of 8: the last step has one example, so one of two processes
    has none; the run must still equal the single-process one."""
    settings = {**SETTINGS, "max_examples": 17, "epochs": 1}
    single = run(command(nli_series, tmp_path / "one", None, settings))
    double = run(command(nli_series, tmp_path / "two", None, settings, "--gpus", "2"))
    assert single.returncode == 0 and double.returncode == 0, double.stderr[-3000:]
    one, two = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
