"""`python -m amuro.prepare_data` end to end on real files; `amuro.download_dataset` offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATA

from amuro import download_dataset, prepare_data
from amuro.data.adapters import R_UNLABELED_GLUE_PARA, input_key
from amuro.errors import AmuroError, run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data():
    if not DATA.is_dir():
        pytest.skip(f"real data samples not found at {DATA}")
    return DATA


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def prepare(out: Path, *args: str) -> dict:
    prepare_data.main([*args, "--out-dir", str(out)])
    return json.loads((out / "summary.json").read_text())


def one_line_error(capsys, argv, main=prepare_data.main) -> str:
    """Run a CLI in-process as `python -m` would; return its single stderr line."""
    capsys.readouterr()  # forget earlier output
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def stsb_test_file(data: Path, tmp_path: Path, n: int = 100) -> Path:
    """The first n rows of the STS-B dev sample, as a GLUE tsv of its own."""
    lines = (data / "stsb/dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "stsb_head.tsv"
    path.write_text("".join(lines[: n + 1]), encoding="utf-8")
    return path


# --- outputs, subsampling, demonstrations -----------------------------------------------------
def test_train_test_demo_outputs(data, tmp_path, capsys):
    test_file = stsb_test_file(data, tmp_path)
    args = ["--name", "stsb", "--adapter", "stsb", "--split", f"train={data / 'stsb/dev.tsv'}",
            "--split", f"test={test_file}", "--max-items", "train=150", "--demo-size", "32"]
    summary = prepare(tmp_path / "a", *args)
    err = capsys.readouterr().err
    out = tmp_path / "a"
    assert sorted(p.name for p in out.iterdir()) == [
        "demo.jsonl", "summary.json", "test.jsonl", "train.jsonl"]
    train, demo, test = (load(out / f"{s}.jsonl") for s in ("train", "demo", "test"))
    assert len(train) == 150 and len(demo) == 32 and len(test) == 100
    assert [r["id"] for r in test] == [str(i) for i in range(100)]  # uncapped: file order
    # seeded subsample = datasets' shuffle(seed=42) permutation, first 150
    perm = np.random.default_rng(42).permutation(300)
    assert [r["id"] for r in train] == [str(i) for i in perm[:150]]
    # demonstrations: disjoint from test by input, taken after the training sample
    test_keys = {input_key(r) for r in test}
    assert not any(input_key(r) in test_keys for r in demo)
    assert not {r["id"] for r in demo} & {r["id"] for r in train}
    s = summary["splits"]
    assert s["train"] == {**s["train"], "rows_read": 300, "kept": 300, "written": 150,
                          "max_items": 150, "dropped": {}, "order": "seeded permutation"}
    # STS-B repeats some sentence pairs under other ids: overlap is by input text, not by id
    assert s["train"]["inputs_also_in_test"] == sum(input_key(r) in test_keys for r in train)
    assert s["train"]["inputs_also_in_test"] > sum(int(i) < 100 for i in perm[:150])
    assert s["demo"]["skipped_same_input_as_test"] > 0 and s["demo"]["also_in_train"] == 0
    assert summary["seed"] == 42 and summary["family"] == "paraphrase"
    assert summary["labels"] == ["yes", "no"]
    assert sum(s["test"]["label_counts"].values()) == 100
    assert {src["split"] for src in summary["sources"]} == {"train", "test"}
    assert all(len(src["sha256"]) == 64 for src in summary["sources"])
    assert "stsb/train: read 300, kept 300, dropped 0, wrote 150" in err
    assert "stsb/test: read 100, kept 100, dropped 0, wrote 100" in err
    # deterministic; another seed gives another sample
    prepare(tmp_path / "b", *args)
    for name in ("train.jsonl", "demo.jsonl", "test.jsonl", "summary.json"):
        assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    prepare(tmp_path / "c", *args[:-2], "--demo-size", "0", "--seed", "7")
    assert load(tmp_path / "c" / "train.jsonl") != train
    assert not (tmp_path / "c" / "demo.jsonl").exists()


def test_subsample_matches_datasets_shuffle(data, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"i": i} for i in range(300)]
    expected = datasets.Dataset.from_list(rows).shuffle(seed=42).select(range(150))["i"]
    prepare(tmp_path, "--name", "paws", "--adapter", "paws", "--split",
            f"train={data / 'paws/dev.tsv'}", "--max-items", "train=150", "--demo-size", "0")
    got = [int(r["id"]) - 1 for r in load(tmp_path / "train.jsonl")]  # PAWS ids start at 1
    assert got == expected


def test_demo_carved_from_test_before_cap(data, tmp_path):
    rte = f"test={data / 'rte/dev.tsv'}"
    summary = prepare(tmp_path / "a", "--name", "rte", "--adapter", "rte", "--split", rte,
                      "--demo-from", "test", "--max-items", "test=100")
    demo, test = load(tmp_path / "a/demo.jsonl"), load(tmp_path / "a/test.jsonl")
    assert len(demo) == 32 and len(test) == 100
    assert not {input_key(r) for r in demo} & {input_key(r) for r in test}
    assert summary["splits"]["test"]["demonstrations_carved_out"] == 32
    # no cap: every other test item is kept, in file order
    prepare(tmp_path / "b", "--name", "rte", "--adapter", "rte", "--split", rte,
            "--demo-size", "8")
    demo, test = load(tmp_path / "b/demo.jsonl"), load(tmp_path / "b/test.jsonl")
    assert len(demo) == 8 and len(test) == 277 - 8
    ids = [int(r["id"]) for r in test]
    assert ids == sorted(ids) and not {r["id"] for r in demo} & set(map(str, ids))


def test_demo_from_own_file(data, tmp_path, capsys):
    demo_file = tmp_path / "paws_train.txt"  # not a .tsv name: --format says what it is
    demo_file.write_bytes((data / "paws/train.tsv").read_bytes())
    args = ["--name", "paws", "--adapter", "paws", "--split", f"test={data / 'paws/dev.tsv'}",
            "--split", f"demo={demo_file}", "--format", "demo=tsv"]
    summary = prepare(tmp_path / "p", *args)
    demo = load(tmp_path / "p/demo.jsonl")
    assert len(demo) == 4 and summary["demo"]["from"] == "demo"
    assert len(load(tmp_path / "p/test.jsonl")) == 300
    assert "paws/demo: asked for 32, only 4 available" in capsys.readouterr().err
    err = one_line_error(capsys, [*args, "--demo-from", "test", "--out-dir", str(tmp_path / "x")])
    assert "disagree" in err


def test_dropped_rows_counted_with_reasons(data, tmp_path, capsys):
    qqp = (data / "qqp/dev.tsv").read_bytes()
    bad = tmp_path / "qqp.tsv"
    bad.write_bytes(qqp + b"9\t1\t2\tIs this unlabeled?\tIs it?\t-1\r\n"
                    b"10\t3\t4\tmissing a field\r\n11\t5\t6\t \tWhy?\t1\r\n")
    summary = prepare(tmp_path / "q", "--name", "qqp", "--adapter", "qqp",
                      "--split", f"test={bad}", "--demo-from", "test", "--demo-size", "2")
    t = summary["splits"]["test"]
    assert t["rows_read"] == 12 and t["kept"] == 9 and t["written"] == 7
    assert t["dropped"] == {R_UNLABELED_GLUE_PARA: 1, "empty question1": 1,
                            "malformed line (field count differs from the header)": 1}
    assert t["drop_examples"]["empty question1"] == ["row 11"]
    err = capsys.readouterr().err
    assert f"qqp/test: dropped 1: {R_UNLABELED_GLUE_PARA}" in err
    assert "qqp/test: dropped 1: empty question1" in err
    # sciq: 34 rows with no supporting passage cannot feed question generation
    summary = prepare(tmp_path / "s", "--name", "sciq", "--adapter", "sciq",
                      "--split", f"test={data / 'sciq/test.json'}", "--demo-from", "test")
    assert summary["splits"]["test"]["dropped"] == {"empty support": 34}
    assert "sciq/test: dropped 34: empty support" in capsys.readouterr().err


def test_socialiqa_labels_file(data, tmp_path, capsys):
    jsonl, lst = data / "socialiqa/dev.jsonl", data / "socialiqa/dev-labels.lst"
    summary = prepare(tmp_path / "s", "--name", "socialiqa", "--adapter", "socialiqa",
                      "--split", f"test={jsonl}", "--labels-file", f"test={lst}",
                      "--demo-from", "test", "--max-items", "test=50")
    test = load(tmp_path / "s/test.jsonl")
    assert len(test) == 50 and all(r["id"].startswith("socialiqa-test-") for r in test)
    assert summary["sources"][0]["labels_file"]["path"] == str(lst)
    short = tmp_path / "short.lst"
    short.write_text("".join(lst.read_text().splitlines(keepends=True)[:-1]))
    err = one_line_error(capsys, ["--name", "s", "--adapter", "socialiqa", "--split",
                                  f"test={jsonl}", "--labels-file", f"test={short}",
                                  "--out-dir", str(tmp_path / "x")])
    assert "299 labels for 300 rows" in err and str(short) in err
    err = one_line_error(capsys, ["--name", "s", "--adapter", "socialiqa", "--split",
                                  f"test={jsonl}", "--out-dir", str(tmp_path / "x")])
    assert str(jsonl) in err and "'label'" in err and "--labels-file" in err


def test_multiple_choice_and_chat_outputs(data, tmp_path):
    prepare(tmp_path / "arc", "--name", "arc_easy", "--adapter", "arc",
            "--split", f"test={data / 'arc_easy/test.json'}", "--demo-from", "test",
            "--demo-size", "4")
    rec = load(tmp_path / "arc/test.jsonl")[0]
    assert rec["fields"]["choices"][rec["label"]] == rec["target"]
    chats = tmp_path / "tulu.jsonl"
    chats.write_text("".join(json.dumps({"dataset": "d", "id": f"t{i}", "messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n"
        for i in range(20)))
    summary = prepare(tmp_path / "tulu", "--name", "tulu", "--adapter", "tulu", "--split",
                      f"train={chats}", "--max-items", "train=5", "--demo-size", "0")
    assert [set(r) for r in load(tmp_path / "tulu/train.jsonl")] == [{"id", "messages"}] * 5
    assert summary["kind"] == "chat" and "test" not in summary["splits"]


# --- one-line errors --------------------------------------------------------------------------
def test_prepared_mc_files_render_lm_eval_prompts(data, tmp_path):
    """The written records carry what lm-eval's task definitions read: BoolQ's title (SuperGLUE's
    passage "<title> -- <passage>", super_glue/boolq/default.yaml), HellaSwag's activity label
    (hellaswag/utils.py process_docs), SciQ's choices in lm-eval's order (sciq/sciq.yaml)."""
    from amuro.prompts import render_prompt

    prepare(tmp_path / "boolq", "--name", "boolq", "--adapter", "boolq",
            "--split", f"test={data / 'boolq/dev.jsonl'}", "--demo-size", "0")
    rows = [json.loads(line) for line in (data / "boolq/dev.jsonl").read_text().splitlines()]
    recs = {r["id"]: r for r in load(tmp_path / "boolq/test.jsonl")}
    rec = recs["boolq-test-8"]
    assert render_prompt("boolq", "default", rec["fields"]) == (
        "American entry into Canada by land -- Persons driving into Canada must have their "
        "vehicle's registration document and proof of insurance.\nQuestion: can u drive in "
        "canada with us license?\nAnswer:")
    assert (rec["fields"]["choices"], rec["label"]) == (["no", "yes"], 1)
    assert all(recs[f"boolq-test-{i}"]["fields"]["passage"] == f"{r['title']} -- {r['passage']}"
               for i, r in enumerate(rows))
    prepare(tmp_path / "hs", "--name", "hellaswag", "--adapter", "hellaswag",
            "--split", f"test={data / 'hellaswag/val.jsonl'}", "--demo-size", "0")
    rec = load(tmp_path / "hs/test.jsonl")[1]
    assert render_prompt("hellaswag", "default", rec["fields"]) == (
        "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady")
    prepare(tmp_path / "sciq", "--name", "sciq_mc", "--adapter", "sciq_mc",
            "--split", f"test={data / 'sciq/test.json'}", "--demo-size", "0")
    rec = load(tmp_path / "sciq/test.jsonl")[59]
    assert rec["fields"]["choices"] == ["vascular", "striated", "alveoli", "smooth"]
    assert render_prompt("sciq", "default", rec["fields"]) == (
        "Smooth muscle regulates air flow in lungs.\nQuestion: Which kind of muscle regulates "
        "air flow in lungs?\nAnswer:")


def test_cli_errors_are_one_line(data, tmp_path, capsys):
    out = ["--out-dir", str(tmp_path / "o")]
    paws = f"test={data / 'paws/dev.tsv'}"
    err = one_line_error(capsys, ["--name", "x", "--adapter", "nope", "--split", paws, *out])
    assert "--adapter: 'nope' unknown" in err and "mnli" in err
    err = one_line_error(capsys, ["--name", "x", "--adapter", "paws", "--split",
                                  f"test={tmp_path / 'missing.tsv'}", *out])
    assert "missing.tsv: file not found" in err
    err = one_line_error(capsys, ["--name", "x", "--adapter", "mnli", "--split", paws, *out])
    assert str(data / "paws/dev.tsv") in err and "row 0" in err and "'gold_label'" in err
    err = one_line_error(capsys, ["--name", "x", "--adapter", "paws", "--split", paws,
                                  "--max-items", "train=10", *out])
    assert "no --split train=PATH" in err
    err = one_line_error(capsys, ["--name", "x", "--adapter", "paws", "--split", "test", *out])
    assert "expected SPLIT=PATH" in err
    unlabeled = tmp_path / "test.tsv"
    unlabeled.write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\t-1\n1\tc\td\t-1\n")
    err = one_line_error(capsys, ["--name", "x", "--adapter", "stsb", "--split",
                                  f"test={unlabeled}", *out])
    assert "no usable test rows" in err and "QQP/STS-B" in err
    assert not (tmp_path / "o").exists()


def test_cli_subprocess_and_list_adapters(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "amuro.prepare_data", "--list-adapters"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0 and "stsb\tparaphrase\tyes/no" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "amuro.prepare_data", "--name", "x",
                           "--adapter", "xsum", "--split", f"test={tmp_path / 'no.jsonl'}",
                           "--out-dir", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


# --- download_dataset -------------------------------------------------------------------------
def test_download_offline_is_immediate_and_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    out = "resources/datasets/qqp_validation.parquet"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "amuro.download_dataset", "--hub-id",
                           "nyu-mll/glue", "--config", "qqp", "--split", "validation",
                           "--out", out], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert time.monotonic() - start < 5
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert ("python -m amuro.download_dataset --hub-id nyu-mll/glue --config qqp "
            f"--split validation --out {out}") in lines[0]
    assert "HF_DATASETS_OFFLINE=1" in lines[0] and "local file" in lines[0]
    assert not (tmp_path / out).exists()


def test_download_url_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = ("https://raw.githubusercontent.com/princeton-nlp/LLMBar/main/Dataset/LLMBar/"
           "Natural/dataset.json")
    err = one_line_error(capsys, ["--url", url, "--out", "llmbar.json"],
                         main=download_dataset.main)
    assert f"--url {url} --out llmbar.json" in err
    err = one_line_error(capsys, ["--hub-id", "a/b", "--split", "train", "--out", "b.json"],
                         main=download_dataset.main)
    assert "expected a .parquet path" in err


class _FakeDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def to_parquet(self, path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(self.rows), path)


def _fake_datasets(monkeypatch, load_dataset):
    module = types.SimpleNamespace(Dataset=_FakeDataset, load_dataset=load_dataset)
    monkeypatch.setitem(sys.modules, "datasets", module)
    for var in download_dataset.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)


def test_download_script_only_retries_parquet_revision(monkeypatch, tmp_path):
    calls = []

    def load_dataset(hub_id, config, split, revision):
        calls.append(revision)
        if revision != "refs/convert/parquet":
            raise RuntimeError("Dataset scripts are no longer supported, but found llmbar.py")
        return _FakeDataset([{"input": "i", "output_1": "a", "output_2": "b", "label": 1}])

    _fake_datasets(monkeypatch, load_dataset)
    out = tmp_path / "d" / "llmbar.parquet"
    download_dataset.main(["--hub-id", "princeton-nlp/LLMBar", "--split", "train",
                           "--out", str(out)])
    assert calls == [None, "refs/convert/parquet"]
    from amuro.data.readers import read_rows

    assert read_rows(out) == [{"input": "i", "output_1": "a", "output_2": "b", "label": 1}]


def test_download_connection_error_is_one_line(monkeypatch, capsys, tmp_path):
    def load_dataset(*args, **kwargs):
        try:
            raise OSError("[Errno -2] Name or service not known")
        except OSError as err:
            raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub") from err

    _fake_datasets(monkeypatch, load_dataset)
    err = one_line_error(capsys, ["--hub-id", "nyu-mll/glue", "--config", "rte", "--split",
                                  "validation", "--out", str(tmp_path / "rte.parquet")],
                         main=download_dataset.main)
    assert "no connection" in err and "--config rte --split validation" in err
    with pytest.raises(AmuroError, match="load_dataset.*failed: ValueError: bad config"):
        _fake_datasets(monkeypatch, lambda *a, **k: (_ for _ in ()).throw(
            ValueError("bad config\nmore")))
        download_dataset.main(["--hub-id", "x/y", "--split", "train",
                               "--out", str(tmp_path / "y.parquet")])
