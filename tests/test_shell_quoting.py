"""No config string reaches a shell unquoted.

Every string-valued key the config schema allows is in KEYS: given a value full of shell
metacharacters it is either refused with one config line (in-process, the workflow's own
validate_config), or it goes through a dry run of the whole workflow and every rendered
shell command is run under bash with a stub `python` that records its argv: the value must
arrive byte for byte, and the marker file the value tries to create must never appear.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from test_workflow import ENV, ROOT, SNAKEMAKE
from workflow_config import SCHEMA, config_error, test_config

MARK = "MARK"


def hostile(tag: str) -> str:
    """A value that runs `touch MARK` if it ever meets a shell unquoted."""
    return f"{tag}<$(touch {MARK}) `touch {MARK}`;touch {MARK};'\" &|>"


def schema_string_keys() -> set[str]:
    """Every place the schema allows a string: `a.*.b` (any key), `a[]` (list items),
    `a.<name>` (the keys of a mapping)."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))

    def resolve(node):
        while "$ref" in node:
            ref = schema["$defs"][node["$ref"].split("/")[-1]]
            node = {**ref, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    found: set[str] = set()

    def walk(node, path):
        node = resolve(node)
        for key in ("oneOf", "anyOf", "allOf"):
            for branch in node.get(key, []):
                walk(branch, path)
        if node.get("type") == "string":
            found.add(path)
        if "propertyNames" in node:
            found.add(f"{path}.<name>")
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}".lstrip("."))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    return found


# ---- keys refused by the config check: (change, the key named in the one line) -------------


def _at(path: str, value):
    def apply(cfg):
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return apply


def _real(**spec):
    def apply(cfg):
        cfg["datasets"]["realset"] = {"adapter": "rte", **spec}
        cfg["tasks"]["nli"]["ood"] = ["realset"]
    return apply


def _hub_model(**spec):
    return _at("models.hubm", {"source": "hub", "repo": "o/r", "steps": [1], **spec})


H = hostile("r")
FILES = {"test": "/d/t.tsv", "train": "/d/tr.tsv"}
REFUSED = {
    "analysis.compare.format": (_at("analysis.compare.format", H), "analysis.compare.format"),
    "datasets.*.adapter": (_real(adapter=H, files=FILES), "datasets.realset.adapter"),
    "datasets.*.demo_from": (_real(files=FILES, demo_from=H), "datasets.realset.demo_from"),
    "datasets.*.hub.config": (_real(hub={"id": "o/r", "config": H}, splits={"test": "t"}),
                              "datasets.realset.hub.config"),
    "datasets.*.hub.id": (_real(hub={"id": H}, splits={"test": "t"}), "datasets.realset.hub.id"),
    "datasets.*.hub.revision": (_real(hub={"id": "o/r", "revision": H}, splits={"test": "t"}),
                                "datasets.realset.hub.revision"),
    "datasets.*.labels_files.<name>": (_real(files=FILES, labels_files={H: "/d/l"}),
                                       "datasets.realset.labels_files"),
    "datasets.*.splits.demo": (_real(hub={"id": "o/r"}, splits={"demo": H}),
                               "datasets.realset.splits.demo"),
    "datasets.*.splits.test": (_real(hub={"id": "o/r"}, splits={"test": H}),
                               "datasets.realset.splits.test"),
    "datasets.*.splits.train": (_real(hub={"id": "o/r"}, splits={"train": H}),
                                "datasets.realset.splits.train"),
    "datasets.*.url.<name>": (_real(url={H: "https://e.org/a.json"}), "datasets.realset.url"),
    "datasets.<name>": (_at(f"datasets.{H}", {"labels": ["a", "b"]}), "datasets"),
    "evaluate.formats[]": (_at("evaluate.formats", [H]), "evaluate.formats.0"),
    "evaluate.finetuned_formats": (_at("evaluate.finetuned_formats", H),
                                   "evaluate.finetuned_formats"),
    "evaluate.base_zero_shot_formats[]": (_at("evaluate.base_zero_shot_formats", [H]),
                                          "evaluate.base_zero_shot_formats.0"),
    "evaluate.finetuned_zero_shot_formats[]": (_at("evaluate.finetuned_zero_shot_formats", [H]),
                                               "evaluate.finetuned_zero_shot_formats.0"),
    "evaluate.demonstrations": (_at("evaluate.demonstrations", H), "evaluate.demonstrations"),
    "finetune.format": (_at("finetune.format", H), "finetune.format"),
    "finetune.parallel": (_at("finetune.parallel", H), "finetune.parallel"),
    "finetune.per_task.<name>": (_at("finetune.per_task", {H: {}}), "finetune.per_task"),
    "finetune.precision": (_at("finetune.precision", H), "finetune.precision"),
    "instruction_tuning.chat_template": (_at("instruction_tuning.chat_template", H),
                                         "instruction_tuning.chat_template"),
    "instruction_tuning.dataset": (_at("instruction_tuning.dataset", H),
                                   "instruction_tuning.dataset"),
    "instruction_tuning.eval[]": (_at("instruction_tuning.eval", [H]),
                                  "instruction_tuning.eval.0"),
    "instruction_tuning.parallel": (_at("instruction_tuning.parallel", H),
                                    "instruction_tuning.parallel"),
    "instruction_tuning.precision": (_at("instruction_tuning.precision", H),
                                     "instruction_tuning.precision"),
    "models.*.revisions.<name>": (_hub_model(revisions={H: 9}), "models.hubm.revisions"),
    "models.*.source": (_at("models.mini.source", H), "models.mini.source"),
    "models.<name>": (_at(f"models.{H}", {"source": "local", "path": "/p", "steps": [1]}),
                      "models"),
    "pretrain.train.precision": (_at("pretrain.train.precision", H), "pretrain.train.precision"),
    "tasks.*.id[]": (_at("tasks.nli.id", [H]), "tasks.nli.id.0"),
    "tasks.*.metric": (_at("tasks.nli.metric", H), "tasks.nli.metric"),
    "tasks.*.ood[]": (_at("tasks.nli.ood", [H]), "tasks.nli.ood.0"),
    "tasks.*.template": (_at("tasks.nli.template", H), "tasks.nli.template"),
    "tasks.*.train": (_at("tasks.nli.train", H), "tasks.nli.train"),
    "tasks.*.type": (_at("tasks.nli.type", H), "tasks.nli.type"),
    "tasks.<name>": (_at(f"tasks.{H}", {"type": "generation", "template": "qa", "id": ["x"]}),
                     "tasks"),
}

# ---- keys accepted: each placed in one dry-run config, its value must reach a program ------

V = {key: hostile(f"k{i:02d}") for i, key in enumerate([
    "models.*.repo", "models.*.branch_pattern", "models.*.path", "pretrain.model_config.model_type",
    "tasks.*.labels[]", "datasets.*.labels[]", "datasets.*.files.test", "datasets.*.files.demo",
    "datasets.*.files.train", "datasets.*.labels_files.*", "datasets.*.url.*",
    "finetune.lora.target_modules[]", "finetune.lora.target_modules"])}
PASSED = {
    "models.*.repo": V["models.*.repo"],
    "models.*.branch_pattern": "step{step}-" + V["models.*.branch_pattern"],
    "models.*.path": "ck/" + V["models.*.path"] + "/step{step}",
    "pretrain.model_config.model_type": V["pretrain.model_config.model_type"],
    "tasks.*.labels[]": V["tasks.*.labels[]"],
    "datasets.*.labels[]": V["datasets.*.labels[]"],
    "datasets.*.files.test": "in/a " + V["datasets.*.files.test"] + ".tsv",
    "datasets.*.files.demo": "in/ad" + V["datasets.*.files.demo"] + ".tsv",
    "datasets.*.files.train": "in/bt" + V["datasets.*.files.train"] + ".tsv",
    "datasets.*.labels_files.*": "in/l" + V["datasets.*.labels_files.*"] + ".lst",
    "datasets.*.url.*": "https://e.org/c" + V["datasets.*.url.*"] + ".json",
    "finetune.lora.target_modules[]": V["finetune.lora.target_modules[]"],
    "finetune.lora.target_modules": V["finetune.lora.target_modules"],
}


def hostile_configs() -> list[dict]:
    """Two configs (lora.target_modules is a list in one, a string in the other) holding every
    accepted hostile value, with every kind of source and rule."""
    cfg = test_config()
    cfg["models"]["hubm"] = {"source": "hub", "repo": PASSED["models.*.repo"],
                             "branch_pattern": PASSED["models.*.branch_pattern"], "steps": [1]}
    cfg["models"]["locm"] = {"source": "local", "path": PASSED["models.*.path"], "steps": [1]}
    cfg["models"]["ggm"] = {"source": "gguf", "path": "m.gguf", "steps": [0]}
    cfg["pretrain"]["model_config"]["model_type"] = PASSED["pretrain.model_config.model_type"]
    cfg["tasks"]["nli"]["labels"] = ["entailment", "neutral", PASSED["tasks.*.labels[]"]]
    cfg["tasks"]["real"] = {"type": "classification", "template": "nli",
                            "labels": ["entailment", "neutral"],
                            "id": ["reala", "realb", "realh"], "ood": ["realc"]}
    cfg["datasets"].update({
        "reala": {"adapter": "rte", "demo_from": "demo",
                  "files": {"test": PASSED["datasets.*.files.test"],
                            "demo": PASSED["datasets.*.files.demo"]},
                  "labels": ["entailment", PASSED["datasets.*.labels[]"]],
                  "labels_files": {"test": PASSED["datasets.*.labels_files.*"]}},
        "realb": {"adapter": "rte", "files": {"test": "in/b.tsv",
                                              "train": PASSED["datasets.*.files.train"]}},
        "realc": {"adapter": "rte", "url": {"test": PASSED["datasets.*.url.*"],
                                            "train": "https://e.org/ct.json"}},
        "realh": {"adapter": "rte", "hub": {"id": "o/r", "config": "c", "revision": "v1"},
                  "splits": {"test": "validation", "train": "train"}},
    })
    cfg["finetune"]["lora"] = {"r": 2, "target_modules": [PASSED["finetune.lora.target_modules[]"]]}
    other = json.loads(json.dumps(cfg))
    other["finetune"]["lora"]["target_modules"] = PASSED["finetune.lora.target_modules"]
    return [cfg, other]


def test_every_string_key_is_covered():
    assert schema_string_keys() == set(REFUSED) | set(PASSED)


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_refused_in_one_line(key, capsys):
    change, named = REFUSED[key]
    cfg = test_config()
    change(cfg)
    err = config_error(cfg, capsys)
    assert err is not None and err.startswith(f"error: config: {named}: "), (key, err)


def test_accepted_values_pass_the_config_check(capsys):
    for cfg in hostile_configs():
        assert config_error(json.loads(json.dumps(cfg)), capsys) is None


SHELL_BLOCK = re.compile(r"^\s*shell:\s*\n((?:\s*f?\"[^\n]*\"\s*\n)+)", re.MULTILINE)


def test_every_shell_placeholder_is_quoted():
    """Statically: every {placeholder} in every rule's shell command ends in :q."""
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    seen = 0
    for path in files:
        for block in SHELL_BLOCK.findall(path.read_text(encoding="utf-8")):
            for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", block):
                seen += 1
                assert field.endswith(":q"), f"{path.name}: {{{field}}} is not quoted"
    assert seen > 50


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_rendered_commands_pass_values_byte_for_byte(tmp_path):
    """Dry-run every rule with the hostile values, run each rendered command under bash with a
    stub `python` that records its argv: every value arrives whole, nothing else runs."""
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "with open(os.environ['ARGV_LOG'], 'a') as fh:\n"
                    "    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n", encoding="utf-8")
    stub.chmod(0o755)
    modules: set[str] = set()
    strings: list[str] = []
    for n, cfg in enumerate(hostile_configs()):
        work = tmp_path / f"work{n}"
        for key in ("datasets.*.files.test", "datasets.*.files.demo", "datasets.*.files.train"):
            (work / PASSED[key]).parent.mkdir(parents=True, exist_ok=True)
            (work / PASSED[key]).write_text("index\tsentence1\tsentence2\tlabel\n")
        (work / "in" / "b.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
        config = work / "hostile.yaml"
        config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-n", "-p",
                               "--configfile", str(config), "--directory", str(work)],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        commands = [line.removeprefix("Shell command: ")
                    for line in (proc.stdout + proc.stderr).splitlines()
                    if line.startswith("Shell command: ") and line != "Shell command: None"]
        assert len(commands) > 20
        log = work / "argv.jsonl"
        env = {**os.environ, "PATH": f"{stub.parent}:/usr/bin:/bin", "ARGV_LOG": str(log)}
        for cmd in commands:
            words = shlex.split(cmd)
            for i, word in enumerate(words[:-1]):
                if word == "2>":
                    (work / words[i + 1]).parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, (cmd, done.stderr)
        assert not list(work.rglob(MARK)), "a config value ran as a shell command"
        for line in log.read_text(encoding="utf-8").splitlines():
            argv = json.loads(line)
            modules.add(argv[1])
            for arg in argv:
                strings.append(arg)
                try:
                    strings += _strings(json.loads(arg))
                except ValueError:
                    pass
    assert modules >= {f"amuro.{m}" for m in (
        "make_world", "pretrain", "download_dataset", "prepare_data", "fetch_checkpoint",
        "finetune", "select_lr", "evaluate", "aggregate", "tables", "figures", "report")}
    for key, value in PASSED.items():
        assert any(value in s for s in strings), f"{key}: {value!r} did not arrive whole"
