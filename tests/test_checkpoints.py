"""Checkpoint series: step -> branch, token counts, the random-init guard, and fetching."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from amuro.checkpoints import (
    duplicate_warnings,
    list_branches,
    resolve_step,
    step_from_branch,
    tokens_from_branch,
    weights_sha256,
)
from amuro.errors import AmuroError, run_cli
from amuro.fetch_checkpoint import main
from amuro.io import sha256_file

# Branch names in the shape allenai/OLMo-1B-hf publishes (a few of its ~330 branches).
OLMO_REFS = [
    "main",
    "step1000-tokens4B",
    "step2000-tokens8B",
    "step10000-tokens41B",
    "step18000-tokens75B",
    "step100000-tokens419B",
    "step342000-tokens1434B",
    "step424000-tokens1778B",
    "step738000-tokens3095B",
]
PYTHIA_REFS = ["main", "step0", "step1", "step2", "step512", "step1000", "step10000", "step143000"]
OLMO2_REFS = [
    "main",
    "stage1-step1000-tokens5B",
    "stage1-step10000-tokens42B",
    "stage1-step928646-tokens3896B",
    "stage2-ingredient1-step1000-tokens5B",
]


def _run(argv, capsys) -> tuple[int, str]:
    """Run the CLI as `python -m` would; (exit status, stderr)."""
    try:
        run_cli(main, argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- step -> branch ------------------------------------------------------------------------


@pytest.mark.parametrize("step, branch", [
    (1000, "step1000-tokens4B"),
    (10000, "step10000-tokens41B"),
    (342000, "step342000-tokens1434B"),
    (738000, "step738000-tokens3095B"),
])  # fmt: skip
def test_olmo_branch_by_prefix(step, branch):
    assert resolve_step(OLMO_REFS, step) == branch


def test_missing_step_lists_nearby_branches():
    with pytest.raises(AmuroError) as err:
        resolve_step(OLMO_REFS, 1500, repo="allenai/OLMo-1B-hf")
    msg = str(err.value)
    assert "\n" not in msg
    assert "allenai/OLMo-1B-hf" in msg and "step 1500" in msg
    assert "step1000-tokens4B" in msg and "step2000-tokens8B" in msg
    assert "step738000" not in msg  # only the nearest few


def test_ambiguous_pattern_is_refused():
    refs = [*OLMO_REFS, "step1000-tokens5B"]
    with pytest.raises(AmuroError, match="ambiguous.*step1000-tokens4B, step1000-tokens5B"):
        resolve_step(refs, 1000)
    # An exact branch and a prefixed one both match: ambiguous too.
    with pytest.raises(AmuroError, match="2 branches match"):
        resolve_step([*PYTHIA_REFS, "step1000-tokens2B"], 1000)


def test_pythia_exact_branches():
    assert resolve_step(PYTHIA_REFS, 1000) == "step1000"
    assert resolve_step(PYTHIA_REFS, 1) == "step1"  # not step10000 or step143000
    assert resolve_step(PYTHIA_REFS, 0, "step{step}") == "step0"
    with pytest.raises(AmuroError, match="no branch for step 3"):
        resolve_step(PYTHIA_REFS, 3)


def test_olmo2_stage_pattern():
    assert resolve_step(OLMO2_REFS, 1000, "stage1-step{step}-") == "stage1-step1000-tokens5B"
    assert resolve_step(OLMO2_REFS, 10000, "stage1-step{step}-") == "stage1-step10000-tokens42B"


def test_other_patterns():
    smol = ["main", "step-125000", "step-1250000"]
    assert resolve_step(smol, 125000, "step-{step}") == "step-125000"
    amber = ["main", "ckpt_000", "ckpt_001", "ckpt_100"]
    assert resolve_step(amber, 1, "ckpt_{step:03d}") == "ckpt_001"
    with pytest.raises(AmuroError, match="expected a pattern with"):
        resolve_step(OLMO_REFS, 1000, "step-")
    with pytest.raises(AmuroError, match="expected only"):
        resolve_step(OLMO_REFS, 1000, "step{step}-{tokens}")


def test_step_from_branch():
    assert step_from_branch("step1000-tokens4B") == 1000
    assert step_from_branch("step1000") == 1000
    assert step_from_branch("main") is None
    assert step_from_branch("stage1-step1000-tokens5B", "stage1-step{step}-") == 1000


@pytest.mark.parametrize("name, tokens", [
    ("step1000-tokens4B", 4_000_000_000),
    ("step1000000-tokens4000B", 4_000_000_000_000),
    ("stage1-step928646-tokens3896B", 3_896_000_000_000),
    ("step5-tokens1T", 10**12),
    ("step5-tokens2.5T", 2_500_000_000_000),
    ("step5-tokens300M", 300_000_000),
    ("step5-tokens4b", 4_000_000_000),
    ("main", None),
    ("step1000", None),
    ("step1000-mytokens4B", None),
])  # fmt: skip
def test_tokens_from_branch(name, tokens):
    assert tokens_from_branch(name) == tokens


def test_offline_error_is_immediate_and_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AmuroError) as err:
        list_branches("allenai/OLMo-1B-hf")
    msg = str(err.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "local" in msg
    # Through the command line, in a fresh process: no network wait, one line on stderr.
    src = json.dumps({"type": "hub", "repo": "allenai/OLMo-1B-hf"})
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "amuro.fetch_checkpoint", "--source", src, "--step", "1000",
         "--out", str(tmp_path / "m"), "--record", str(tmp_path / "r.json")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=60,
    )  # fmt: skip
    assert time.perf_counter() - start < 5  # no torch import; the hub would retry 25-50 s
    assert proc.returncode == 2
    line = _error_line(proc.stderr)
    assert proc.stderr.strip() == line
    assert "hf download allenai/OLMo-1B-hf" in line and "source: local" in line
    assert not (tmp_path / "m").exists() and not (tmp_path / "r.json").exists()


# ---- the random-initialisation guard -------------------------------------------------------


@pytest.fixture
def broken_checkpoint(tiny_checkpoint, tmp_path) -> Path:
    """The tiny checkpoint with one tensor removed from its safetensors file."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_load_model_refuses_missing_weights(broken_checkpoint):
    from amuro.modeling import load_model

    with pytest.raises(AmuroError) as err:
        load_model(broken_checkpoint)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(broken_checkpoint) in msg and "model.layers.1.mlp.up_proj.weight" in msg
    assert "randomly initialised" in msg


def test_fetch_refuses_missing_weights(broken_checkpoint, tmp_path, capsys):
    src = json.dumps({"type": "local", "path": str(broken_checkpoint)})
    out, record = tmp_path / "out", tmp_path / "rec.json"
    code, err = _run(["--source", src, "--out", str(out), "--record", str(record)], capsys)
    assert code == 2
    line = _error_line(err)
    assert "model.layers.1.mlp.up_proj.weight" in line and "LOAD REPORT" not in err
    assert not out.exists() and not record.exists()


def test_load_model_accepts_tied_embeddings(tmp_path):
    """A tied lm_head is not in the file, and is not a newly initialised weight."""
    from safetensors import safe_open
    from transformers import OlmoConfig, OlmoForCausalLM

    from amuro.modeling import load_model

    config = OlmoConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, tie_word_embeddings=True, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0)
    OlmoForCausalLM(config).save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as fh:
        assert "lm_head.weight" not in set(fh.keys())
    model = load_model(tmp_path)
    assert model.lm_head.weight is model.model.embed_tokens.weight


# ---- hashes and duplicates -----------------------------------------------------------------


def test_weights_sha256(tiny_checkpoint, tmp_path):
    assert weights_sha256(tiny_checkpoint) == sha256_file(tiny_checkpoint / "model.safetensors")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "model-00002-of-00002.safetensors").write_bytes(b"world")
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"hello ")
    import hashlib

    assert weights_sha256(sharded) == hashlib.sha256(b"hello world").hexdigest()
    with pytest.raises(AmuroError, match="no .safetensors"):
        weights_sha256(tmp_path)


def test_duplicate_warnings_name_both_checkpoints():
    entries = [
        {"step": 1000, "revision": "step1000-tokens4B", "sha256": "a" * 64},
        {"step": 2000, "revision": "step2000-tokens8B", "sha256": "b" * 64},
        {"step": 3000, "revision": "step3000-tokens12B", "sha256": "a" * 64},
    ]
    lines = duplicate_warnings(entries)
    assert len(lines) == 1
    assert "step 1000 (step1000-tokens4B)" in lines[0] and "step 3000" in lines[0]
    assert duplicate_warnings(entries[:2]) == []


# ---- local source, end to end --------------------------------------------------------------


def _fetch_local(capsys, source: dict, out: Path, record: Path, *extra) -> tuple[int, str]:
    argv = ["--source", json.dumps(source), "--out", str(out), "--record", str(record), *extra]
    return _run(argv, capsys)


@pytest.fixture
def local_series(tiny_checkpoint, tmp_path) -> Path:
    """Folders step0, step1, step2: step1 duplicates step0, step2 has other weights."""
    import torch
    from safetensors.torch import load_file, save_file

    root = tmp_path / "ckpts"
    for step in (0, 1, 2):
        shutil.copytree(tiny_checkpoint, root / f"step{step}")
    tensors = load_file(root / "step2" / "model.safetensors")
    tensors = {k: v + 0.01 if k.endswith("up_proj.weight") else v for k, v in tensors.items()}
    save_file(tensors, root / "step2" / "model.safetensors", metadata={"format": "pt"})
    assert torch.is_tensor(next(iter(tensors.values())))
    return root


def test_local_source_end_to_end(local_series, tmp_path, capsys):
    from amuro.modeling import load_model, load_tokenizer

    (local_series / "step2" / "optimizer.pt").write_bytes(b"not part of the checkpoint")
    source = {"type": "local", "path": str(local_series / "step{step}"), "tokens_per_step": 512}
    out, record = tmp_path / "models" / "step2", tmp_path / "records" / "step2.json"
    code, err = _fetch_local(capsys, source, out, record, "--step", "2")
    assert code == 0, err
    phases = [line.split()[1] for line in err.splitlines() if line.startswith("[fetch]")]
    assert phases == ["resolve", "load", "save"]
    rec = json.loads(record.read_text())
    src_weights = local_series / "step2" / "model.safetensors"
    assert rec["step"] == 2 and rec["tokens"] == 1024 and rec["path"] == str(out)
    assert rec["sha256"] == sha256_file(src_weights) == weights_sha256(out)
    assert rec["source"] == source and rec["commit"] is None and rec["revision"] == "step2"
    assert rec["files"] == "hardlinked"
    assert os.stat(out / "model.safetensors").st_ino == os.stat(src_weights).st_ino
    assert not (out / "optimizer.pt").exists()
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    load_model(out)
    load_tokenizer(out)

    # --copy writes independent files with the same hash.
    code, err = _fetch_local(capsys, source, tmp_path / "copy", tmp_path / "copy.json",
                             "--step", "2", "--copy")
    assert code == 0, err
    rec = json.loads((tmp_path / "copy.json").read_text())
    assert rec["files"] == "copied" and rec["sha256"] == sha256_file(src_weights)
    assert os.stat(tmp_path / "copy" / "model.safetensors").st_ino != os.stat(src_weights).st_ino


def test_local_source_by_branch_folder(tiny_checkpoint, tmp_path, capsys):
    """Folders named like hub branches (as `hf download --local-dir DIR/<branch>` leaves them)."""
    root = tmp_path / "olmo"
    for name in ("step1000-tokens4B", "step2000-tokens8B"):
        shutil.copytree(tiny_checkpoint, root / name)
    meta = root / "step2000-tokens8B" / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "config.json.metadata").write_text("c" * 40 + "\netag\n1700000000.0\n")
    source = {"type": "local", "path": str(root) + "/{branch}"}
    code, err = _fetch_local(capsys, source, tmp_path / "m", tmp_path / "r.json", "--step", "2000")
    assert code == 0, err
    rec = json.loads((tmp_path / "r.json").read_text())
    assert (rec["step"], rec["revision"], rec["tokens"]) == (2000, "step2000-tokens8B", 8 * 10**9)
    assert rec["commit"] == "c" * 40

    code, err = _fetch_local(capsys, source, tmp_path / "m2", tmp_path / "r2.json",
                             "--step", "3000")
    assert code == 2
    assert "step2000-tokens8B" in _error_line(err)


def test_local_pickle_weights_are_converted(tiny_checkpoint, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from amuro.modeling import load_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, folder)
    tensors = load_file(folder / "model.safetensors")
    torch.save(tensors, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    source = {"type": "local", "path": str(folder)}
    code, err = _fetch_local(capsys, source, tmp_path / "m", tmp_path / "r.json")
    assert code == 0, err
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["files"] == "converted from pickle to safetensors"
    assert not (tmp_path / "m" / "pytorch_model.bin").exists()
    model = load_model(tmp_path / "m")
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(weight, tensors["model.layers.0.self_attn.q_proj.weight"])


@pytest.mark.parametrize("source, extra, expected", [
    ({"type": "ftp", "path": "x"}, [], "type must be one of hub, local, gguf"),
    ({"type": "local"}, [], "a local source needs 'path'"),
    ({"type": "local", "path": "/x", "trust_remote": True}, [], "unknown key(s) trust_remote"),
    ({"type": "local", "path": "/nowhere/step{step}"}, [], "has {step}: give --step N"),
    ({"type": "local", "path": "/nowhere/step{step}"}, ["--step", "5"],
     "/nowhere/step5 is not a folder"),
    ({"type": "gguf", "path": "/nowhere/x.gguf"}, [], "is not a .gguf file"),
    ({"type": "gguf", "path": "/x.gguf", "trust_remote_code": True}, [],
     "trust_remote_code does not apply"),
    ({"type": "hub", "repo": "allenai/OLMo-1B-hf"}, [], "needs --step N"),
    ({"type": "hub", "repo": "a/b", "tokens_per_step": 0}, [], "tokens_per_step must be"),
])  # fmt: skip
def test_bad_sources_are_one_line(source, extra, expected, tmp_path, capsys):
    code, err = _fetch_local(capsys, source, tmp_path / "m", tmp_path / "r.json", *extra)
    assert code == 2
    assert expected in _error_line(err)


# ---- the hub, served from local folders ----------------------------------------------------


@pytest.fixture
def fake_hub(tiny_checkpoint, tmp_path, monkeypatch):
    """list_repo_refs and snapshot_download answered from disk, as the hub would answer."""
    import huggingface_hub
    from huggingface_hub import constants

    commits = {name: f"{i:040x}" for i, name in enumerate(OLMO_REFS, 1)}
    snapshots = tmp_path / "hub"
    for commit in commits.values():
        shutil.copytree(tiny_checkpoint, snapshots / commit)
    calls = []

    def list_repo_refs(repo):
        branches = [SimpleNamespace(name=n, target_commit=c) for n, c in commits.items()]
        return SimpleNamespace(branches=branches, tags=[])

    def snapshot_download(repo, *, revision, allow_patterns, cache_dir=None):
        calls.append((repo, revision, tuple(allow_patterns)))
        return str(snapshots / revision)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "list_repo_refs", list_repo_refs)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return SimpleNamespace(commits=commits, calls=calls)


def test_hub_source_resolves_step_and_pins_commit(fake_hub, tmp_path, capsys):
    source = {"type": "hub", "repo": "allenai/OLMo-1B-hf", "branch_pattern": "step{step}-",
              "trust_remote_code": False}
    code, err = _fetch_local(capsys, source, tmp_path / "m", tmp_path / "r.json", "--step", "1000")
    assert code == 0, err
    rec = json.loads((tmp_path / "r.json").read_text())
    commit = fake_hub.commits["step1000-tokens4B"]
    assert rec["revision"] == "step1000-tokens4B" and rec["commit"] == commit
    assert rec["step"] == 1000 and rec["tokens"] == 4 * 10**9
    repo, revision, patterns = fake_hub.calls[0]
    assert (repo, revision) == ("allenai/OLMo-1B-hf", commit)
    assert "*.safetensors" in patterns and "*.py" not in patterns
    phases = [line.split()[1] for line in err.splitlines() if line.startswith("[fetch]")]
    assert phases == ["resolve", "download", "load", "save"]

    # main, placed at a step on the x-axis
    code, err = _fetch_local(capsys, source, tmp_path / "main", tmp_path / "main.json",
                             "--revision", "main", "--step", "750000")
    assert code == 0, err
    rec = json.loads((tmp_path / "main.json").read_text())
    assert (rec["step"], rec["revision"], rec["tokens"]) == (750000, "main", None)

    code, err = _fetch_local(capsys, source, tmp_path / "x", tmp_path / "x.json", "--step", "1500")
    assert code == 2 and "step1000-tokens4B" in _error_line(err)

    # Remote code only when the source says so; then the repository's *.py files come along.
    source["trust_remote_code"] = True
    code, err = _fetch_local(capsys, source, tmp_path / "t", tmp_path / "t.json", "--step", "2000")
    assert code == 0, err
    assert "*.py" in fake_hub.calls[-1][2]


# ---- the manifest --------------------------------------------------------------------------


def test_manifest_sorted_with_duplicate_warning(local_series, tmp_path, capsys):
    source = {"type": "local", "path": str(local_series / "step{step}"), "tokens_per_step": 100}
    records = []
    for step in (2, 0, 1):
        record = tmp_path / "records" / f"step{step}.json"
        code, err = _fetch_local(capsys, source, tmp_path / "models" / f"step{step}", record,
                                 "--step", str(step))
        assert code == 0, err
        records.append(str(record))
    out = tmp_path / "checkpoints" / "tiny" / "manifest.json"
    code, err = _run(["manifest", "--records", *records, "--model", "tiny", "--out", str(out)],
                     capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "step 0" in warnings[0] and "step 1" in warnings[0]
    man = json.loads(out.read_text())
    assert man["model"] == "tiny" and man["duplicates"] == [[0, 1]]
    ckpts = man["checkpoints"]
    assert [c["step"] for c in ckpts] == [0, 1, 2]
    assert [c["tokens"] for c in ckpts] == [0, 100, 200]
    assert set(ckpts[0]) == {"step", "tokens", "path", "sha256", "revision", "commit", "source"}
    assert ckpts[0]["sha256"] == ckpts[1]["sha256"] != ckpts[2]["sha256"]
    assert ckpts[2]["path"] == str(tmp_path / "models" / "step2")

    # The aggregation step reads it as the tiny series' manifest.
    from amuro.aggregate import read_manifest

    assert read_manifest(f"tiny={out}", ["tiny"]).height == 3

    # Two records for one step, or a record without a step, are refused.
    code, err = _run(["manifest", "--records", records[0], records[0], "--model", "tiny",
                      "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and "step 2 has two records" in _error_line(err)
    no_step = tmp_path / "nostep.json"
    no_step.write_text(json.dumps({**json.loads(Path(records[0]).read_text()), "step": None}))
    code, err = _run(["manifest", "--records", str(no_step), "--model", "tiny",
                      "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and "--step N" in _error_line(err)
