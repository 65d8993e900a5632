"""A real one-node SLURM cluster for the tests, started by scripts/slurm-one-node.sh.

The session fixture `slurm_cluster` (registered in conftest.py) starts the cluster, installing
slurm-wlm and munge with apt-get where they are missing (root only), and stops it at the end of
the session if it started it. It skips only where the cluster cannot be had at all: not root
and no SLURM installed. Any other failure to start is a test failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-one-node.sh"


def _cluster_answers() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=10, check=False)
    return proc.returncode == 0 and any(
        s.rstrip("*") in ("idle", "mixed", "allocated", "completing")
        for s in proc.stdout.split())


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster with an idle node; yields the seconds its start took."""
    installed = shutil.which("slurmctld", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if os.geteuid() != 0 and not installed and not _cluster_answers():
        pytest.skip("no SLURM: not installed, and installing it needs root "
                    "(scripts/slurm-one-node.sh start)")
    already_running = _cluster_answers()
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True,
                          timeout=600, check=False)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, (f"scripts/slurm-one-node.sh start failed:\n{proc.stdout}"
                                  f"\n{proc.stderr}")
    print(f"\nSLURM cluster {'already running' if already_running else 'started'} "
          f"in {seconds:.1f} s")
    yield seconds
    if not already_running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120,
                       check=False)
