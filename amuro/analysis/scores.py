"""Per-example scores: read from predictions.jsonl, stored as one parquet, paired by item id.

Every interval in amuro is a bootstrap over per-example scores, so every table that reports one
needs them. The aggregate step reads each evaluation's predictions.jsonl once, checks it against
its metrics row (same n, same mean) and writes them all to `scores.parquet`; the table steps load
that file into a ScoreBook.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from amuro.errors import AmuroError
from amuro.io import atomic_path

PREDICTIONS = "predictions.jsonl"  # written by the evaluation step beside its metrics.csv
# What identifies one scored cell across all files: a perf.csv row. The metric is part of it
# because a multiple-choice cell is scored twice (acc and acc_norm) on the same items.
CELL_KEY = ["model", "step", "tuning", "train_task", "eval_set", "format", "shots", "metric"]
SCORES_SCHEMA = {
    "model": pl.String, "step": pl.Int64, "tuning": pl.String, "train_task": pl.String,
    "eval_set": pl.String, "format": pl.String, "shots": pl.Int64, "metric": pl.String,
    "id": pl.String, "score": pl.Float64,
}
MEAN_TOLERANCE = 1e-9
SOURCE = "_source"  # which metrics file a row came from, for error messages; never written out

# One cell's scored examples: item ids (as strings) and their scores, in file order.
Cell = tuple[list[str], np.ndarray]


def cell_seed(seed: int, *key) -> int:
    """A seed per cell, independent of the order rows or files come in."""
    text = "|".join("" if k is None else str(k) for k in key)
    return seed + zlib.crc32(text.encode("utf-8"))


def predictions_path(metrics_path: str | Path) -> Path:
    return Path(metrics_path).parent / PREDICTIONS


def _cell_name(eval_set, fmt, shots, metric=None) -> str:
    return f"eval_set={eval_set} format={fmt} shots={shots}" + (
        f" metric={metric}" if metric else "")


def read_predictions(path: str | Path) -> dict[tuple[str, str, int, str | None], Cell]:
    """A predictions.jsonl as {(eval_set, format, shots, metric): (ids, scores)}, checked line
    by line; `metric` is None for rows that do not name one (one metric per cell)."""
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (per-example scores are needed for the CIs)")
    cells: dict[tuple[str, str, int], tuple[list[str], list[float], set[str]]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise AmuroError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise AmuroError(f"{path}:{lineno}: expected a JSON object")
            eval_set, fmt, shots = rec.get("eval_set"), rec.get("format"), rec.get("shots")
            item, score, metric = rec.get("id"), rec.get("score"), rec.get("metric")
            if not (isinstance(eval_set, str) and isinstance(fmt, str)):
                raise AmuroError(f"{path}:{lineno}: eval_set and format must be strings")
            if not isinstance(shots, int) or isinstance(shots, bool):
                raise AmuroError(f"{path}:{lineno}: shots must be an integer")
            if metric is not None and not isinstance(metric, str):
                raise AmuroError(f"{path}:{lineno}: metric must be a string")
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise AmuroError(f"{path}:{lineno}: id must be a string or an integer")
            if (not isinstance(score, (int, float)) or isinstance(score, bool)
                    or not math.isfinite(score)):
                raise AmuroError(f"{path}:{lineno}: score must be a finite number")
            ids, scores, seen = cells.setdefault((eval_set, fmt, shots, metric), ([], [], set()))
            if str(item) in seen:
                raise AmuroError(f"{path}:{lineno}: id {item} repeated in eval_set={eval_set} "
                                 f"format={fmt} shots={shots}"
                                 + (f" metric={metric}" if metric else ""))
            seen.add(str(item))
            ids.append(str(item))
            scores.append(float(score))
    return {k: (ids, np.asarray(scores, dtype=float)) for k, (ids, scores, _) in cells.items()}


def read_scores(metrics: pl.DataFrame) -> dict[tuple, Cell]:
    """Per-example scores of every metrics row (which carries its SOURCE file), by CELL_KEY.

    Each metrics file's sibling predictions.jsonl must hold exactly its cells, with as many
    scores as the row's n and their mean equal to its value (within MEAN_TOLERANCE).
    """
    out: dict[tuple, Cell] = {}
    for source in sorted(metrics[SOURCE].unique().to_list()):
        rows = metrics.filter(pl.col(SOURCE) == source)
        pred_path = predictions_path(source)
        cells = read_predictions(pred_path)
        named = {k[:3] for k in cells if k[3] is not None}  # cells whose rows name a metric
        dup = (rows.group_by("eval_set", "format", "shots").len()
               .filter(pl.col("len") > 1).sort("eval_set", "format", "shots"))
        for r in dup.iter_rows(named=True):
            if (r["eval_set"], r["format"], r["shots"]) not in named:
                name = _cell_name(r["eval_set"], r["format"], r["shots"])
                raise AmuroError(f"{source}: several rows for {name}; their rows in "
                                 f"{PREDICTIONS} must name their metric")
        wanted = set()
        for r in rows.iter_rows(named=True):
            base = (r["eval_set"], r["format"], r["shots"])
            cell = (*base, r["metric"]) if base in named else (*base, None)
            wanted.add(cell)
            ids, scores = cells.get(cell, ([], np.zeros(0)))
            name = _cell_name(*cell)
            if scores.size != r["n"]:
                raise AmuroError(f"{pred_path}: {name} has {scores.size} scored example(s), "
                                 f"{source} says n={r['n']}")
            if scores.size and abs(float(scores.mean()) - r["value"]) > MEAN_TOLERANCE:
                raise AmuroError(f"{pred_path}: {name} scores average {float(scores.mean())!r}, "
                                 f"{source} says value={r['value']!r}")
            out[tuple(r[k] for k in CELL_KEY)] = (ids, scores)
        extra = sorted(set(cells) - wanted, key=str)
        if extra:
            raise AmuroError(f"{pred_path}: {_cell_name(*extra[0])} has no row in {source} "
                             f"({len(extra)} such cell(s))")
    return out


def write_scores(cells: dict[tuple, Cell], path: str | Path) -> None:
    """All cells as one tidy parquet (CELL_KEY, id, score), written atomically."""
    columns: dict[str, list] = {c: [] for c in SCORES_SCHEMA}
    for key in sorted(cells, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        ids, scores = cells[key]
        for name, value in zip(CELL_KEY, key, strict=True):
            columns[name].extend([value] * len(ids))
        columns["id"].extend(ids)
        columns["score"].extend(scores.tolist())
    df = pl.DataFrame(columns, schema=SCORES_SCHEMA)
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def load_scores(path: str | Path) -> ScoreBook:
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (written by python -m amuro.aggregate)")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise AmuroError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    missing = [c for c in SCORES_SCHEMA if c not in df.columns]
    if missing:
        raise AmuroError(f"{path}: missing column(s) {', '.join(missing)}")
    cells = {}
    for key, part in df.partition_by(CELL_KEY, as_dict=True, maintain_order=True).items():
        cells[tuple(key)] = (part["id"].to_list(), part["score"].to_numpy().astype(float))
    return ScoreBook(cells)


class ScoreBook:
    """Cells by CELL_KEY; pairs two cells by item id and remembers ids scored on one side only."""

    def __init__(self, cells: dict[tuple, Cell]):
        self.cells = cells
        self.unpaired: dict[tuple, tuple[int, int]] = {}  # (key_a, key_b) -> (only a, only b)

    def get(self, model, step, tuning, train_task, eval_set, fmt, shots, metric) -> Cell | None:
        return self.cells.get((model, step, tuning, train_task, eval_set, fmt, shots, metric))

    def paired(self, key_a: tuple, key_b: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """Scores of the ids both cells hold, sorted by id; None if either cell is missing."""
        a, b = self.cells.get(tuple(key_a)), self.cells.get(tuple(key_b))
        if a is None or b is None:
            return None
        a_pos = {i: k for k, i in enumerate(a[0])}
        b_pos = {i: k for k, i in enumerate(b[0])}
        both = sorted(a_pos.keys() & b_pos.keys())
        only_a, only_b = len(a_pos) - len(both), len(b_pos) - len(both)
        if only_a or only_b:
            self.unpaired[(tuple(key_a), tuple(key_b))] = (only_a, only_b)
        if not both:
            return np.zeros(0), np.zeros(0)
        return a[1][[a_pos[i] for i in both]], b[1][[b_pos[i] for i in both]]


BASE_TUNING = "base"


class Pairing:
    """A fine-tuned cell (ft shots) against its base checkpoint's cell (base shots)."""

    def __init__(self, book: ScoreBook, base_shots: int, ft_shots: int):
        self.book, self.base_shots, self.ft_shots = book, base_shots, ft_shots

    def pair(self, model, step, tuning, train_task, eval_set, fmt, metric):
        """(ft scores, base scores) over the ids both sides scored; None if a side is missing."""
        return self.book.paired(
            (model, step, tuning, train_task, eval_set, fmt, self.ft_shots, metric),
            (model, step, BASE_TUNING, None, eval_set, fmt, self.base_shots, metric),
        )

    def unpaired_counts(self, model, step, tuning, train_task, eval_set, fmt, metric) -> int:
        key = ((model, step, tuning, train_task, eval_set, fmt, self.ft_shots, metric),
               (model, step, BASE_TUNING, None, eval_set, fmt, self.base_shots, metric))
        return sum(self.book.unpaired.get(key, (0, 0)))
