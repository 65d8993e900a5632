"""Checkpoint series from the hub or disk: step -> branch, weight hashes, and loading guards.

Hub series name their checkpoints by branch: `step1000-tokens4B` (allenai/OLMo-1B-hf),
`step1000` (EleutherAI/pythia-*), `stage1-step1000-tokens5B` (allenai/OLMo-2-*). The token suffix
differs between repositories, so it is never computed: the branches are listed and the one that
starts with the step's prefix is taken (reference §5).

torch, transformers and huggingface_hub are imported inside the functions that need them, so
the workflow can import this module cheaply.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from amuro.errors import AmuroError

DEFAULT_PATTERN = "step{step}-"
_SEPARATORS = "-_"
_TOKENS = re.compile(r"(?:^|[-_])tokens(\d+(?:\.\d+)?)([KMBT]?)(?=$|[-_])", re.IGNORECASE)
_UNIT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_STEP_FIELD = re.compile(r"\{step(?::[^}]*)?\}")
_SHOWN = 5  # branches or keys quoted in an error message


def _format_pattern(pattern: str, step: int) -> str:
    if not _STEP_FIELD.search(pattern):
        raise AmuroError(f"branch_pattern {pattern!r}: expected a pattern with {{step}}, "
                         f"e.g. {DEFAULT_PATTERN!r}")
    try:
        return pattern.format(step=step)
    except (KeyError, IndexError, ValueError) as err:
        raise AmuroError(f"branch_pattern {pattern!r}: cannot substitute the step ({err}); "
                         f"expected only {{step}}, e.g. {DEFAULT_PATTERN!r}") from None


def _matches(branch: str, prefix: str) -> bool:
    """`prefix` ends with a separator: a branch starting with it, or the prefix without it
    (Pythia's `step1000` for `step{step}-`). Otherwise the branch must be the prefix or continue
    with a separator, so `step1` never matches `step1000`."""
    stem = prefix.rstrip(_SEPARATORS)
    if branch == stem:
        return True
    if stem != prefix:
        return branch.startswith(prefix)
    return branch.startswith(stem) and branch[len(stem)] in _SEPARATORS


def step_from_branch(branch: str, pattern: str = DEFAULT_PATTERN) -> int | None:
    """The step a branch names under `pattern` (`step1000-tokens4B` -> 1000), else None."""
    parts = _STEP_FIELD.split(pattern, maxsplit=1)
    head, tail = parts[0], parts[1] if len(parts) > 1 else ""
    tail = tail.rstrip(_SEPARATORS)
    end = re.escape(tail) + f"(?:$|[{_SEPARATORS}])" if tail else f"(?:$|[{_SEPARATORS}])"
    found = re.match("^" + re.escape(head) + r"(\d+)" + end, branch)
    return int(found.group(1)) if found else None


def _nearby(refs: Iterable[str], step: int, pattern: str) -> str:
    refs = sorted(set(refs))
    stepped = [(s, b) for b in refs if (s := step_from_branch(b, pattern)) is not None]
    if stepped:
        near = sorted(stepped, key=lambda sb: (abs(sb[0] - step), sb[0]))[:_SHOWN]
        shown = [b for _, b in sorted(near)]
    else:
        shown = refs[:_SHOWN]
    more = f" of {len(refs)}" if len(refs) > len(shown) else ""
    return f"nearest branches{more}: {', '.join(shown) or '(none)'}"


def resolve_step(refs: list[str], step: int, pattern: str = DEFAULT_PATTERN, *,
                 repo: str | None = None) -> str:
    """The one branch in `refs` for `step`: it starts with `pattern` with the step substituted.

    `step{step}-` finds `step1000-tokens4B` and also an exact `step1000` (Pythia);
    `stage1-step{step}-` finds OLMo-2's `stage1-step1000-tokens5B`. No match or several
    matches is an error that quotes nearby branches.
    """
    prefix = _format_pattern(pattern, step)
    where = f"{repo}: " if repo else ""
    found = sorted(b for b in refs if _matches(b, prefix))
    if len(found) == 1:
        return found[0]
    if not found:
        raise AmuroError(f"{where}no branch for step {step} (pattern {pattern!r}, looked for "
                         f"{prefix!r}); {_nearby(refs, step, pattern)}")
    raise AmuroError(f"{where}step {step} is ambiguous under pattern {pattern!r}: "
                     f"{len(found)} branches match ({', '.join(found[:_SHOWN])}); "
                     "make branch_pattern more specific")


def tokens_from_branch(branch: str) -> int | None:
    """Tokens seen, from a branch or folder name: `tokens4B` -> 4e9, `tokens1T` -> 1e12."""
    found = _TOKENS.search(branch)
    if not found:
        return None
    number, unit = found.groups()
    return int(Decimal(number) * _UNIT[unit.upper()])


# ---- the hub ---------------------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def offline_hint(repo: str) -> str:
    return (f"on a machine with network run `hf download {repo} --revision <branch> "
            f"--local-dir <DIR>/<branch>` for each checkpoint, copy <DIR> here and use a "
            "local source instead (source: local, path: <DIR>/{branch}, or one folder per "
            "checkpoint with path: <DIR>/step{step})")


def list_branches(repo: str) -> dict[str, str]:
    """Branch name -> commit sha of a hub repository. Offline: an immediate one-line error."""
    if hub_offline():
        raise AmuroError(f"hub source {repo}: cannot list its branches, HF_HUB_OFFLINE is set; "
                         + offline_hint(repo))
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = huggingface_hub.list_repo_refs(repo)
    except RepositoryNotFoundError:
        raise AmuroError(f"hub source {repo}: repository not found (or gated: log in with "
                         "`hf auth login`)") from None
    except Exception as err:  # no network, proxy, rate limit: one line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise AmuroError(f"hub source {repo}: cannot list its branches "
                         f"({type(err).__name__}: {first}); {offline_hint(repo)}") from None
    return {ref.name: ref.target_commit for ref in refs.branches}


# ---- weights ---------------------------------------------------------------------------------

WEIGHT_SUFFIX = ".safetensors"


def weights_sha256(folder: str | Path) -> str:
    """sha256 over the bytes of the folder's *.safetensors files, in name order.

    For a single file this is that file's sha256 (as the tiny series' manifest records, and as
    the hub shows for the LFS file), so hashes compare across sources.
    """
    files = sorted(Path(folder).glob("*" + WEIGHT_SUFFIX))
    if not files:
        raise AmuroError(f"{folder}: no {WEIGHT_SUFFIX} weights to hash")
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _label(entry: dict) -> str:
    step, rev = entry.get("step"), entry.get("revision")
    name = f"step {step}" if step is not None else str(rev)
    return f"{name} ({rev})" if rev and step is not None and rev != f"step{step}" else name


def duplicate_pairs(entries: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of checkpoints (dicts with `sha256`) whose weights are identical."""
    return [(a, b) for i, a in enumerate(entries) for b in entries[i + 1:]
            if a.get("sha256") and a.get("sha256") == b.get("sha256")]


def duplicate_warnings(entries: list[dict]) -> list[str]:
    """One line per pair of checkpoints with identical weights, naming both."""
    return [f"warning: {_label(a)} and {_label(b)} have identical weights "
            f"(sha256 {a['sha256'][:12]}…): a duplicate published checkpoint?"
            for a, b in duplicate_pairs(entries)]


# ---- loading guard ---------------------------------------------------------------------------


def refuse_random_init(info: dict, checkpoint: str) -> None:
    """Fail when loading left weights newly initialised (missing or resized in the checkpoint).

    This is the allenai/OLMo-1B trap: its non-hf weights use other names, so a native class
    loads nothing and silently runs on random weights.
    """
    new = sorted(set(info.get("missing_keys") or ()))
    new += sorted({k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()})
    if new:
        shown = ", ".join(new[:3]) + (", …" if len(new) > 3 else "")
        raise AmuroError(f"{checkpoint}: {len(new)} weight tensor(s) are not in the checkpoint "
                         f"and would be randomly initialised ({shown}); refusing. Is it a "
                         "'-hf' repository of the model, or does its source need "
                         "trust_remote_code: true?")


def load_failure(err: BaseException) -> str:
    """What went wrong loading a model or tokenizer, in one line (type and first line)."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    if type(err).__name__ == "UnpicklingError":
        # transformers reads pickled .bin weights with torch.load(weights_only=True) only
        first = ("a pickled weights file that torch's weights-only loader refuses: it would "
                 "run code or holds objects other than tensors; refusing")
    return f"{type(err).__name__}: {first}"


def load_checked(path: str | Path, *, label: str | None = None, dtype="auto",
                 trust_remote_code: bool = False, use_safetensors: bool | None = True, **kwargs):
    """from_pretrained a local folder and refuse newly initialised weights; returns the model.

    `trust_remote_code` only when the source names it. Other load failures (corrupt or
    truncated files, an unknown architecture) become one line too.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    label = label or str(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its multi-line load report is replaced by the lines below
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code,
            use_safetensors=use_safetensors, output_loading_info=True, **kwargs)
    except AmuroError:
        raise
    except Exception as err:  # corrupt, truncated or malicious files: SafetensorError,
        # UnpicklingError (torch's weights-only loader refused a pickle), JSONDecodeError, ...
        raise AmuroError(f"{label}: cannot load the model ({load_failure(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    refuse_random_init(info, label)
    unused = sorted(info.get("unexpected_keys") or ())
    if unused:
        print(f"warning: {label}: {len(unused)} tensor(s) in the checkpoint are not used by "
              f"{type(model).__name__} ({', '.join(unused[:3])})", file=sys.stderr)
    model.eval()
    return model
