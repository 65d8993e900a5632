"""Turn local data files (original format or downloaded parquet) into task records.

    python -m amuro.prepare_data --name mnli --adapter mnli \
        --split train=resources/datasets/mnli_train.parquet \
        --split test=resources/datasets/mnli_validation_matched.parquet \
        --max-items train=6000 --demo-from train --demo-size 32 --seed 42 \
        --out-dir results/data/mnli

Writes OUT_DIR/{train,demo,test}.jsonl (only the splits asked for; demo.jsonl whenever
--demo-size > 0) and OUT_DIR/summary.json (rows read, kept, dropped per reason, per split; the
seed; each source file with its sha256). Every file is written atomically.

Subsampling: a split capped with --max-items keeps the first N usable rows of the seeded
permutation `numpy.random.default_rng(seed).permutation(rows_read)` - the permutation of
`datasets.Dataset.shuffle(seed=seed)`, so a file without dropped rows gives the released code's
`shuffle(seed=42).select(range(6000))` exactly. An uncapped split keeps the file's order.

Demonstrations are disjoint from the scored test items by input text: drawn from the demo file,
the training file (rows after the training sample first) or the test file (then carved out
before the test cap, and every test item sharing a demonstration's input is removed too).
Every row that is not written is counted with its reason, on stderr and in summary.json.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from amuro.data.adapters import ADAPTERS, Drop, SchemaError, get_adapter, input_key
from amuro.data.readers import FORMATS, attach_labels, read_labels, read_rows
from amuro.errors import AmuroError, run_cli
from amuro.io import sha256_file, write_json, write_jsonl

SPLITS = ("train", "demo", "test")
R_DUPLICATE_ID = "duplicate id (an earlier row of the file has the same id)"
EXAMPLES_PER_REASON = 3


def _log(msg: str) -> None:
    print(f"[prepare_data] {msg}", file=sys.stderr)


def _pairs(values: list[str] | None, option: str, allowed: tuple[str, ...], what: str) -> dict:
    out = {}
    for value in values or []:
        split, sep, rest = value.partition("=")
        if not sep or not rest:
            raise AmuroError(f"{option} {value!r}: expected SPLIT={what}")
        if split not in allowed:
            raise AmuroError(f"{option} {value!r}: split {split!r} unknown; "
                             f"expected one of {list(allowed)}")
        if split in out:
            raise AmuroError(f"{option}: split {split!r} given twice")
        out[split] = rest
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.prepare_data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="dataset slug: used in generated ids <name>-<split>-<row>")
    ap.add_argument("--adapter", help=f"one of {sorted(ADAPTERS)}")
    ap.add_argument("--split", action="append", metavar="SPLIT=PATH",
                    help="a source file per split (train, demo, test); repeat")
    ap.add_argument("--format", action="append", metavar="SPLIT=FORMAT",
                    help=f"force a file format {list(FORMATS)} instead of the extension's")
    ap.add_argument("--labels-file", action="append", metavar="SPLIT=PATH",
                    help="separate labels, one line per row (SocialIQa *-labels.lst)")
    ap.add_argument("--demo-from", choices=SPLITS,
                    help="demonstration source (default: the demo file, else train, else test)")
    ap.add_argument("--demo-size", type=int, default=32, help="demonstrations to write (0: none)")
    ap.add_argument("--max-items", action="append", metavar="SPLIT=N",
                    help="cap train or test at N items by a seeded sample; repeat")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out-dir", help="output folder")
    ap.add_argument("--list-adapters", action="store_true",
                    help="print each adapter's template family, label words and schemas")
    return ap.parse_args(argv)


def list_adapters() -> str:
    lines = ["adapter\tfamily\tlabels\tschemas"]
    for a in ADAPTERS.values():
        lines.append(f"{a.name}\t{a.family}\t{'/'.join(a.labels) or '-'}\t{a.schemas}")
    return "\n".join(lines)


class SplitData:
    """One source file run through the adapter: records by row, and the drop tally."""

    def __init__(self, split: str, path: str, fmt: str | None, labels_path: str | None,
                 adapter, name: str, seed: int):
        self.split, self.path, self.labels_path = split, path, labels_path
        rows = read_rows(path, fmt)
        if labels_path:
            rows = attach_labels(rows, read_labels(labels_path), data_path=path,
                                 labels_path=labels_path)
        self.rows_read = len(rows)
        self.records: list[dict | None] = []  # by row index; None = dropped
        self.dropped: collections.Counter = collections.Counter()
        self.drop_examples: dict[str, list[str]] = collections.defaultdict(list)
        seen_ids: set[str] = set()
        for i, row in enumerate(rows):
            try:
                out = adapter.apply(row, index=i, split=split, dataset=name, seed=seed)
            except SchemaError as err:
                raise AmuroError(f"{path}: row {i}: {err}") from None
            if not isinstance(out, Drop) and out["id"] in seen_ids:
                out = Drop(R_DUPLICATE_ID)
            if isinstance(out, Drop):
                self.drop(out.reason, f"row {i}")
                self.records.append(None)
            else:
                seen_ids.add(out["id"])
                self.records.append(out)

    def drop(self, reason: str, example: str) -> None:
        self.dropped[reason] += 1
        if len(self.drop_examples[reason]) < EXAMPLES_PER_REASON:
            self.drop_examples[reason].append(example)

    @property
    def kept(self) -> int:
        return sum(r is not None for r in self.records)

    def in_file_order(self) -> list[dict]:
        return [r for r in self.records if r is not None]

    def shuffled(self, seed: int) -> list[dict]:
        """Usable records in the order of datasets' shuffle(seed) over all rows read."""
        import numpy as np

        perm = np.random.default_rng(seed).permutation(self.rows_read)
        return [self.records[i] for i in perm.tolist() if self.records[i] is not None]

    def check_nonempty(self) -> None:
        if self.kept == 0:
            top = ", ".join(f"{n} {r}" for r, n in self.dropped.most_common(2)) or "no rows"
            raise AmuroError(f"{self.path}: no usable {self.split} rows "
                             f"({self.rows_read} read; dropped: {top})")


def _label_counts(records: list[dict], adapter) -> dict | None:
    if not adapter.labels:
        return None
    return dict(sorted(collections.Counter(r["target"] for r in records).items()))


def _take(records: list[dict], n: int, exclude: set[str]) -> tuple[list[dict], int]:
    """The first n records whose input is not in `exclude`; and how many were skipped."""
    out, skipped = [], 0
    for rec in records:
        if len(out) == n:
            break
        if input_key(rec) in exclude:
            skipped += 1
            continue
        out.append(rec)
    return out, skipped


def main(argv=None):
    args = parse_args(argv)
    if args.list_adapters:
        print(list_adapters())
        return
    for option in ("name", "adapter", "split", "out_dir"):
        if not getattr(args, option):
            raise AmuroError(f"--{option.replace('_', '-')} is required")
    adapter = get_adapter(args.adapter)
    sources = _pairs(args.split, "--split", SPLITS, "PATH")
    formats = _pairs(args.format, "--format", SPLITS, "FORMAT")
    labels_files = _pairs(args.labels_file, "--labels-file", SPLITS, "PATH")
    caps = _pairs(args.max_items, "--max-items", ("train", "test"), "N")
    for split, value in caps.items():
        if not value.isdigit() or int(value) < 1:
            raise AmuroError(f"--max-items {split}={value}: expected a positive integer")
    caps = {k: int(v) for k, v in caps.items()}
    for option, given in (("--format", formats), ("--labels-file", labels_files),
                          ("--max-items", caps)):
        for split in given:
            if split not in sources:
                raise AmuroError(f"{option} {split}=...: no --split {split}=PATH given")
    if "train" not in sources and "test" not in sources:
        raise AmuroError("--split: expected test=PATH and/or train=PATH")
    if args.demo_size < 0:
        raise AmuroError(f"--demo-size {args.demo_size}: expected 0 or more")
    demo_from = args.demo_from or (
        "demo" if "demo" in sources else "train" if "train" in sources else "test")
    if args.demo_size > 0 and demo_from not in sources:
        raise AmuroError(f"--demo-from {demo_from}: no --split {demo_from}=PATH given")
    if "demo" in sources and demo_from != "demo":
        raise AmuroError(f"--split demo=PATH and --demo-from {demo_from} disagree; give one")

    data = {
        split: SplitData(split, path, formats.get(split), labels_files.get(split), adapter,
                         args.name, args.seed)
        for split, path in sources.items()
    }
    for d in data.values():
        d.check_nonempty()

    out: dict[str, list[dict]] = {}
    notes: dict[str, dict] = {s: {} for s in SPLITS}
    # Test: demonstrations carved out first (if they come from it), then the cap.
    test_keys: set[str] = set()
    if "test" in data:
        t = data["test"]
        capped = "test" in caps
        if demo_from == "test" and args.demo_size > 0:
            out["demo"] = t.shuffled(args.seed)[: args.demo_size]
            demo_ids = {r["id"] for r in out["demo"]}
            demo_keys = {input_key(r) for r in out["demo"]}
            pool = t.shuffled(args.seed) if capped else t.in_file_order()
            pool = [r for r in pool if r["id"] not in demo_ids]
            same = [r for r in pool if input_key(r) in demo_keys]
            pool = [r for r in pool if input_key(r) not in demo_keys]
            notes["test"].update(demonstrations_carved_out=len(out["demo"]),
                                 removed_same_input_as_demo=len(same))
        else:
            pool = t.shuffled(args.seed) if capped else t.in_file_order()
        out["test"] = pool[: caps["test"]] if capped else pool
        test_keys = {input_key(r) for r in out["test"]}
        if not out["test"]:
            raise AmuroError(f"{t.path}: no test items left after carving out demonstrations")
    if "train" in data:
        train = data["train"]
        capped = "train" in caps
        shuffled = train.shuffled(args.seed)
        out["train"] = shuffled[: caps["train"]] if capped else train.in_file_order()
        notes["train"]["inputs_also_in_test"] = sum(input_key(r) in test_keys
                                                   for r in out["train"])
        if demo_from == "train" and args.demo_size > 0:
            n = caps["train"] if capped else 0
            # Rows after the training sample first, so demonstrations are unseen in training
            # when the file has enough rows; then the start of the permutation.
            order = shuffled[n:] + shuffled[:n]
            out["demo"], skipped = _take(order, args.demo_size, test_keys)
            in_train = {r["id"] for r in out["train"]}
            notes["demo"] = {"skipped_same_input_as_test": skipped,
                             "also_in_train": sum(r["id"] in in_train for r in out["demo"])}
    if demo_from == "demo" and args.demo_size > 0:
        out["demo"], skipped = _take(data["demo"].shuffled(args.seed), args.demo_size, test_keys)
        notes["demo"] = {"skipped_same_input_as_test": skipped}
    if args.demo_size > 0 and not out.get("demo"):
        raise AmuroError(f"{data[demo_from].path}: no demonstrations left "
                         "(every usable row shares its input with a test item)")

    out_dir = Path(args.out_dir)
    summary = {
        "name": args.name, "adapter": adapter.name, "family": adapter.family,
        "kind": adapter.kind, "labels": list(adapter.labels), "seed": args.seed,
        "demo": {"from": demo_from, "size": args.demo_size} if args.demo_size > 0 else None,
        "sources": [], "splits": {},
    }
    for split in ("train", "test", "demo"):
        if split not in out:
            continue
        records = out[split]
        write_jsonl(out_dir / f"{split}.jsonl", records)
        info: dict = {"written": len(records), **notes[split]}
        if split in data:
            d = data[split]
            info.update(rows_read=d.rows_read, kept=d.kept, dropped=dict(d.dropped),
                        drop_examples={k: v for k, v in d.drop_examples.items()},
                        max_items=caps.get(split),
                        order="seeded permutation" if split in caps or split == "demo"
                        else "file")
        else:
            info.update(from_split=demo_from, order="seeded permutation")
        labels = _label_counts(records, adapter)
        if labels is not None:
            info["label_counts"] = labels
        summary["splits"][split] = info
        if split in data:
            d = data[split]
            cap = (f" (capped at {caps[split]} by a seeded sample, seed {args.seed})"
                   if split in caps else "")
            _log(f"{args.name}/{split}: read {d.rows_read}, kept {d.kept}, "
                 f"dropped {sum(d.dropped.values())}, wrote {len(records)}{cap}")
            for reason, count in d.dropped.most_common():
                _log(f"{args.name}/{split}: dropped {count}: {reason}")
            if notes[split].get("demonstrations_carved_out"):
                _log(f"{args.name}/{split}: {notes[split]['demonstrations_carved_out']} rows "
                     "became demonstrations, "
                     f"{notes[split]['removed_same_input_as_demo']} more removed for sharing "
                     "a demonstration's input")
            if split in caps and len(records) < caps[split]:
                _log(f"{args.name}/{split}: asked for {caps[split]} items, "
                     f"only {len(records)} usable")
        else:
            _log(f"{args.name}/demo: wrote {len(records)} demonstrations from {demo_from}")
        if split == "demo" and len(records) < args.demo_size:
            _log(f"{args.name}/demo: asked for {args.demo_size}, only {len(records)} available")
    for split, d in data.items():
        src = {"split": split, "path": str(d.path), "sha256": sha256_file(d.path)}
        if d.labels_path:
            src["labels_file"] = {"path": str(d.labels_path),
                                  "sha256": sha256_file(d.labels_path)}
        summary["sources"].append(src)
    write_json(out_dir / "summary.json", summary)


if __name__ == "__main__":
    run_cli(main)
