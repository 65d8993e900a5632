"""Read one local data file, in its original format, into a list of dict rows.

Formats (chosen by extension, or forced with `fmt`):
- `tsv`  (.tsv): GLUE style, a header line then one row per line, tab-separated, no quoting
  at all (QUOTE_NONE: a `"` is literal text), LF or CRLF line endings. A line whose field
  count differs from the header's is kept as a row carrying `MALFORMED` (the adapters drop it
  with that reason), so it is counted, never lost silently.
- `jsonl` (.jsonl): one JSON object per line; blank lines are skipped.
- `json` (.json): a JSON array of objects (JSON lines named `.json`, as `datasets`'
  `to_json` writes them, are read as `jsonl`).
- `csv` (.csv): a header line, RFC-4180 quoting (fields may hold quoted newlines).
- `parquet` (.parquet): what `python -m amuro.download_dataset` writes.

A separate labels file (SocialIQa's `dev-labels.lst`: line i is the label of row i) is joined
onto the rows as field `label` by `attach_labels`; a count mismatch is refused.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from amuro.errors import AmuroError

FORMATS = ("tsv", "jsonl", "json", "csv", "parquet")
EXTENSIONS = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".csv": "csv",
              ".parquet": "parquet"}
MALFORMED = "__malformed__"  # key set on a row whose line could not be split like the header


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise AmuroError(f"{path}: format {fmt!r} unknown; expected one of {list(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise AmuroError(
            f"{path}: cannot tell the file format from extension {suffix or '(none)'!r}; "
            f"expected one of {sorted(EXTENSIONS)} or an explicit format {list(FORMATS)}"
        )
    return EXTENSIONS[suffix]


def _check_file(path: Path, fmt: str) -> None:
    if not path.exists():
        raise AmuroError(f"{path}: file not found (expected a {fmt} data file)")
    if not path.is_file():
        raise AmuroError(f"{path}: not a file (expected a {fmt} data file)")


def _text(path: Path, what: str) -> str:
    data = path.read_bytes()
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = bom + err.start
        line = data.count(b"\n", 0, at) + 1
        raise AmuroError(f"{path}:{line}: byte offset {at}: not UTF-8 text (byte "
                         f"0x{data[at]:02x}); expected {what}") from None


def read_tsv(path: Path) -> list[dict]:
    lines = _text(path, "a tab-separated file with a header line").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise AmuroError(f"{path}: empty file (expected a header line of tab-separated names)")
    header = lines[0].split("\t")
    if len(header) < 2:
        raise AmuroError(f"{path}: header line has no tab (expected tab-separated field names, "
                         f"got {lines[0][:60]!r})")
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        if line == "":
            continue
        parts = line.split("\t")
        if len(parts) == len(header):
            rows.append(dict(zip(header, parts, strict=True)))
        else:
            row = dict(zip(header, parts, strict=False))
            row[MALFORMED] = (f"line {lineno} has {len(parts)} tab-separated fields, "
                              f"the header has {len(header)}")
            rows.append(row)
    return rows


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(_text(path, "JSON lines").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise AmuroError(f"{path}:{lineno}: not valid JSON ({err.msg}); "
                             "expected one JSON object per line") from None
        if not isinstance(row, dict):
            raise AmuroError(f"{path}:{lineno}: a JSON {type(row).__name__}; "
                             "expected one JSON object per line")
        rows.append(row)
    return rows


def read_json(path: Path) -> list[dict]:
    text = _text(path, "a JSON array of objects")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            return read_jsonl(path)  # JSON lines named .json (datasets' to_json default)
        raise AmuroError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); "
                         "expected a JSON array of objects") from None
    if not isinstance(data, list):
        raise AmuroError(f"{path}: top level is a JSON {type(data).__name__}; "
                         "expected a JSON array of objects")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise AmuroError(f"{path}: element {i} is a JSON {type(row).__name__}; "
                             "expected a JSON array of objects")
    return data


def read_csv(path: Path) -> list[dict]:
    text = _text(path, "a CSV file with a header line")
    # News articles can exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    # newline="" so quoted fields keep their own line breaks (and only \n, \r, \r\n end lines).
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise AmuroError(f"{path}: empty file (expected a CSV header line)")
        rows = []
        for parts in reader:
            if not parts:
                continue
            row = dict(zip(header, parts, strict=False))
            if len(parts) != len(header):
                row[MALFORMED] = (f"record ending on line {reader.line_num} has {len(parts)} "
                                  f"fields, the header has {len(header)}")
            rows.append(row)
    except csv.Error as err:
        raise AmuroError(f"{path}:{reader.line_num}: bad CSV ({err}); expected "
                         "comma-separated fields, quoted with \" where needed") from None
    return rows


def read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a damaged file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AmuroError(f"{path}: not a readable parquet file ({first})") from None


READERS = {"tsv": read_tsv, "jsonl": read_jsonl, "json": read_json, "csv": read_csv,
           "parquet": read_parquet}


def read_rows(path: str | Path, fmt: str | None = None) -> list[dict]:
    """All rows of `path`, a file in one of FORMATS (from its extension unless `fmt`)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    _check_file(path, fmt)
    return READERS[fmt](path)


def read_labels(path: str | Path) -> list[str]:
    """A labels file: one label per line (SocialIQa `*-labels.lst`)."""
    path = Path(path)
    _check_file(path, "labels (one label per line)")
    lines = _text(path, "one label per line").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def attach_labels(rows: list[dict], labels: list[str], *, data_path, labels_path,
                  field: str = "label") -> list[dict]:
    """Join labels onto rows by position; refuses a count mismatch or a row that has one."""
    if len(labels) != len(rows):
        raise AmuroError(
            f"{labels_path}: {len(labels)} labels for {len(rows)} rows of {data_path}; "
            "expected exactly one label line per data row, in the same order"
        )
    if rows and field in rows[0]:
        raise AmuroError(f"{data_path}: rows already have field {field!r}; "
                         f"expected no labels file for this data file (got {labels_path})")
    return [{**row, field: label} for row, label in zip(rows, labels, strict=True)]
