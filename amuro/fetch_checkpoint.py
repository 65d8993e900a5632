"""Fetch one checkpoint of a series into a plain Hugging Face folder, and write the series manifest.

    python -m amuro.fetch_checkpoint --source SOURCE (--step N | --revision REV | both) \\
        --out resources/models/<model>/step<N> \\
        --record results/checkpoints/<model>/records/step<N>.json
    python -m amuro.fetch_checkpoint manifest --records A.json B.json ... --model <model> \\
        --out results/checkpoints/<model>/manifest.json

SOURCE is a JSON object:
  {"type": "hub", "repo": "allenai/OLMo-1B-hf", "branch_pattern": "step{step}-"}
      --step: the one branch starting with the pattern (step1000-tokens4B; an exact step1000
      also matches); --revision: a branch (main) or a commit sha. With both, --revision is
      fetched and --step is where it sits in the series. Downloads to the hub cache (HF_HOME or
      --cache-dir), pinned to the resolved commit.
  {"type": "local", "path": "/data/olmo/step{step}"}      one folder per checkpoint, or
  {"type": "local", "path": "/data/olmo/{branch}"}        folders named like hub branches (as
      `hf download --local-dir /data/olmo/<branch>` leaves them), resolved like hub branches.
  {"type": "gguf", "path": "/x/SmolLM2-135M-Instruct.Q4_1.gguf"}    dequantised to float32.
Optional keys: "trust_remote_code": true (hub/local; never implied), "tokens_per_step": N (token
count when the branch or folder name gives none).

The output folder holds config, tokenizer and *.safetensors weights, written atomically. hub and
local safetensors files are hard-linked (copied when linking fails, or with --copy), so their
sha256 is the published file's; pickle weights (pytorch_model*.bin) are converted to
safetensors. Every checkpoint is loaded before it is written and refused if any weight would be
newly initialised. The record is {"step", "revision", "commit", "tokens", "path", "sha256",
"source", "files", "seconds"}. One line per phase (resolve, download, load, save, verify) goes to
stderr with its seconds.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import difflib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from fnmatch import fnmatch  # noqa: E402
from pathlib import Path  # noqa: E402

from amuro.checkpoints import (  # noqa: E402
    DEFAULT_PATTERN,
    duplicate_pairs,
    duplicate_warnings,
    list_branches,
    load_checked,
    offline_hint,
    refuse_random_init,
    resolve_step,
    step_from_branch,
    tokens_from_branch,
    weights_sha256,
)
from amuro.errors import AmuroError, run_cli  # noqa: E402
from amuro.io import atomic_dir, parse_json_object, sha256_file, write_json  # noqa: E402

SOURCE_TYPES = ("hub", "local", "gguf")
SOURCE_KEYS = ("type", "repo", "branch_pattern", "path", "trust_remote_code", "tokens_per_step")
# What a checkpoint folder needs; anything else (optimizer state, other formats) stays behind.
MODEL_FILES = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
               "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json",
               "vocab.txt", "merges.txt", "*.tiktoken", "chat_template.*")
PICKLE_FILES = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
CODE_FILES = ("*.py",)
# The gguf conversion is checked by greedy decoding this prompt before and after.
CHECK_PROMPT = "The capital of France is"
CHECK_NEW_TOKENS = 8
_SHA = re.compile(r"[0-9a-f]{40}")


class Progress:
    """One stderr line per phase with its seconds; the phases also go into the record."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, phase: str, detail: str = "") -> None:
        now = time.perf_counter()
        secs, self._t = now - self._t, now
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + secs, 3)
        print(f"[fetch] {phase} {secs:.1f} s" + (f": {detail}" if detail else ""),
              file=sys.stderr, flush=True)


# ---- arguments -------------------------------------------------------------------------------


def parse_source(text: str) -> dict:
    src = parse_json_object("--source", text)
    kind = src.get("type")
    if kind not in SOURCE_TYPES:
        raise AmuroError(f"--source: type must be one of {', '.join(SOURCE_TYPES)} "
                         f"(got {kind!r})")
    unknown = sorted(set(src) - set(SOURCE_KEYS))
    if unknown:
        raise AmuroError(f"--source: unknown key(s) {', '.join(unknown)}; expected some of "
                         f"{', '.join(SOURCE_KEYS)}")
    need = "repo" if kind == "hub" else "path"
    if not isinstance(src.get(need), str) or not src[need].strip():
        raise AmuroError(f"--source: a {kind} source needs {need!r} (a non-empty string)")
    trust = src.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise AmuroError(f"--source: trust_remote_code must be true or false (got {trust!r})")
    if trust and kind == "gguf":
        raise AmuroError("--source: trust_remote_code does not apply to a gguf source "
                         "(it loads into transformers' own model classes)")
    pattern = src.get("branch_pattern", DEFAULT_PATTERN)
    if not isinstance(pattern, str) or "{step" not in pattern:
        raise AmuroError(f"--source: branch_pattern must be a string with {{step}}, e.g. "
                         f"{DEFAULT_PATTERN!r} (got {pattern!r})")
    per_step = src.get("tokens_per_step")
    if per_step is not None and (not isinstance(per_step, int) or isinstance(per_step, bool)
                                 or per_step < 1):
        raise AmuroError(f"--source: tokens_per_step must be a positive integer "
                         f"(got {per_step!r})")
    return src


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.fetch_checkpoint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="JSON object: type hub, local or gguf")
    ap.add_argument("--step", type=int, help="pre-training step of the checkpoint")
    ap.add_argument("--revision", help="hub branch or commit (e.g. main); local: folder name")
    ap.add_argument("--out", required=True, help="output: Hugging Face checkpoint folder")
    ap.add_argument("--record", required=True, help="output: JSON record of the checkpoint")
    ap.add_argument("--cache-dir", help="hub download cache (default: the Hugging Face cache)")
    ap.add_argument("--copy", action="store_true",
                    help="copy weight files instead of hard-linking them")
    args = ap.parse_args(argv)
    if args.step is not None and args.step < 0:
        raise AmuroError(f"--step: expected a step >= 0 (got {args.step})")
    return args


def parse_manifest_args(argv):
    ap = argparse.ArgumentParser(prog="python -m amuro.fetch_checkpoint manifest",
                                 description="Collect per-checkpoint records into the series "
                                             "manifest, sorted by step; warn on duplicates.")
    ap.add_argument("--records", nargs="+", required=True, help="records written by a fetch")
    ap.add_argument("--model", required=True, help="the series' slug")
    ap.add_argument("--out", required=True, help="output: manifest.json")
    return ap.parse_args(argv)


# ---- shared steps ----------------------------------------------------------------------------


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _tokens(name: str | None, step: int | None, src: dict) -> int | None:
    tokens = tokens_from_branch(name) if name else None
    if tokens is None and step is not None and src.get("tokens_per_step"):
        tokens = step * src["tokens_per_step"]
    return tokens


def _wanted(name: str, trust_remote_code: bool) -> bool:
    patterns = MODEL_FILES + (CODE_FILES if trust_remote_code else ())
    return any(fnmatch(name, p) for p in patterns)


def _usual_permissions(folder: Path) -> None:
    """save_pretrained writes weights as 0600; give written files the umask's permissions."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _place(files: list[Path], dest: Path, link: bool) -> str:
    """Hard-link (or copy) files into `dest`; says which happened."""
    linked = copied = 0
    for path in files:
        target = dest / path.name
        real = path.resolve()  # hub cache snapshots are symlinks to blobs
        if link:
            try:
                os.link(real, target)
                linked += 1
                continue
            except OSError:  # another file system, or links not allowed
                pass
        shutil.copyfile(real, target)
        copied += 1
    return "hardlinked" if not copied else "copied" if not linked else "hardlinked+copied"


def materialise(folder: Path, out: Path, *, label: str, trust_remote_code: bool, link: bool,
                progress: Progress) -> tuple[str, str]:
    """Load `folder` (refusing new weights), then write `out`; returns (sha256, how)."""
    from amuro.modeling import load_model, load_tokenizer

    if not (folder / "config.json").is_file():
        raise AmuroError(f"{label}: {folder} has no config.json (not a Hugging Face checkpoint)")
    names = [p.name for p in folder.iterdir() if p.is_file()]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(fnmatch(n, PICKLE_FILES[0]) for n in names)
    if not has_safetensors and not has_pickle:
        raise AmuroError(f"{label}: {folder} has no weights (*.safetensors or "
                         "pytorch_model*.bin)")
    _quiet_transformers()
    model = load_checked(folder, label=label, trust_remote_code=trust_remote_code,
                         use_safetensors=has_safetensors)
    n_params = sum(p.numel() for p in model.parameters())
    progress.done("load", f"{type(model).__name__}, {n_params / 1e6:.1f}M parameters, "
                          f"{model.dtype}")
    files = [folder / n for n in sorted(names) if _wanted(n, trust_remote_code)]
    with atomic_dir(out) as staging:
        if has_safetensors:
            how = _place(files, staging, link)
            del model
        else:  # pickle weights: written once as safetensors, then reloaded the way jobs will
            model.save_pretrained(staging)
            del model
            _place([f for f in files if not (staging / f.name).exists()], staging, link=False)
            _usual_permissions(staging)
            load_model(staging, trust_remote_code=trust_remote_code)
            how = "converted from pickle to safetensors"
        load_tokenizer(staging)
        sha = weights_sha256(staging)
    progress.done("save", f"{out} ({how})")
    return sha, how


# ---- sources ---------------------------------------------------------------------------------


def _close(name: str, names) -> str:
    near = difflib.get_close_matches(name, list(names), n=5, cutoff=0.4) or sorted(names)[:5]
    return ", ".join(near) or "(none)"


def _hub_call(repo: str, what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except AmuroError:
        raise
    except Exception as err:  # network, disk, auth: one line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise AmuroError(f"hub source {repo}: {what} failed ({type(err).__name__}: {first}); "
                         f"{offline_hint(repo)}") from None


def fetch_hub(src: dict, args, progress: Progress) -> dict:
    repo, pattern = src["repo"], src.get("branch_pattern", DEFAULT_PATTERN)
    trust = src.get("trust_remote_code", False)
    if args.step is None and args.revision is None:
        raise AmuroError("a hub source needs --step N (resolved by branch_pattern) or "
                         "--revision REV (e.g. main)")
    branches = list_branches(repo)
    if args.revision is None:
        revision = resolve_step(list(branches), args.step, pattern, repo=repo)
        commit = branches[revision]
    elif args.revision in branches:
        revision, commit = args.revision, branches[args.revision]
    elif _SHA.fullmatch(args.revision):
        revision = commit = args.revision
    else:
        raise AmuroError(f"{repo}: no branch {args.revision!r}; close branches: "
                         f"{_close(args.revision, branches)}")
    step = args.step if args.step is not None else step_from_branch(revision, pattern)
    progress.done("resolve", f"{repo} {revision} @ {commit}")

    from huggingface_hub import snapshot_download

    patterns = list(MODEL_FILES + (CODE_FILES if trust else ()))
    snapshot = Path(_hub_call(repo, "download", snapshot_download, repo, revision=commit,
                              allow_patterns=patterns, cache_dir=args.cache_dir))
    if not any(snapshot.glob("*.safetensors")):  # older branches publish pickle weights only
        snapshot = Path(_hub_call(repo, "download", snapshot_download, repo, revision=commit,
                                  allow_patterns=patterns + list(PICKLE_FILES),
                                  cache_dir=args.cache_dir))
    progress.done("download", str(snapshot))
    sha, how = materialise(snapshot, Path(args.out), label=f"{repo}@{revision}",
                           trust_remote_code=trust, link=not args.copy, progress=progress)
    return {"step": step, "revision": revision, "commit": commit,
            "tokens": _tokens(revision, step, src), "sha256": sha, "files": how}


def _local_commit(folder: Path) -> str | None:
    """The commit `hf download --local-dir` recorded for the folder's config.json, if any."""
    meta = folder / ".cache" / "huggingface" / "download" / "config.json.metadata"
    with contextlib.suppress(OSError, IndexError):
        first = meta.read_text(encoding="utf-8").splitlines()[0].strip()
        if _SHA.fullmatch(first):
            return first
    return None


def local_folder(src: dict, step: int | None, revision: str | None) -> tuple[Path, str | None]:
    """The checkpoint folder a local source names for this step; and its revision name."""
    template = src["path"]
    if "{branch}" in template:
        parent_t, rest = template.split("{branch}", 1)
        if "{" in parent_t or "{branch}" in rest or (parent_t and parent_t[-1] not in "/\\"):
            raise AmuroError(f"--source: path {template!r}: {{branch}} must be a whole folder "
                             "name, used once, e.g. /data/olmo/{branch}")
        parent = Path(parent_t or ".")
        if not parent.is_dir():
            raise AmuroError(f"local source: {parent} is not a folder (from path {template!r})")
        names = sorted(p.name for p in parent.iterdir() if p.is_dir())
        if revision is not None:
            if revision not in names:
                raise AmuroError(f"local source: no folder {revision!r} in {parent}; close: "
                                 f"{_close(revision, names)}")
            name = revision
        elif step is not None:
            name = resolve_step(names, step, src.get("branch_pattern", DEFAULT_PATTERN),
                                repo=str(parent))
        else:
            raise AmuroError("a local source with {branch} needs --step N or --revision NAME")
        return parent / name / rest.lstrip("/\\"), name
    path = template
    for field, value, flag in (("{step}", step, "--step N"), ("{revision}", revision,
                                                               "--revision NAME")):
        if field in path:
            if value is None:
                raise AmuroError(f"local source path {template!r} has {field}: give {flag}")
            path = path.replace(field, str(value))
    return Path(path), revision


def fetch_local(src: dict, args, progress: Progress) -> dict:
    folder, revision = local_folder(src, args.step, args.revision)
    if not folder.is_dir():
        raise AmuroError(f"local source: {folder} is not a folder (path {src['path']!r}, "
                         f"step {args.step})")
    step = args.step
    if step is None and revision is not None:
        step = step_from_branch(revision, src.get("branch_pattern", DEFAULT_PATTERN))
    progress.done("resolve", str(folder))
    sha, how = materialise(folder, Path(args.out), label=str(folder),
                           trust_remote_code=src.get("trust_remote_code", False),
                           link=not args.copy, progress=progress)
    return {"step": step, "revision": revision or folder.name, "commit": _local_commit(folder),
            "tokens": _tokens(folder.name, step, src), "sha256": sha, "files": how}


def _greedy(model, tokenizer) -> tuple[list[int], list[int]]:
    import torch

    enc = tokenizer(CHECK_PROMPT, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=CHECK_NEW_TOKENS, do_sample=False,
                             pad_token_id=pad)
    prompt = enc["input_ids"][0].tolist()
    return prompt, out[0, len(prompt):].tolist()


def _plain_copy(model, label: str):
    """The same weights in a plain (unquantised) model of the same class, which can be saved:
    save_pretrained refuses a model loaded from gguf."""
    import copy

    import torch

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = type(model)(config).to(torch.float32)
    result = plain.load_state_dict(model.state_dict(), strict=False)
    refuse_random_init({"missing_keys": result.missing_keys}, label)
    if result.unexpected_keys:
        raise AmuroError(f"{label}: {len(result.unexpected_keys)} tensor(s) have no place in "
                         f"{type(model).__name__} ({', '.join(result.unexpected_keys[:3])})")
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()


def fetch_gguf(src: dict, args, progress: Progress) -> dict:
    gguf_path = Path(src["path"])
    if not gguf_path.is_file() or gguf_path.suffix != ".gguf":
        raise AmuroError(f"gguf source: {gguf_path} is not a .gguf file")
    try:
        import gguf  # noqa: F401  (transformers reads the file with it)
    except ImportError:
        raise AmuroError("a gguf source needs the `gguf` package (pip install gguf)") from None
    progress.done("resolve", str(gguf_path))
    import torch
    from transformers import AutoTokenizer

    from amuro.modeling import load_model, load_tokenizer

    _quiet_transformers()
    label = str(gguf_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise AmuroError(f"{label}: cannot read its tokenizer ({type(err).__name__}: "
                         f"{first})") from None
    model = load_checked(gguf_path.parent, label=label, dtype=torch.float32,
                         use_safetensors=None, gguf_file=gguf_path.name)
    prompt, reference = _greedy(model, tokenizer)
    progress.done("load", f"{type(model).__name__}, "
                          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
                          "dequantised to float32")
    plain = _plain_copy(model, label)
    del model
    out = Path(args.out)
    with atomic_dir(out) as staging:
        plain.save_pretrained(staging)
        if tokenizer.model_max_length > 10**12:  # gguf gives none: the model's context
            tokenizer.model_max_length = int(plain.config.max_position_embeddings)
        tokenizer.save_pretrained(staging)
        _usual_permissions(staging)
        del plain
        progress.done("save", str(out))
        reloaded, tok = load_model(staging), load_tokenizer(staging)
        prompt_again, completion = _greedy(reloaded, tok)
        if (prompt_again, completion) != (prompt, reference):
            raise AmuroError(f"{label}: the saved folder does not reproduce the gguf model "
                             f"(greedy tokens {completion} vs {reference} for "
                             f"{CHECK_PROMPT!r})")
        sha = weights_sha256(staging)
    text = tok.decode(completion, skip_special_tokens=True)
    progress.done("verify", f"same greedy tokens after reload: {CHECK_PROMPT!r} -> {text!r}")
    return {"step": args.step, "revision": args.revision or gguf_path.name, "commit": None,
            "tokens": _tokens(None, args.step, src), "sha256": sha,
            "files": "dequantised from gguf to float32 safetensors",
            "gguf_sha256": sha256_file(gguf_path),
            "check": {"prompt": CHECK_PROMPT, "completion": text}}


FETCHERS = {"hub": fetch_hub, "local": fetch_local, "gguf": fetch_gguf}


def fetch(argv) -> dict:
    args = parse_args(argv)
    src = parse_source(args.source)
    progress = Progress()
    record = FETCHERS[src["type"]](src, args, progress)
    record.update(path=args.out, source=src)
    record["seconds"] = {**progress.seconds,
                         "total": round(time.perf_counter() - _T_START, 3)}
    write_json(args.record, record)
    return record


# ---- manifest --------------------------------------------------------------------------------

RECORD_KEYS = ("step", "tokens", "path", "sha256")
ENTRY_KEYS = ("step", "tokens", "path", "sha256", "revision", "commit", "source")


def _read_record(path: str) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AmuroError(f"{path}: record not found") from None
    except json.JSONDecodeError as err:
        raise AmuroError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        raise AmuroError(f"{path}: not a checkpoint record (expected keys "
                         f"{', '.join(RECORD_KEYS)})")
    step = record["step"]
    if not isinstance(step, int) or isinstance(step, bool):
        raise AmuroError(f"{path}: no step (revision {record.get('revision')!r}); fetch it with "
                         "--step N as well, the step where it sits in the series")
    return record


def manifest(argv) -> dict:
    args = parse_manifest_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.model):
        raise AmuroError(f"--model {args.model!r}: expected a slug (letters, digits, _ . -)")
    entries, seen = [], {}
    for path in args.records:
        record = _read_record(path)
        if record["step"] in seen:
            raise AmuroError(f"step {record['step']} has two records: {seen[record['step']]} "
                             f"and {path}")
        seen[record["step"]] = path
        entries.append({k: record.get(k) for k in ENTRY_KEYS})
    entries.sort(key=lambda e: e["step"])
    for line in duplicate_warnings(entries):
        print(line, file=sys.stderr)
    for e in entries:
        if e["tokens"] is None:
            print(f"warning: step {e['step']} has no token count (its branch or folder name "
                  "gives none; set tokens_per_step on the source)", file=sys.stderr)
    result = {"model": args.model, "checkpoints": entries,
              "duplicates": [[a["step"], b["step"]] for a, b in duplicate_pairs(entries)]}
    write_json(args.out, result)
    return result


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["manifest"]:
        manifest(argv[1:])
    else:
        fetch(argv)


if __name__ == "__main__":
    run_cli(main)
