"""Jobs started from the zygote (amuro/zygote.py) behave as `python -m` processes: same
streams, same exit status, signals passed on; without a server they run on their own."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "AMURO_ZYGOTE"}


def _zygote(script: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amuro.zygote", "bash", "-c", script],
                          cwd=tmp_path, env={**ENV, "AMURO_ZYGOTE_VERBOSE": "1"},
                          capture_output=True, text=True, timeout=timeout)


def test_served_steps_keep_their_streams_and_status(tmp_path):
    py = sys.executable
    proc = _zygote(
        f"{py} -m amuro.finetune --help > help.txt; echo help=$?;"
        f" {py} -m amuro.evaluate --model m --plan '{{' --meta '{{}}' --metrics a"
        f" --predictions b --timing c 2> err.txt; echo bad=$?", tmp_path)
    assert "help=0" in proc.stdout and "bad=2" in proc.stdout
    assert (tmp_path / "help.txt").read_text().startswith("usage: python -m amuro.finetune")
    assert (tmp_path / "err.txt").read_text() == (
        "error: --plan: not valid JSON (Expecting property name enclosed in double quotes)\n")
    # both ran in children of the server, not in processes of their own
    assert "[zygote] pid" in proc.stderr and ": amuro.finetune" in proc.stderr
    assert ": amuro.evaluate" in proc.stderr
    assert not list(tmp_path.glob("a*")) and not (tmp_path / "b").exists()


def test_sigterm_to_the_job_reaches_the_step_in_the_server(nli_series, tmp_path):
    """Snakemake cancels, and SLURM preempts, a job by signalling its process: under the
    zygote that is the forwarding client, and the fine-tuning step (in the server's child)
    must get the signal, save its state and stop with status 143."""
    from test_resume import command

    state = tmp_path / "state"
    job = shlex.join(command(nli_series, tmp_path / "model", state))
    proc = subprocess.Popen(
        [sys.executable, "-m", "amuro.zygote", "bash", "-c",
         f"{job} & echo $! > job.pid; wait $!; echo status=$?"],
        cwd=tmp_path, env={**ENV, "AMURO_FAULT_HOLD_AT_STEP": "nli:4", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (state / "HOLDING").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached the held step"
        time.sleep(0.1)
    job_pid = int((tmp_path / "job.pid").read_text())
    step_pid = json.loads((state / "HOLDING").read_text())["pid"]
    assert step_pid != job_pid  # the step runs in the server's child, not in the job
    os.kill(job_pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "status=143" in out, err[-3000:]
    assert "stopped by SIGTERM after step 4" in err
    assert (state / "LATEST").exists()


def test_without_a_server_a_step_runs_in_its_own_process(tmp_path):
    env = {**ENV, "AMURO_ZYGOTE": str(tmp_path / "no-server.sock")}
    proc = subprocess.run([sys.executable, "-m", "amuro.finetune", "--help"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m amuro.finetune")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killing_the_wrapper_stops_the_command_and_the_server(tmp_path):
    """`kill` of `python -m amuro.zygote snakemake ...` must not leave Snakemake or the
    pre-imported server running (the server used to wait an hour for more jobs)."""
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "amuro.zygote", "bash", "-c",
         'echo "$AMURO_ZYGOTE $$" > started; sleep 60'],
        cwd=tmp_path, env=ENV)
    started = tmp_path / "started"
    deadline = time.monotonic() + 60
    while not (started.is_file() and started.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    socket_path, command_pid = started.read_text().split()
    server = subprocess.run(["pgrep", "-f", f"amuro.zygote --serve {socket_path}"],
                            capture_output=True, text=True).stdout.split()
    assert len(server) == 1
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) != 0
    deadline = time.monotonic() + 30
    while (_alive(int(command_pid)) or _alive(int(server[0]))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(command_pid)), "the command outlived its wrapper"
    assert not _alive(int(server[0])), "the zygote server outlived its wrapper"
    assert not Path(socket_path).exists()
