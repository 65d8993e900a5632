"""Start the pipeline's jobs from one process that has already imported torch and transformers.

Every job of the workflow is a fresh `python -m amuro.<step>` process, and each pays ≈ 4 s to
import torch and transformers (≈ 2 s) and the model classes (≈ 2 s) before any work; the
default study runs ~80 such jobs. With a zygote, a job's process only forwards its command
line, working directory, environment and standard streams to a server that imported all of
that once; the server forks a child that runs the step exactly as `python -m` would (same
code, same arguments, same streams), and the job exits with the child's status. Results are
unchanged; only the import time is saved.

    python -m amuro.zygote snakemake --cores all     # what `make study` runs

starts a server on a socket in the temporary folder, runs the command with AMURO_ZYGOTE pointing to
it, and stops the server afterwards. A step started without AMURO_ZYGOTE (a cluster job, a
hand-run command) or when the server does not answer runs in its own process as usual.

Why it is safe: the server only imports (it never runs a torch operation, so no thread pool
exists to be broken by fork); each child gets the job's environment (thread counts, seeds),
streams and working directory; a signal sent to the job (Snakemake cancelling it, SLURM
preempting it) is passed on to the child, and a child whose job process has died stops.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENV = "AMURO_ZYGOTE"  # the server's socket, for the jobs of one run
IN_CHILD = "AMURO_ZYGOTE_CHILD"  # set in children: their own subprocesses start normally
# The steps the server runs: the many per-model jobs. Not the others: the table steps use
# polars, whose thread pool does not survive a fork (so the server never imports it), and
# pre-training is one job that runs for minutes on several threads.
SERVED = ("amuro.evaluate", "amuro.finetune")
# Imported once by the server: the steps, the model classes the default series uses, and
# ROUGE's scorer (its nltk import cost each evaluation job ≈ 1.5 s on its first generation set).
WARM = (*SERVED, "transformers.models.olmo.modeling_olmo",
        "transformers.models.llama.modeling_llama", "rouge_score.rouge_scorer")
_MAX_MESSAGE = 1 << 22


# --- the job's side ------------------------------------------------------------------------
def delegate() -> None:
    """Called on `import amuro`: when this process is `python -m <a served step>` and a
    zygote is running, have it run the step and exit with its status. Otherwise return and
    let the step run here."""
    path = os.environ.get(ENV)
    argv = getattr(sys, "orig_argv", None)
    if not path or os.environ.get(IN_CHILD) or not argv or "-m" not in argv:
        return
    at = argv.index("-m")
    if at + 1 >= len(argv) or argv[at + 1] not in SERVED:
        return
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return  # no server (it stopped, or never started): run in this process
    request = {"module": argv[at + 1], "args": argv[at + 2:], "cwd": os.getcwd(),
               "env": dict(os.environ)}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    reader = conn.makefile("r")
    pid = int(reader.readline())

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, forward)
    status = reader.readline()
    os._exit(int(status) if status.strip() else 1)


# --- the server's side ---------------------------------------------------------------------
def _run_child(request: dict, fds: list[int], conn: socket.socket) -> None:
    """In the forked child: become the job's process, run the step, exit with its status."""
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[IN_CHILD] = "1"
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch_job():  # the job's process died (killed with SIGKILL): stop too
        try:
            conn.recv(1)
        except OSError:
            pass
        os._exit(137)

    threading.Thread(target=watch_job, daemon=True).start()
    module = request["module"]
    spec = importlib.util.find_spec(module)
    sys.argv = [spec.origin if spec and spec.origin else module, *request["args"]]
    code = 0
    try:
        import runpy

        sys.modules.pop(module, None)  # warmed by the server; run afresh, as `python -m`
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as `python -m` would, then status 1
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def serve(path: str, idle_exit: float) -> None:
    """Import WARM, then fork one child per request until idle for `idle_exit` seconds."""
    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    os.replace(tmp, path)  # the socket appears when the server is ready
    listener.listen(64)
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    parent = os.getppid()
    # Stop when idle, or once the command that started the server is gone (killed without a
    # chance to stop it) and no job is left running.
    while children or (time.monotonic() - last < idle_exit and os.getppid() == parent):
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
            pid = os.fork()
            if pid == 0:
                listener.close()
                _run_child(json.loads(message), fds, conn)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
            if os.environ.get("AMURO_ZYGOTE_VERBOSE"):
                print(f"[zygote] pid {pid}: {json.loads(message)['module']}", file=sys.stderr,
                      flush=True)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                conn.close()
            last = time.monotonic()
    listener.close()
    Path(path).unlink(missing_ok=True)


def run(command: list[str], path: Path) -> int:
    """Start a server, run `command` with AMURO_ZYGOTE set, stop the server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "amuro.zygote", "--serve", str(path)],
                              env={k: v for k, v in os.environ.items() if k != ENV})
    try:
        while not path.exists() and server.poll() is None:
            time.sleep(0.05)
        env = dict(os.environ)
        if path.exists():
            env[ENV] = str(path)
        else:
            print("[zygote] the server did not start; the jobs import on their own",
                  file=sys.stderr)
        job = subprocess.Popen(command, env=env)
        # `kill` of this process reaches the command too, and the server is still stopped
        previous = {sig: signal.signal(sig, lambda signum, _f: job.send_signal(signum))
                    for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return job.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        server.terminate()
        server.wait()
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1], idle_exit=float(os.environ.get("AMURO_ZYGOTE_IDLE_EXIT", 3600)))
        return
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m amuro.zygote COMMAND [ARGS ...]\n\n" + __doc__,
              file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    # a short path: Unix socket paths are limited to ~100 bytes
    raise SystemExit(run(argv, Path(tempfile.gettempdir()) / f"amuro-zygote-{os.getpid()}.sock"))


if __name__ == "__main__":
    main()
