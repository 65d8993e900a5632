"""Every class of bad input gets one line, and leaves nothing Snakemake would take as done.

A table of cases across the config, data files, records, model folders and process faults.
Each case names the input it breaks and the one-line message expected (a substring of it);
each runs in-process (the config through the workflow's own validate_config, the rest
through the entry points' main(argv)), so the whole table takes seconds, not a Snakemake
start per case. After each case no output exists and no temporary file is left beside one.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from workflow_config import config_error, test_config

HOSTILE = "x$(touch MARK)`touch MARK`;touch MARK;'\" y"
SLUG = "'^[a-z0-9][a-z0-9_]*$'"
HUB_NAME = "'^[A-Za-z0-9][A-Za-z0-9._-]*$'"


# ---- config ------------------------------------------------------------------------------


def _set(path: str, value) -> Callable[[dict], None]:
    """Set a dotted key (created as needed) of the config."""

    def apply(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return apply


def _rename(path: str, old: str, new: str) -> Callable[[dict], None]:
    def apply(cfg: dict) -> None:
        node = cfg
        for p in path.split("."):
            node = node[p]
        node[new] = node.pop(old)
        if path == "tasks":  # keep per_task pointing at a task
            cfg["finetune"]["per_task"] = {}

    return apply


def _hub_model(cfg: dict) -> None:
    cfg["models"]["hubby"] = {"source": "hub", "repo": "o/r", "steps": [1],
                              "revisions": {HOSTILE: 5}}


def _real_set(**spec) -> Callable[[dict], None]:
    def apply(cfg: dict) -> None:
        cfg["datasets"]["realset"] = {"adapter": "rte", **spec}
        cfg["tasks"]["nli"]["ood"] = ["realset"]

    return apply


CONFIG_CASES = {
    # names that become paths or wildcards: slugs, the pattern in the message
    "model name": (_rename("models", "mini", HOSTILE),
                   f"models: {HOSTILE!r} does not match {SLUG}"),
    "dataset name": (_rename("datasets", "tw_nli2", "a b"),
                     f"datasets: 'a b' does not match {SLUG}"),
    "task name": (_rename("tasks", "fact_check", "Fact;check"), "does not match " + SLUG),
    "per-task name": (_set("finetune.per_task", {"$(touch MARK)": {"epochs": 1}}),
                      f"finetune.per_task: '$(touch MARK)' does not match {SLUG}"),
    "instruction dataset": (_set("instruction_tuning.dataset", HOSTILE),
                            f"instruction_tuning.dataset: {HOSTILE!r} does not match {SLUG}"),
    "instruction eval task": (_set("instruction_tuning.eval", ["`id`"]),
                              f"instruction_tuning.eval.0: '`id`' does not match {SLUG}"),
    "train set name": (_set("tasks.nli.train", "tw nli"),
                       "tasks.nli.train: 'tw nli' does not match"),
    "revision name": (_hub_model,
                      f"models.hubby.revisions: {HOSTILE!r} does not match {HUB_NAME}"),
    "hub id": (_real_set(hub={"id": "o/r;rm -rf"}, splits={"test": "t", "train": "t"}),
               "datasets.realset.hub.id: 'o/r;rm -rf' does not match"),
    "hub config": (_real_set(hub={"id": "o/r", "config": "../x"}, splits={"test": "t"}),
                   f"datasets.realset.hub.config: '../x' does not match {HUB_NAME}"),
    "hub split": (_real_set(hub={"id": "o/r"}, splits={"test": "$(id)"}),
                  f"datasets.realset.splits.test: '$(id)' does not match {HUB_NAME}"),
    "file with braces": (_real_set(files={"test": "/d/{x}.tsv", "train": "/d/t.tsv"}),
                         "datasets.realset.files.test: '/d/{x}.tsv' does not match"),
    "url split key": (_real_set(url={"tset": "https://e.org/a.json"}),
                      "datasets.realset.url: 'tset' is not one of ['train', 'test', 'demo']"),
    "unknown adapter": (_real_set(adapter=HOSTILE, files={"test": "/t", "train": "/t"}),
                        f"datasets.realset.adapter: unknown adapter {HOSTILE!r}"),
    # duplicate grid values: refused with the key named
    "duplicate base shots": (_set("evaluate.base_shots", [0, 2, 2]),
                             "evaluate.base_shots: [0, 2, 2] has non-unique elements"),
    "duplicate finetuned shots": (_set("evaluate.finetuned_shots", [0, 0]),
                                  "evaluate.finetuned_shots: [0, 0] has non-unique elements"),
    "duplicate formats": (_set("evaluate.formats", ["io", "io"]),
                          "evaluate.formats: ['io', 'io'] has non-unique elements"),
    "duplicate steps": (_set("models.mini.steps", [0, 6, 6]),
                        "models.mini.steps: [0, 6, 6] has non-unique elements"),
    "duplicate seeds": (_set("finetune.seeds", [2, 2]),
                        "finetune.seeds: [2, 2] has non-unique elements"),
    "duplicate learning rates": (_set("finetune.per_task.nli.lr", [1e-3, 1e-3]),
                                 "finetune.per_task.nli.lr: [0.001, 0.001] has non-unique"),
    "duplicate eval sets": (_set("tasks.nli.id", ["tw_nli", "tw_nli"]),
                            "tasks.nli.id: ['tw_nli', 'tw_nli'] has non-unique elements"),
    "duplicate labels": (_set("tasks.nli.labels", ["yes", "yes"]),
                         "tasks.nli.labels: ['yes', 'yes'] has non-unique elements"),
    "empty label": (_set("datasets.tw_nli2.labels", ["entailment", ""]),
                    "datasets.tw_nli2.labels.1: '' should be non-empty"),
    "wrong type": (_set("finetune.epochs", "three"),
                   "finetune.epochs: 'three' is not of type 'integer'"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_input(case, capsys):
    change, expected = CONFIG_CASES[case]
    cfg = test_config()
    change(cfg)
    err = config_error(cfg, capsys)
    assert err is not None, f"{case}: accepted"
    assert expected in err, err


# ---- entry points: data files, records, model folders, process faults ----------------------

NLI = ("entailment", "neutral", "contradiction")
TASK = {"name": "nli", "type": "classification", "template": "nli", "labels": list(NLI),
        "metric": "accuracy", "max_new_tokens": 5}
META = {"model": "m", "step": 0, "tuning": "base", "train_task": ""}


def _rows(prefix: str, n: int = 4) -> list[dict]:
    return [{"id": f"{prefix}{i}", "fields": {"premise": f"The cat sat {i}.",
                                              "hypothesis": "A cat sat."},
             "target": NLI[i % 3]} for i in range(n)]


def _jsonl(rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n"
                    for r in rows)


@dataclass
class Case:
    """One bad input to one entry point: `entry` is "evaluate", "finetune", "prepare",
    "pretrain" or "fetch"; the change is applied to the files / arguments of a good run."""
    entry: str
    expected: str  # a substring of the one-line message
    test: bytes | None = None  # evaluate: test.jsonl (finetune: train.jsonl) contents
    plan: dict = field(default_factory=dict)  # evaluate: plan overrides
    meta: dict | None = None
    settings: dict | None = None  # finetune --settings
    task: dict | None = None  # finetune --task
    model: Callable[[Path], None] | None = None  # changes a copy of the checkpoint folder
    extra: bytes | None = None  # prepare: the tsv; pretrain: the corpus
    fault: str | None = None  # "enospc": every atomic move fails with ENOSPC


def _bad_field(value) -> bytes:
    rows = _rows("t")
    rows[1]["fields"]["premise"] = value
    return _jsonl(rows)


def _target(value) -> bytes:
    rows = _rows("t")
    rows[2]["target"] = value
    return _jsonl(rows)


def _truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch MARK",))


def _pickle_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    with (folder / "pytorch_model.bin").open("wb") as fh:
        pickle.dump({"model.embed_tokens.weight": _Evil()}, fh)


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


BAD_UTF8 = _jsonl(_rows("t", 2)) + b'{"id": "t9", "fields": {"premise": "caf\xe9"}}\n'
RTE_TSV = (b"index\tsentence1\tsentence2\tlabel\n0\tA cat.\tA cat.\tentailment\n"
           b"1\tA dog.\tA cat.\tnot_entailment\n")

ENTRY_CASES = {
    # data files
    "evaluate: undecodable byte": Case("evaluate", "test.jsonl:3: byte offset 2", test=BAD_UTF8),
    "evaluate: invalid JSON line": Case("evaluate", "test.jsonl:2: not valid JSON",
                                        test=_jsonl([_rows("t")[0], b"{oops"])),
    "evaluate: empty file": Case("evaluate", "test.jsonl: no records", test=b""),
    "finetune: undecodable byte": Case("finetune", "train.jsonl:3: byte offset 2", test=BAD_UTF8),
    "prepare: undecodable byte": Case("prepare", "test.tsv:4: byte offset 95",
                                      extra=RTE_TSV + b"2\tcaf\xe9\tx\tentailment\n"),
    "pretrain: undecodable corpus": Case("pretrain", "corpus.txt:2: byte offset 9",
                                         extra=b"one doc.\n\xff\xfe\n"),
    # records: every template field a non-empty string, else the file is refused
    "record: null field": Case("evaluate", "needs field 'premise' as a non-empty string, got None",
                               test=_bad_field(None)),
    "record: empty field": Case("evaluate", "needs field 'premise' as a non-empty string, got '  '",
                                test=_bad_field("  ")),
    "record: number field": Case("evaluate", "needs field 'premise' as a non-empty string, got 5",
                                 test=_bad_field(5)),
    "record: list field": Case("evaluate", "field 'premise' as a non-empty string, got ['a']",
                               test=_bad_field(["a"])),
    "record: missing field": Case("evaluate", "template 'nli' needs field 'hypothesis'",
                                  test=_jsonl([{"id": "a", "fields": {"premise": "p"},
                                                "target": "neutral"}])),
    "record: null target": Case("evaluate", "field 'target' must be a non-empty string, got None",
                                test=_target(None)),
    "record: empty target": Case("evaluate", "field 'target' must be a non-empty string",
                                 test=_target("")),
    "record: not an object": Case("evaluate", "record 1: expected a JSON object",
                                  test=_jsonl([["a"]])),
    "record: fields not an object": Case("evaluate", "field 'fields' must be an object",
                                         test=_jsonl([{"id": "a", "fields": "p", "target": "x"}])),
    "training record: null field": Case("finetune", "needs field 'premise' as a non-empty string",
                                        test=_bad_field(None)),
    # hand-given JSON arguments with wrong types
    "settings: lr a word": Case("finetune", "--settings: 'lr': expected a number, got 'fast'",
                                settings={"lr": "fast"}),
    "settings: epochs a string": Case("finetune", "--settings: 'epochs': expected an integer",
                                      settings={"epochs": "3"}),
    "settings: lora a list": Case("finetune", "--settings: 'lora': expected null or an object",
                                  settings={"lora": [1]}),
    "task: labels a string": Case("finetune", "--task: 'labels': expected a list of strings",
                                  task={**TASK, "labels": "yes no"}),
    "plan: shots as strings": Case("evaluate", "--plan: 'shots': expected a list of integers",
                                   plan={"shots": ["2"]}),
    "plan: batch size a string": Case("evaluate", "--plan: 'batch_size': expected an integer",
                                      plan={"batch_size": "8"}),
    "plan: task field wrong type": Case(
        "evaluate", "--plan: sets[0].task: 'max_new_tokens': expected an integer",
        plan={"task": {**TASK, "max_new_tokens": "five"}}),
    "plan: unknown task field": Case("evaluate", "--plan: sets[0].task: unknown field(s) ['x']",
                                     plan={"task": {**TASK, "x": 1}}),
    "meta: step a string": Case("evaluate", "--meta: 'step': expected an integer, got 'x'",
                                meta={**META, "step": "x"}),
    # model folders
    "model: truncated safetensors": Case("evaluate", "cannot load the model (SafetensorError",
                                         model=_truncate),
    "model: garbage safetensors": Case("evaluate", "cannot load the model (SafetensorError",
                                       model=_write("model.safetensors", b"\0" * 64)),
    "model: invalid config.json": Case("evaluate", "config.json' is not a valid JSON file",
                                       model=_write("config.json", b'{"model_type": ')),
    "model: unknown model_type": Case("evaluate", "model type `nope`",
                                      model=_write("config.json", b'{"model_type": "nope"}')),
    "model: invalid tokenizer.json": Case("evaluate", "cannot load the tokenizer (",
                                          model=_write("tokenizer.json", b"{oops")),
    "model: undecodable tokenizer_config": Case(
        "evaluate", "cannot load the tokenizer (UnicodeDecodeError",
        model=_write("tokenizer_config.json", b"\xff\xfe{}")),
    "model: pickle weights only": Case("evaluate", "no .safetensors weights (pickle weights are "
                                       "refused)", model=_pickle_weights),
    "model: malicious pickle (fetch)": Case("fetch", "weights-only loader refuses",
                                            model=_pickle_weights),
    "model: no config.json": Case("evaluate", "not a checkpoint folder (config.json missing)",
                                  model=lambda folder: (folder / "config.json").unlink()),
    # process faults
    "disk full: evaluate outputs": Case("evaluate", "timing.json: disk full (no space left on "
                                        "device;", fault="enospc"),
    "disk full: prepared data": Case("prepare", "disk full (no space left on device;",
                                     extra=RTE_TSV, fault="enospc"),
}


class _FullDisk:
    """amuro.io's `os` with every rename into place failing with ENOSPC."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")


def _run(case: Case, root: Path, checkpoint: Path, cli_error) -> tuple[str, list[Path]]:
    """Run the case's entry point; returns its one-line message and the outputs it names."""
    model = root / "model"
    shutil.copytree(checkpoint, model)
    if case.model:
        case.model(model)
    out = root / "out"
    if case.entry == "evaluate":
        from amuro.evaluate import main

        test = root / "data" / "test.jsonl"
        test.parent.mkdir()
        test.write_bytes(case.test if case.test is not None else _jsonl(_rows("t")))
        (root / "data" / "demo.jsonl").write_bytes(_jsonl(_rows("d")))
        eval_set = {"name": "s", "task": case.plan.get("task", TASK), "role": "ID",
                    "test_path": str(test), "demo_path": str(root / "data" / "demo.jsonl"),
                    "labels": []}
        plan = {"sets": [eval_set], "formats": ["default"], "shots": [0], "seed": 1,
                "batch_size": 4, "max_items": None,
                **{k: v for k, v in case.plan.items() if k != "task"}}
        outputs = [out / "metrics.csv", out / "predictions.jsonl", out / "timing.json"]
        argv = ["--model", str(model), "--plan", json.dumps(plan),
                "--meta", json.dumps(case.meta or META), "--metrics", str(outputs[0]),
                "--predictions", str(outputs[1]), "--timing", str(outputs[2])]
    elif case.entry == "finetune":
        from amuro.finetune import main

        train = root / "data" / "train.jsonl"
        train.parent.mkdir()
        train.write_bytes(case.test if case.test is not None else _jsonl(_rows("t", 8)))
        outputs = [out / "model"]
        argv = ["--checkpoint", str(model), "--train", str(train),
                "--task", json.dumps(case.task or TASK),
                "--settings", json.dumps({"epochs": 1, "batch_size": 2, **(case.settings or {})}),
                "--out", str(outputs[0])]
    elif case.entry == "prepare":
        from amuro.prepare_data import main

        tsv = root / "test.tsv"
        tsv.write_bytes(case.extra)
        outputs = [out / "test.jsonl", out / "summary.json"]
        argv = ["--name", "realset", "--adapter", "rte", "--split", f"test={tsv}",
                "--demo-size", "0", "--out-dir", str(out)]
    elif case.entry == "pretrain":
        from amuro.pretrain import main

        corpus = root / "corpus.txt"
        corpus.write_bytes(case.extra)
        outputs = [out / "ckpt", out / "timing.json"]
        argv = ["--corpus", str(corpus), "--out-dir", str(outputs[0]), "--save-steps", "0",
                "--model-config", '{"model_type": "olmo"}', "--train", "{}",
                "--timing", str(outputs[1])]
    else:  # fetch: a local checkpoint folder
        from amuro.fetch_checkpoint import main

        outputs = [out / "step0", out / "step0.json"]
        argv = ["--source", json.dumps({"type": "local", "path": str(model)}), "--step", "0",
                "--out", str(outputs[0]), "--record", str(outputs[1])]
    return cli_error(main, argv), outputs


@pytest.fixture
def one_error_line(capsys):
    """Like conftest's cli_error, allowing progress lines before it: exit status 2, the last
    line of stderr is the only `error: ` line, and there is no traceback."""
    from amuro.errors import run_cli

    def run(main, argv) -> str:
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv)
        assert exc.value.code == 2
        lines = capsys.readouterr().err.strip().split("\n")
        errors = [line for line in lines if line.startswith("error: ")]
        assert errors == [lines[-1]] and "Traceback" not in "\n".join(lines), lines[-5:]
        return lines[-1]

    return run


@pytest.mark.parametrize("case", sorted(ENTRY_CASES))
def test_entry_point_input(case, tiny_checkpoint, tmp_path, monkeypatch, one_error_line):
    spec = ENTRY_CASES[case]
    monkeypatch.chdir(tmp_path)  # a pickle that ran would leave MARK here
    if spec.fault == "enospc":
        import amuro.io

        monkeypatch.setattr(amuro.io, "os", _FullDisk())
    err, outputs = _run(spec, tmp_path, tiny_checkpoint, one_error_line)
    assert spec.expected in err, err
    assert not (tmp_path / "MARK").exists()
    for path in outputs:  # nothing Snakemake would take as a finished output
        assert not path.exists(), f"{case}: {path} left behind"
        leftovers = list(path.parent.glob(f".{path.name}.*")) if path.parent.exists() else []
        assert not leftovers, f"{case}: temporary files left: {leftovers}"


def test_disk_full_anywhere_is_one_line(cli_error):
    """A full disk outside amuro.io's outputs still gets one line naming the file."""

    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "results/x.csv")

    err = cli_error(main, [])
    assert err == ("error: results/x.csv: disk full (no space left on device); nothing usable "
                   "was written")


def test_record_keys_never_collide_with_template_parameters():
    """A record field named like a template parameter ({labels}) is not a TypeError: the
    template's own value wins."""
    from amuro.prompts import render_prompt

    text = render_prompt("nli", "instruct", {"premise": "p", "hypothesis": "h", "labels": "L"},
                         NLI)
    assert "Answer entailment, neutral or contradiction." in text


def test_enough_cases():
    assert len(CONFIG_CASES) + len(ENTRY_CASES) >= 40
