"""Long steps log their progress even when stderr is a file (Snakemake's `2> log`)."""

import io

from amuro.progress import LogProgress, progress


def test_log_progress_writes_done_total_rate_and_eta():
    out = io.StringIO()
    bar = LogProgress(40, "finetune nli", "step", every=1e-9, stream=out)
    for _ in range(10):
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[-1].startswith("[finetune nli] 10/40 step (25%), ")
    assert "step/s, ETA " in lines[-1]


def test_log_progress_keeps_its_interval_and_can_be_silenced():
    out = io.StringIO()
    bar = LogProgress(5, "x", "batch", every=3600.0, stream=out)
    bar.update(5)
    assert out.getvalue() == ""  # the interval has not passed
    silent = LogProgress(5, "x", "batch", every=0, stream=out)
    silent.update(5)
    assert out.getvalue() == ""


def test_progress_is_a_log_writer_without_a_terminal():
    assert isinstance(progress(3, "evaluate"), LogProgress)  # pytest captures stderr
