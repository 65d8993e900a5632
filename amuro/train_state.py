"""Resumable fine-tuning state, kept outside the job's declared output.

A cluster may stop a job at any moment (preemption, time limit, node failure). Fine-tuning
therefore saves, at a configured interval and when it receives SIGTERM, everything needed to
continue exactly where it stopped: the weights (safetensors), the optimizer and scheduler, the
random number generators and the position in the data. A rerun of the same job (Snakemake's
retry) loads it and produces the same model as an uninterrupted run. The folder is outside the
output, which Snakemake deletes when a job fails, and it is removed once the model is saved.

Layout of the folder: one `step<N>/` per save (`model.safetensors`, `optimizer.pt`,
`progress.pt`) and `LATEST`, a small JSON file naming the complete save and the fingerprint of
the run that made it. `LATEST` is replaced atomically after the save is complete, so a job
killed while saving leaves the previous save in force. A save whose fingerprint (settings,
task, training data, starting checkpoint) differs from the current run's is stale: it is
deleted, never resumed. `TrainingRun` is where training stands (step, epoch, next batch, loss
log), which it saves and restores whole; `SaveSchedule` says when to save.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from amuro import distributed
from amuro.errors import AmuroError
from amuro.io import read_json_object, write_json

LATEST = "LATEST"


def fingerprint(**identity) -> str:
    """A digest of what defines a run; two runs may share state only if these agree."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class StateStore:
    """Save and load a run's resumable state in `folder` (None: resuming disabled)."""

    def __init__(self, folder: str | Path | None, run_fingerprint: str, writer: bool = True):
        self.folder = Path(folder) if folder else None
        self.fingerprint = run_fingerprint
        self.writer = writer  # only one process of a distributed run writes

    def latest(self) -> Path | None:
        """The folder of the last complete save made by this same run, if any."""
        if self.folder is None or not (self.folder / LATEST).exists():
            return None
        meta = read_json_object(self.folder / LATEST, "resumable fine-tuning state")
        if meta.get("fingerprint") != self.fingerprint:
            print(f"[finetune] {self.folder}: saved state is from a different run (settings, "
                  "data or checkpoint changed); starting afresh", file=sys.stderr)
            if self.writer:
                self.clear()
            return None
        saved = self.folder / str(meta.get("dir", ""))
        if not (saved / "progress.pt").exists():
            raise AmuroError(f"{self.folder / LATEST}: field 'dir' names {saved}, which holds "
                             "no progress.pt; delete the folder to start afresh")
        return saved

    def save(self, step: int, weights: dict, optimizer: dict, progress: dict) -> Path | None:
        """Write one complete save, then point LATEST at it and drop older saves."""
        if self.folder is None or not self.writer:
            return None
        name = f"step{step:08d}"
        staging = self.folder / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for attempt in range(3):  # another run may remove an empty parent meanwhile (clear)
            try:
                staging.mkdir(parents=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        # safetensors refuses tensors that share memory (tied embeddings): save copies.
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()},
                  staging / "model.safetensors")
        torch.save(optimizer, staging / "optimizer.pt")
        torch.save(progress, staging / "progress.pt")
        final = self.folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        write_json(self.folder / LATEST, {"dir": name, "step": step,
                                          "fingerprint": self.fingerprint})
        for old in self.folder.glob("step*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def load_progress(saved: Path) -> dict:
        return torch.load(saved / "progress.pt", weights_only=True)

    @staticmethod
    def load_weights(saved: Path) -> tuple[dict, dict]:
        return (load_file(saved / "model.safetensors"),
                torch.load(saved / "optimizer.pt", weights_only=True))

    def clear(self) -> None:
        if self.folder is None or not self.writer:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        # A relative folder (resume/<model>/step<N>/<run>) leaves no empty parents behind.
        if not self.folder.is_absolute():
            for parent in list(self.folder.parents)[:-1]:
                try:
                    parent.rmdir()
                except OSError:  # not empty: another run's state, or gone already
                    break


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingRun:
    """Where training stands (step, epoch, next batch, loss log), saved and restored whole."""

    def __init__(self, model, optimizer, schedule, store: StateStore, ranks, generator):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.store, self.ranks, self.generator = store, ranks, generator
        self.step, self.epoch, self.next_batch, self.log = 0, 1, 0, []
        self.epoch_generator = None  # the data-order generator's state at the epoch's start
        self.resumed_from = None

    def epoch_order(self, epoch: int, n: int) -> list[int]:
        """The epoch's example order; a resumed epoch replays its order from the saved state."""
        if self.epoch_generator is not None and epoch == self.epoch:
            self.generator.set_state(self.epoch_generator)
        self.epoch, self.epoch_generator = epoch, self.generator.get_state()
        return torch.randperm(n, generator=self.generator).tolist()

    def finished_batch(self, epoch: int, next_batch: int, log_row) -> None:
        self.step += 1
        self.epoch, self.next_batch = epoch, next_batch
        self.log.append(log_row)

    def save(self) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        if self.store.folder is None:  # resuming is off: nothing to gather (same on all ranks)
            return
        weights, optim = get_state_dict(self.model, self.optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        self.store.save(self.step, weights, optim, {
            "step": self.step, "epoch": self.epoch, "next_batch": self.next_batch,
            "epoch_generator": self.epoch_generator, "log": [list(r) for r in self.log],
            "scheduler": self.schedule.state_dict(), "rng": rng_state()})
        distributed.barrier(self.ranks)

    def resume(self) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        if self.ranks.main and self.store.folder is not None:  # a held run was killed
            (self.store.folder / "HOLDING").unlink(missing_ok=True)
        saved = self.store.latest() if self.ranks.main else None
        saved = distributed.broadcast_path(saved, self.ranks)
        if saved is None:
            return
        progress = StateStore.load_progress(saved)
        weights, optim = StateStore.load_weights(saved) if self.ranks.main else ({}, {})
        set_state_dict(self.model, self.optimizer, model_state_dict=weights,
                       optim_state_dict=optim, options=StateDictOptions(
                           full_state_dict=True, broadcast_from_rank0=self.ranks.world > 1))
        self.schedule.load_state_dict(progress["scheduler"])
        set_rng_state(progress["rng"])
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.next_batch, self.epoch_generator = progress["next_batch"], progress["epoch_generator"]
        self.log = [tuple(r) for r in progress["log"]]
        self.resumed_from = self.step
        if self.ranks.main:
            print(f"[finetune] resumed from step {self.step} ({saved})", file=sys.stderr)


class SaveSchedule:
    """When to save resumable state: every N steps and/or every M minutes (0 = never)."""

    def __init__(self, every_steps: int, every_minutes: float):
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        now = time.monotonic()
        if ((self.every_steps and step % self.every_steps == 0)
                or (self.every_seconds and now - self.last >= self.every_seconds)):
            self.last = now
            return True
        return False
