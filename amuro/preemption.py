"""Stopping a fine-tuning run cleanly: SIGTERM (a cluster preempting or cancelling the job,
or its time limit) and SIGINT ask the run to save its state and stop after the current step;
and the test hook that holds a run after a given step so a test can kill it there.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from amuro.errors import AmuroError
from amuro.io import write_json


class StopRequest:
    """SIGTERM (a cluster preempting or cancelling the job) or SIGINT asks the run to save its
    state and stop after the current step, instead of dying mid-step."""

    def __init__(self):
        self.signal_name = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    @classmethod
    def install(cls) -> StopRequest:
        request = cls()

        def handler(signum, frame):
            request.signal_name = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return request


def fault_hold_step(task_name: str) -> int | None:
    """Test hook for preemption: AMURO_FAULT_HOLD_AT_STEP="<task>:<step>" makes a fresh run
    of that task wait after that step to be killed (SIGTERM saves its state there; SIGKILL
    leaves the last interval save)."""
    spec = os.environ.get("AMURO_FAULT_HOLD_AT_STEP")
    if not spec:
        return None
    name, _, step = spec.rpartition(":")
    if not step.isdigit():
        raise AmuroError(f"AMURO_FAULT_HOLD_AT_STEP: expected '<task>:<step>', got {spec!r}")
    return int(step) if name == task_name else None


def hold(run, stop: StopRequest, ranks) -> None:
    """Announce the held run (HOLDING, with its SLURM job id) and wait for a signal."""
    if run.store.folder is None:
        raise AmuroError("AMURO_FAULT_HOLD_AT_STEP needs --state-dir")
    if ranks.main:
        write_json(run.store.folder / "HOLDING", {
            "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "step": run.step})
        print(f"[finetune] holding after step {run.step} (AMURO_FAULT_HOLD_AT_STEP)",
              file=sys.stderr)
    deadline = time.monotonic() + 600
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(0.2)
    if not stop.requested:
        stop.signal_name = "timeout of AMURO_FAULT_HOLD_AT_STEP"
