"""Generate the tiny world: pre-training corpus and every task dataset (seeded, no downloads).

    python -m amuro.make_world --seed 1 --corpus results/world/corpus.txt \
        --data-dir results/data --summary results/world/summary.json
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path, write_json, write_jsonl
from amuro.tinyworld.corpus import generate_corpus
from amuro.tinyworld.datasets import DATASETS, build_dataset
from amuro.tinyworld.world import make_world

DOC_SEPARATOR = "\n\n"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.make_world", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--documents", type=int, default=12000, help="corpus documents")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--demo-size", type=int, default=32, help="few-shot demonstration pool")
    ap.add_argument("--test-size", type=int, default=200)
    ap.add_argument("--datasets", nargs="*", default=sorted(DATASETS))
    ap.add_argument("--corpus", required=True, help="output: one document per paragraph")
    ap.add_argument("--data-dir", required=True, help="output: <dir>/<dataset>/<split>.jsonl")
    ap.add_argument("--summary", required=True, help="output: counts and label balance (JSON)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        raise AmuroError(f"--datasets: {unknown} are not tiny-world datasets; "
                         f"expected some of {sorted(DATASETS)}")
    world = make_world(args.seed, args.people)
    docs = generate_corpus(world, args.documents, args.seed)
    with atomic_path(args.corpus) as tmp:
        tmp.write_text(DOC_SEPARATOR.join(docs) + "\n", encoding="utf-8")
    sizes = {"train": args.train_size, "demo": args.demo_size, "test": args.test_size}
    summary = {"seed": args.seed, "people": args.people, "documents": len(docs),
               "corpus_words": sum(len(d.split()) for d in docs), "datasets": {}}
    for name in args.datasets:
        splits = build_dataset(name, world, sizes, args.seed)
        info = {}
        for split, rows in splits.items():
            write_jsonl(Path(args.data_dir) / name / f"{split}.jsonl", rows)
            info[split] = {"n": len(rows)}
            if DATASETS[name][1] is not None:  # classification: label balance
                info[split]["labels"] = dict(collections.Counter(r["target"] for r in rows))
            elif rows and "label" in rows[0]:  # multiple choice: where the correct choice is
                info[split]["positions"] = dict(sorted(
                    collections.Counter(str(r["label"]) for r in rows).items()))
            if len(rows) < sizes[split]:
                print(f"[make_world] {name}/{split}: {len(rows)} distinct items "
                      f"(asked for {sizes[split]}; the world has no more)", file=sys.stderr)
        summary["datasets"][name] = info
    write_json(args.summary, summary)
    print(f"[make_world] corpus: {len(docs)} documents, {summary['corpus_words']} words; "
          f"{len(args.datasets)} datasets -> {args.data_dir}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
