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
# `seed` is the fine-tuning seed (0 for base checkpoints): each seed of a model is its own cell.
CELL_KEY = ["model", "step", "tuning", "train_task", "seed", "eval_set", "format", "shots",
            "metric"]
SCORES_SCHEMA = {
    "model": pl.String, "step": pl.Int64, "tuning": pl.String, "train_task": pl.String,
    "seed": pl.Int64, "eval_set": pl.String, "format": pl.String, "shots": pl.Int64,
    "metric": pl.String,
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


def read_predictions(path: str | Path, shares: dict | None = None
                     ) -> dict[tuple[str, str, int, str | None], Cell]:
    """A predictions.jsonl as {(eval_set, format, shots, metric): (ids, scores)}, checked line
    by line; `metric` is None for rows that do not name one (one metric per cell).

    With a `shares` dict, also fills it with {cell: (top_share, empty_share)} from the rows'
    `prediction` field (None, None when a cell's rows carry no prediction)."""
    path = Path(path)
    preds: dict[tuple, list] = {}
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
            pred = rec.get("prediction")
            preds.setdefault((eval_set, fmt, shots, metric), []).append(
                None if pred is None else str(pred))
    if shares is not None:
        shares.update({k: prediction_shares(v) for k, v in preds.items()})
    return {k: (ids, np.asarray(scores, dtype=float)) for k, (ids, scores, _) in cells.items()}


def prediction_shares(predictions: list[str | None]) -> tuple[float | None, float | None]:
    """(share of the most frequent prediction, share of empty ones) of one cell; None, None if
    no row carries a prediction. Predictions compare after stripping surrounding whitespace."""
    given = [p.strip() for p in predictions if p is not None]
    if not given:
        return None, None
    counts: dict[str, int] = {}
    for p in given:
        counts[p] = counts.get(p, 0) + 1
    return max(counts.values()) / len(given), sum(p == "" for p in given) / len(given)


def read_scores(metrics: pl.DataFrame) -> dict[tuple, Cell]:
    """Per-example scores of every metrics row (which carries its SOURCE file), by CELL_KEY."""
    return read_scores_and_shares(metrics)[0]


def read_scores_and_shares(metrics: pl.DataFrame
                           ) -> tuple[dict[tuple, Cell], dict[tuple, tuple]]:
    """Per-example scores of every metrics row (which carries its SOURCE file), by CELL_KEY,
    and each cell's (top_share, empty_share) of its predictions (see prediction_shares).

    Each metrics file's sibling predictions.jsonl must hold exactly its cells, with as many
    scores as the row's n and their mean equal to its value (within MEAN_TOLERANCE).
    """
    out: dict[tuple, Cell] = {}
    out_shares: dict[tuple, tuple] = {}
    for source in sorted(metrics[SOURCE].unique().to_list()):
        rows = metrics.filter(pl.col(SOURCE) == source)
        pred_path = predictions_path(source)
        shares: dict = {}
        cells = read_predictions(pred_path, shares)
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
            key = tuple(r[k] for k in CELL_KEY)
            out[key] = (ids, scores)
            out_shares[key] = shares.get(cell, (None, None))
        extra = sorted(set(cells) - wanted, key=str)
        if extra:
            raise AmuroError(f"{pred_path}: {_cell_name(*extra[0])} has no row in {source} "
                             f"({len(extra)} such cell(s))")
    return out, out_shares


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
    if "seed" not in df.columns:  # written before fine-tuning seeds existed: one seed, 0
        df = df.with_columns(seed=pl.lit(0, dtype=pl.Int64))
    missing = [c for c in SCORES_SCHEMA if c not in df.columns]
    if missing:
        raise AmuroError(f"{path}: missing column(s) {', '.join(missing)}")
    cells = {}
    for key, part in df.partition_by(CELL_KEY, as_dict=True, maintain_order=True).items():
        cells[tuple(key)] = (part["id"].to_list(), part["score"].to_numpy().astype(float))
    return ScoreBook(cells)


BASE_TUNING = "base"
# The columns that vary between the seeds of one cell; collapse_seeds averages them away.
SEED_VARYING = ("seed", "value", "ci_low", "ci_high", "n", "n_truncated", "top_share",
                "empty_share")


def _seedless(key: tuple) -> tuple:
    """A CELL_KEY tuple without its seed: (model, step, tuning, train_task, eval_set, format,
    shots, metric), the key of a cell pooled over its seeds."""
    return (*key[:4], *key[5:])


class ScoreBook:
    """Cells by CELL_KEY. Pairs two cells, each pooled over its seeds, by item id (seeds x items
    arrays on the ids every seed of both sides scored), and remembers ids left out."""

    def __init__(self, cells: dict[tuple, Cell]):
        self.cells = cells
        # (seedless key a, seedless key b) -> (ids only a, ids only b)
        self.unpaired: dict[tuple, tuple[int, int]] = {}
        self._seeds: dict[tuple, dict[int, Cell]] = {}
        for key, cell in cells.items():
            self._seeds.setdefault(_seedless(key), {})[key[4]] = cell
        self._joint: dict[tuple, object] = {}
        self._units: dict[tuple, object] = {}  # paired() results, so their arrays are shared

    def get(self, model, step, tuning, train_task, seed, eval_set, fmt, shots,
            metric) -> Cell | None:
        return self.cells.get((model, step, tuning, train_task, seed, eval_set, fmt, shots,
                               metric))

    def seeds(self, key: tuple) -> dict[int, Cell]:
        """{seed: cell} of a seedless key (empty if no such cell)."""
        return self._seeds.get(tuple(key), {})

    def universes(self) -> dict[str, list[str]]:
        """Every eval set's item ids (sorted union over all its cells): what the joint bootstrap
        resamples."""
        out: dict[str, set[str]] = {}
        for key, (ids, _) in self.cells.items():
            out.setdefault(key[5], set()).update(ids)
        return {k: sorted(v) for k, v in out.items()}

    def fine_tuning_seeds(self) -> list[int]:
        """The seed axis of the joint bootstrap: every seed of a fine-tuned cell, sorted."""
        return sorted({k[4] for k in self.cells if k[2] != BASE_TUNING})

    def joint(self, n_resamples: int, seed: int):
        """The study's joint bootstrap (amuro.bootstrap.JointBootstrap), built once per
        (n_resamples, seed): its draws depend only on them and on the eval sets' items."""
        from amuro.bootstrap import JointBootstrap

        key = (n_resamples, seed)
        if key not in self._joint:
            self._joint[key] = JointBootstrap(self.universes(), self.fine_tuning_seeds(),
                                              n_resamples, seed)
        return self._joint[key]

    def paired(self, key_a: tuple, key_b: tuple):
        """Side a against side b (seedless keys) on the ids every seed of both scored, as an
        amuro.bootstrap.Unit (a, b: seeds x items, sorted by id); None if either is missing.

        A base side (tuning "base") has no seed axis; a fine-tuned side keeps its seeds, so
        the joint bootstrap can resample them. Memoised: the same keys give the same Unit.
        """
        key_a, key_b = tuple(key_a), tuple(key_b)
        if (key_a, key_b) in self._units:
            return self._units[(key_a, key_b)]
        unit = self._pair(key_a, key_b)
        self._units[(key_a, key_b)] = unit
        return unit

    def _pair(self, key_a: tuple, key_b: tuple):
        from amuro.bootstrap import Unit

        a, b = self.seeds(key_a), self.seeds(key_b)
        if not a or not b:
            return None
        sides = [sorted(a.items()), sorted(b.items())]
        id_sets = [set(c[0]) for side in sides for _, c in side]
        both = sorted(set.intersection(*id_sets))
        union_a = set().union(*(set(c[0]) for _, c in sides[0]))
        union_b = set().union(*(set(c[0]) for _, c in sides[1]))
        only_a, only_b = len(union_a) - len(both), len(union_b) - len(both)
        if only_a or only_b:
            self.unpaired[(key_a, key_b)] = (only_a, only_b)

        def matrix(side):
            rows = []
            for _, (ids, scores) in side:
                pos = {i: k for k, i in enumerate(ids)}
                rows.append(scores[[pos[i] for i in both]] if both else np.zeros(0))
            return np.vstack(rows)

        def seed_axis(key, side):
            return None if key[2] == BASE_TUNING else tuple(s for s, _ in side)

        return Unit(key_a[4], tuple(both), matrix(sides[0]), matrix(sides[1]),
                    seed_axis(key_a, sides[0]), seed_axis(key_b, sides[1]))


def collapse_seeds(perf: pl.DataFrame) -> pl.DataFrame:
    """perf.csv with one row per seedless cell: `value` is the mean over the cell's seeds, with
    n_seeds, value_min and value_max (the seed spread). n and n_truncated are the largest over
    the seeds, top_share / empty_share the largest; ci_low / ci_high are kept for single-seed
    cells and null otherwise (a seed mean's interval comes from the joint bootstrap).
    Idempotent: a table without a `seed` column is returned as it is (n_seeds 1)."""
    if "seed" not in perf.columns:
        if "n_seeds" in perf.columns:
            return perf
        return perf.with_columns(n_seeds=pl.lit(1, dtype=pl.Int64), value_min=pl.col("value"),
                                 value_max=pl.col("value"))
    keys = [c for c in perf.columns if c not in SEED_VARYING]
    dup = perf.group_by([*keys, "seed"]).len().filter(pl.col("len") > 1)
    if dup.height:
        # Two rows for one cell and seed would make every mean over it ambiguous.
        first = dup.sort([*keys, "seed"], nulls_last=False).row(0, named=True)
        kind = "base" if first.get("tuning") == BASE_TUNING else "fine-tuned"
        named = {k: first[k] for k in ("model", "step", "tuning", "train_task", "seed",
                                       "eval_set", "format", "shots", "metric") if k in first}
        raise ValueError(f"several {kind} rows for {named}")
    aggs = [pl.len().cast(pl.Int64).alias("n_seeds"), pl.col("value").mean(),
            pl.col("value").min().alias("value_min"), pl.col("value").max().alias("value_max")]
    for c in ("n", "n_truncated", "top_share", "empty_share"):
        if c in perf.columns:
            aggs.append(pl.col(c).max())
    for c in ("ci_low", "ci_high"):
        if c in perf.columns:
            aggs.append(pl.when(pl.len() == 1).then(pl.col(c).first()).alias(c))
    out = perf.group_by(keys, maintain_order=True).agg(aggs)
    order = [c for c in perf.columns if c != "seed" and c in out.columns]
    return out.select(*order, "n_seeds", "value_min", "value_max")


class Pairing:
    """A fine-tuned cell (ft shots, pooled over its seeds) against its base checkpoint's cell
    (base shots)."""

    def __init__(self, book: ScoreBook, base_shots: int, ft_shots: int):
        self.book, self.base_shots, self.ft_shots = book, base_shots, ft_shots

    def keys(self, model, step, tuning, train_task, eval_set, fmt, metric):
        return ((model, step, tuning, train_task, eval_set, fmt, self.ft_shots, metric),
                (model, step, BASE_TUNING, None, eval_set, fmt, self.base_shots, metric))

    def pair(self, model, step, tuning, train_task, eval_set, fmt, metric):
        """amuro.bootstrap.Unit (a: fine-tuned, b: base) over the ids both sides scored; None if
        a side is missing."""
        return self.book.paired(*self.keys(model, step, tuning, train_task, eval_set, fmt,
                                           metric))

    def unpaired_counts(self, model, step, tuning, train_task, eval_set, fmt, metric) -> int:
        key = self.keys(model, step, tuning, train_task, eval_set, fmt, metric)
        return sum(self.book.unpaired.get(key, (0, 0)))
