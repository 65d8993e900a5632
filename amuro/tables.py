"""The analysis tables, each from perf.csv (+ scores.parquet for the intervals).

    python -m amuro.tables mrc --perf results/perf.csv --scores results/scores.parquet \\
        --out results/mrc.csv --summary results/mrc_summary.csv --slope-unit 100000
    python -m amuro.tables ood     ... --out results/ood.csv
    python -m amuro.tables groups  ... --out results/groups.csv --gain results/ft_gain_by_group.csv
    python -m amuro.tables formats --perf results/perf.csv --out results/format.csv \\
        --summary results/format_summary.csv
    python -m amuro.tables cost --jobs JOBS.json --out results/cost.csv   (or --jobs '[...]')

Every comparison of a fine-tuned model with its base checkpoint reads both in --format, the
fine-tuned model at --ft-shots (default 4, the paper's matched 4 vs 4; 0 for the zero-shot view)
and the base at --base-shots. Fine-tuned scores are averaged over their fine-tuning seeds, and
every interval of mrc, ood and groups comes from one joint bootstrap (items of each eval set and
fine-tuning seeds resampled together, the same draws for every table: amuro.bootstrap.
JointBootstrap). See amuro.analysis.* for each table's definition. Outputs are written
atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from amuro.analysis import cost, formats, groups, mrc, ood
from amuro.analysis.scores import load_scores
from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path, decode_error
from amuro.schema import PERF_SCHEMA as SCHEMA

# perf.csv's columns and dtypes, declared once in amuro.schema (re-exported here).
PERF_SCHEMA = SCHEMA


def read_perf(path: str | Path) -> pl.DataFrame:
    """perf.csv as amuro.aggregate wrote it, with its dtypes (never inferred)."""
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found (written by python -m amuro.aggregate)")
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        header = first.decode("utf-8").strip().split(",")
    except UnicodeDecodeError as err:
        raise decode_error(path, first, err) from None
    missing = [c for c in PERF_SCHEMA if c not in header]
    if missing:
        raise AmuroError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        df = pl.read_csv(path, schema_overrides=PERF_SCHEMA, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise AmuroError(f"{path}: cannot read ({str(err).strip().splitlines()[0]})") from None
    return df.select(list(PERF_SCHEMA)).with_columns(
        pl.when(pl.col(c) != "").then(pl.col(c)).alias(c)
        for c, t in PERF_SCHEMA.items() if t == pl.String)


def write_csv(df: pl.DataFrame, path: str | Path, what: str) -> None:
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    print(f"tables: {what}: {df.height} row(s) -> {path}", file=sys.stderr)


def _mrc(args) -> None:
    perf, book = read_perf(args.perf), load_scores(args.scores)
    cmp = (args.format, args.base_shots, args.ft_shots)
    try:
        pairs = mrc.cross_task_pairs(perf, *cmp)
        result = mrc.mean_ratio_of_change(perf, *cmp)
    except ValueError as err:
        raise AmuroError(f"{args.perf}: {err}") from None
    result = mrc.add_ci(result, pairs, book, *cmp, args.bootstrap_resamples, args.bootstrap_seed)
    summary = mrc.summary(result, pairs, book, *cmp, args.bootstrap_resamples,
                          args.bootstrap_seed, args.slope_unit)
    write_csv(result, args.out, "mean ratio of change per checkpoint")
    write_csv(summary, args.summary, "mean ratio of change across checkpoints")
    skipped = mrc.skipped_sets(pairs)
    for reason, label in ((mrc.ZERO_BASE, "base score 0, left out of the ratio"),
                          (mrc.MISSING_BASE, "no base row, left out")):
        rows = skipped.filter(pl.col("reason") == reason)
        if rows.height:
            sets = ", ".join(sorted(rows["eval_set"].unique().to_list()))
            print(f"tables: mrc: {rows.height} (model, set) pair(s) skipped: {label} "
                  f"({sets})", file=sys.stderr)


def _ood(args) -> None:
    perf, book = read_perf(args.perf), load_scores(args.scores)
    table = ood.ood_change(perf, book, args.format, args.base_shots, args.ft_shots,
                           args.bootstrap_resamples, args.bootstrap_seed)
    write_csv(table, args.out, "out-of-domain change per training task")
    zero = int(table["n_zero_base"].sum() or 0)
    if zero:
        print(f"tables: ood: {zero} checkpoint(s) with base score 0 left out of the ratio",
              file=sys.stderr)


def _groups(args) -> None:
    perf, book = read_perf(args.perf), load_scores(args.scores)
    sets = groups.classify_sets(perf, book, args.format, args.base_shots, args.min_rise,
                                args.bootstrap_resamples, args.bootstrap_seed, args.ft_shots)
    gain = groups.gain_by_group(perf, sets, book, args.format, args.base_shots, args.ft_shots,
                                args.bootstrap_resamples, args.bootstrap_seed)
    write_csv(sets, args.out, "learned in pre-training vs fine-tuning")
    write_csv(gain, args.gain, "fine-tuning gain per group")
    ungrouped = sets.filter(pl.col("learned_in").is_null())
    if ungrouped.height:
        print(f"tables: groups: {ungrouped.height} set(s) without a group (one checkpoint or "
              f"no paired items): {', '.join(ungrouped['eval_set'].to_list())}", file=sys.stderr)


def _formats(args) -> None:
    perf = read_perf(args.perf)
    spread = formats.format_spread(perf, args.base_shots, args.ft_shots)
    write_csv(spread, args.out, "spread across prompt formats")
    write_csv(formats.format_summary(spread), args.summary, "format spread per checkpoint")
    if args.change:
        if not args.scores:
            raise AmuroError("--change needs --scores (the item scores it resamples)")
        change = formats.spread_change(spread, load_scores(args.scores),
                                       args.bootstrap_resamples, args.bootstrap_seed)
        write_csv(change, args.change, "format spread, last minus first checkpoint")


def _cost(args) -> None:
    # The job list inline (as the workflow passes it) or in a file.
    inline = args.jobs.lstrip().startswith("[")
    name = "--jobs" if inline else args.jobs
    try:
        jobs = json.loads(args.jobs if inline else Path(args.jobs).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AmuroError(f"{name}: cannot read the job list ({err})") from None
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and "kind" in j
                                             and "benchmark" in j for j in jobs):
        raise AmuroError(f"{name}: expected a list of objects with kind and benchmark")
    write_csv(cost.cost_table(jobs, args.train_format), args.out, "compute per experiment")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m amuro.tables", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="table", required=True)

    compare = argparse.ArgumentParser(add_help=False)
    compare.add_argument("--perf", required=True, metavar="CSV")
    compare.add_argument("--scores", required=True, metavar="PARQUET")
    compare.add_argument("--format", default="default",
                         help="prompt format of the comparison (default: %(default)s)")
    compare.add_argument("--base-shots", type=int, default=4)
    compare.add_argument("--ft-shots", type=int, default=4,
                         help="shots of the fine-tuned models (default: %(default)s)")
    compare.add_argument("--bootstrap-resamples", type=int, default=1000)
    compare.add_argument("--bootstrap-seed", type=int, default=1)

    m = sub.add_parser("mrc", parents=[compare], help="cross-task mean ratio of change")
    m.add_argument("--out", required=True, metavar="CSV")
    m.add_argument("--summary", required=True, metavar="CSV")
    m.add_argument("--slope-unit", type=int, default=100_000, metavar="STEPS",
                   help="slopes are per this many pre-training steps (default: %(default)s)")
    m.set_defaults(run=_mrc)

    o = sub.add_parser("ood", parents=[compare], help="out-of-domain change per training task")
    o.add_argument("--out", required=True, metavar="CSV")
    o.set_defaults(run=_ood)

    g = sub.add_parser("groups", parents=[compare],
                       help="learned in pre-training vs fine-tuning, and Table 5")
    g.add_argument("--out", required=True, metavar="CSV")
    g.add_argument("--gain", required=True, metavar="CSV")
    g.add_argument("--min-rise", type=float, default=0.1,
                   help="least rise of the base curve, first to last checkpoint, for a set to "
                   "count as learned in pre-training (default: %(default)s)")
    g.set_defaults(run=_groups)

    f = sub.add_parser("formats", help="spread across prompt formats")
    f.add_argument("--perf", required=True, metavar="CSV")
    f.add_argument("--base-shots", type=int, default=4)
    f.add_argument("--ft-shots", type=int, default=4)
    f.add_argument("--out", required=True, metavar="CSV")
    f.add_argument("--summary", required=True, metavar="CSV")
    f.add_argument("--scores", metavar="PARQUET", help="item scores (needed for --change)")
    f.add_argument("--change", metavar="CSV",
                   help="mean spread at the last checkpoint minus the first, with its interval")
    f.add_argument("--bootstrap-resamples", type=int, default=1000)
    f.add_argument("--bootstrap-seed", type=int, default=1)
    f.set_defaults(run=_formats)

    c = sub.add_parser("cost", help="compute per experiment type (Table 2)")
    c.add_argument("--jobs", required=True, metavar="JSON",
                   help="list of {kind, benchmark, timing, metrics, train_task}: a JSON file, "
                   "or the JSON itself")
    c.add_argument("--train-format", default="default",
                   help="the format fine-tuning used (default: %(default)s)")
    c.add_argument("--out", required=True, metavar="CSV")
    c.set_defaults(run=_cost)
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if getattr(args, "bootstrap_resamples", 0) < 0:
        raise AmuroError(f"--bootstrap-resamples must be >= 0, got {args.bootstrap_resamples}")
    if getattr(args, "slope_unit", 1) < 1:
        raise AmuroError(f"--slope-unit must be >= 1, got {args.slope_unit}")
    args.run(args)


if __name__ == "__main__":
    run_cli(main)
