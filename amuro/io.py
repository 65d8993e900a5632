"""Reading and writing files so that a failed step never leaves a half-written output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from amuro.errors import AmuroError


def parse_json_object(name: str, text: str) -> dict:
    """A command-line argument holding a JSON object; `name` (e.g. "--plan") is in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise AmuroError(f"{name}: not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise AmuroError(f"{name}: expected a JSON object")
    return value


_KINDS = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "null": ("null", lambda v: v is None),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "list[str]": ("a list of strings",
                  lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "list[int]": ("a list of integers", lambda v: isinstance(v, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v)),
    "list[object]": ("a list of objects",
                     lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
}


def check_json_types(name: str, obj: dict, spec: dict[str, str], required=()) -> dict:
    """Type-check a hand-given JSON object: `spec` maps a key to its kinds ("int|null", ...).

    One line names the argument and key, e.g. `--settings: 'lr': expected a number, got
    'fast'`; keys not in `spec` are left to the caller. Returns `obj`.
    """
    missing = [k for k in required if k not in obj]
    if missing:
        raise AmuroError(f"{name}: lacks field(s) {missing}")
    for key, kinds in spec.items():
        if key not in obj:
            continue
        options = kinds.split("|")
        if not any(_KINDS[k][1](obj[key]) for k in options):
            wanted = " or ".join(_KINDS[k][0] for k in options)
            shown = repr(obj[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise AmuroError(f"{name}: {key!r}: expected {wanted}, got {shown}")
    return obj


def decode_error(path: str | Path, data: bytes, err: UnicodeDecodeError) -> AmuroError:
    """One line for bytes that are not UTF-8: the file, the line and the byte offset."""
    line = data.count(b"\n", 0, err.start) + 1
    return AmuroError(f"{path}:{line}: byte offset {err.start}: not UTF-8 text "
                      f"(byte 0x{data[err.start]:02x}); expected a UTF-8 file")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file; undecodable bytes are one line naming the line and byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise decode_error(path, data, err) from None


def read_json_object(path: str | Path, hint: str = "") -> dict:
    """A JSON file holding an object; one-line errors name the file (`hint` says what it is)."""
    path = Path(path)
    if not path.is_file():
        raise AmuroError(f"{path}: file not found" + (f" ({hint})" if hint else ""))
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise AmuroError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise AmuroError(f"{path}: expected a JSON object")
    return data


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise AmuroError(f"{path}: file not found")
    rows, offset = [], 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AmuroError(f"{path}:{lineno}: byte offset {offset + err.start}: not UTF-8 "
                                 f"text (byte 0x{raw[err.start]:02x}); expected UTF-8 JSON "
                                 "lines") from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise AmuroError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC, as an OSError or as a library's message (safetensors: "os error 28")."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    text = str(err)
    return "No space left on device" in text or "os error 28" in text


def disk_full_error(path: str | Path) -> AmuroError:
    """One line naming the output that did not fit and the free space where it goes."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return AmuroError(f"{path}: disk full (no space left on device; {free} in {folder}); "
                      "nothing was written")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give the output the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except Exception as err:
        if is_disk_full(err):
            tmp_path.unlink(missing_ok=True)
            raise disk_full_error(path) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as err:
        if is_disk_full(err):
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_full_error(path) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
