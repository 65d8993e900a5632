"""Download one dataset split to a local file (run on a machine that can reach the hub).

    python -m amuro.download_dataset --hub-id nyu-mll/glue --config mnli \
        --split validation_matched --out resources/datasets/mnli_validation_matched.parquet
    python -m amuro.download_dataset --url https://raw.githubusercontent.com/princeton-nlp/\
LLMBar/main/Dataset/LLMBar/Natural/dataset.json --out resources/datasets/llmbar_natural.json

`--hub-id`: `datasets.load_dataset(ID, CONFIG, split=SPLIT, revision=REV)` written as parquet
(atomically). A script-only repository (refused by datasets >= 4) is retried with
`revision="refs/convert/parquet"`, the hub's parquet conversion.
`--url`: the file as served (e.g. LLMBar's GitHub JSON); a `.parquet` --out converts a JSON
array of objects to parquet.

Offline (HF_DATASETS_OFFLINE or HF_HUB_OFFLINE set, or no connection) it fails at once with one
line: the command to run on a networked machine and where to put the file - or name a local
file in its original format in the config instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from amuro.errors import AmuroError, run_cli
from amuro.io import atomic_path

OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
PARQUET_REVISION = "refs/convert/parquet"
URL_TIMEOUT_S = 60
_CONNECTION_NAMES = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ConnectError",
                     "OfflineModeIsEnabled", "LocalEntryNotFoundError", "MaxRetryError",
                     "NewConnectionError", "URLError"}


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.download_dataset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--hub-id", help="Hugging Face dataset id, e.g. nyu-mll/glue")
    src.add_argument("--url", help="a file to fetch as is (e.g. LLMBar's GitHub JSON)")
    ap.add_argument("--config", help="dataset configuration, e.g. mnli")
    ap.add_argument("--split", help="split to download, e.g. validation_matched")
    ap.add_argument("--revision", help="hub revision (branch, tag or commit)")
    ap.add_argument("--out", required=True, help="output file, e.g. resources/datasets/x.parquet")
    return ap.parse_args(argv)


def offline_env() -> str | None:
    """The first offline variable that is set to a true value, if any."""
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return var
    return None


def command_line(args) -> str:
    parts = ["python", "-m", "amuro.download_dataset"]
    if args.hub_id:
        parts += ["--hub-id", args.hub_id]
        for opt in ("config", "split", "revision"):
            if getattr(args, opt):
                parts += [f"--{opt}", getattr(args, opt)]
    else:
        parts += ["--url", args.url]
    parts += ["--out", args.out]
    return shlex.join(parts)


def offline_error(args, why: str) -> AmuroError:
    if args.hub_id:
        what = f"{args.hub_id}{f' ({args.config})' if args.config else ''} split {args.split}"
    else:
        what = args.url
    return AmuroError(
        f"cannot download {what}: {why}. On a networked machine run `{command_line(args)}` and "
        f"copy the file to {args.out} here; or name a local file in its original format "
        "(e.g. the GLUE .tsv) in the config instead"
    )


def is_connection_error(err: BaseException) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)):
            return True
        if type(err).__name__ in _CONNECTION_NAMES:
            return True
        err = err.__cause__ or err.__context__
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _is_script_only(err: BaseException) -> bool:
    text = str(err)
    return "scripts are no longer supported" in text or "loading script" in text.lower()


def download_hub(args) -> str:
    import datasets

    def load(revision):
        return datasets.load_dataset(args.hub_id, args.config, split=args.split,
                                     revision=revision)

    revision = args.revision
    try:
        try:
            ds = load(revision)
        except Exception as err:
            if not _is_script_only(err) or revision == PARQUET_REVISION:
                raise
            revision = PARQUET_REVISION
            ds = load(revision)
    except Exception as err:
        if is_connection_error(err):
            raise offline_error(args, f"no connection ({_first_line(err)})") from None
        raise AmuroError(f"load_dataset({args.hub_id!r}, {args.config!r}, split={args.split!r}, "
                         f"revision={revision!r}) failed: {_first_line(err)}") from None
    if not isinstance(ds, datasets.Dataset):
        raise AmuroError(f"--split {args.split!r}: expected one split, got {type(ds).__name__}")
    with atomic_path(args.out) as tmp:
        ds.to_parquet(str(tmp))
    return f"{len(ds)} rows (revision {revision or 'default'})"


def download_url(args) -> str:
    try:
        with urllib.request.urlopen(args.url, timeout=URL_TIMEOUT_S) as resp:
            body = resp.read()
    except Exception as err:
        if is_connection_error(err) and not isinstance(err, urllib.error.HTTPError):
            raise offline_error(args, f"no connection ({_first_line(err)})") from None
        raise AmuroError(f"--url {args.url}: download failed ({_first_line(err)})") from None
    out = Path(args.out)
    if out.suffix.lower() in (".json", ".parquet"):
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AmuroError(f"--url {args.url}: not JSON ({_first_line(err)}); expected a "
                             f"JSON file for {out.name}") from None
    if out.suffix.lower() == ".parquet":
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise AmuroError(f"--url {args.url}: expected a JSON array of objects to write "
                             "as parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(out) as tmp:
            pq.write_table(pa.Table.from_pylist(data), tmp)
        return f"{len(data)} rows"
    with atomic_path(out) as tmp:
        tmp.write_bytes(body)
    return f"{len(body)} bytes"


def main(argv=None):
    args = parse_args(argv)
    if args.hub_id and not args.split:
        raise AmuroError("--split is required with --hub-id (e.g. --split validation)")
    if args.hub_id and Path(args.out).suffix.lower() != ".parquet":
        raise AmuroError(f"--out {args.out}: expected a .parquet path (--hub-id writes parquet)")
    if args.url and (args.config or args.split or args.revision):
        raise AmuroError("--url takes no --config/--split/--revision")
    var = offline_env()
    if var:  # decided before anything touches the network
        raise offline_error(args, f"offline ({var}={os.environ[var]})")
    done = download_hub(args) if args.hub_id else download_url(args)
    print(f"[download_dataset] {args.hub_id or args.url} -> {args.out}: {done}",
          file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
