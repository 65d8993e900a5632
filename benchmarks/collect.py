"""Join every benchmark's section (benchmarks/results/<name>.md) into benchmarks/RESULTS.md.

    python benchmarks/collect.py              # collect what is there
    python benchmarks/collect.py --run        # first run every benchmarks/bench_*.py (make bench)
    python benchmarks/collect.py --run --only mc generation   # first run only these

RESULTS.md starts with the date, the CPU model, the thread count and the torch version, then
every section in name order. With --run, each `bench_<name>.py` runs with `--threads N`; one
that writes no section of its own (an older benchmark that only prints) gets its printed output
as its section. A benchmark that fails stops the run (exit status 1) after collecting the
sections written so far.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, machine, read_meta, thread_env, write_section  # noqa: E402

BENCHMARKS = ROOT / "benchmarks"


def run_all(threads: int, only: list[str] | None = None) -> list[str]:
    """Run every bench_*.py (or those named in `only`); returns the names of those that
    failed."""
    failed = []
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        section = RESULTS / f"{name}.md"
        before = section.stat().st_mtime if section.exists() else None
        print(f"[bench] {script.name} --threads {threads}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), "--threads", str(threads)], cwd=ROOT,
                              env={**os.environ, **thread_env(threads)}, text=True,
                              stdout=subprocess.PIPE)
        took = time.perf_counter() - start
        sys.stdout.write(proc.stdout)
        wrote = section.exists() and section.stat().st_mtime != before
        if proc.returncode != 0:
            failed.append(name)
            print(f"[bench] {script.name} failed (exit {proc.returncode})", file=sys.stderr)
        if not wrote:  # a benchmark that only prints: its output is its section
            status = "" if proc.returncode == 0 else f" — **failed (exit {proc.returncode})**"
            write_section(name, f"{script.name}{status}",
                          f"`python benchmarks/{script.name} --threads {threads}` "
                          f"({took:.0f} s):\n\n```\n{proc.stdout.strip()}\n```", threads)
    return failed


def collect() -> Path:
    sections = [p.read_text() for p in sorted(RESULTS.glob("*.md"))]
    m = machine()
    threads = sorted({read_meta(s).get("threads") for s in sections} - {None})
    header = (f"# Benchmarks\n\nCollected {m['date']} by `benchmarks/collect.py` (`make bench`)."
              f"\n\n- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs)\n"
              f"- threads: {', '.join(map(str, threads)) or '?'} (each section says its own)\n"
              f"- torch {m['torch']}, Python {m['python']}\n")
    body = "\n".join(s.split("\n", 1)[1] if read_meta(s) else s for s in sections)
    out = BENCHMARKS / "RESULTS.md"
    out.write_text(header + "\n" + body)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run every benchmark first")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    ap.add_argument("--only", nargs="+", metavar="NAME", help="with --run: only bench_NAME.py")
    args = ap.parse_args()
    failed = run_all(args.threads, args.only) if args.run else []
    print(f"[bench] wrote {collect().relative_to(ROOT)}", file=sys.stderr)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
