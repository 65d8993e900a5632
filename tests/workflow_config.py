"""The workflow's config check, in-process: `validate_config` from workflow/rules/common.smk
(everything above its call on the loaded config), with the schema given by absolute path, so
a test checks a config in milliseconds instead of starting Snakemake."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMMON = ROOT / "workflow" / "rules" / "common.smk"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TEST_CONFIG = ROOT / "config" / "test" / "config.yaml"

_CACHE: dict = {}


def validate_config():
    """The workflow's validate_config(cfg): returns None, or prints one line and exits 1."""
    if "fn" not in _CACHE:
        head, sep, _ = COMMON.read_text(encoding="utf-8").partition("\nvalidate_config(config)\n")
        assert sep, "common.smk no longer calls validate_config(config)"
        namespace: dict = {"__name__": "amuro_workflow_common"}
        exec(compile(head, str(COMMON), "exec"), namespace)
        from snakemake.utils import validate

        def validate_abs(cfg, schema, set_default=True):
            return validate(cfg, schema=str(SCHEMA), set_default=set_default)

        namespace["validate"] = validate_abs
        _CACHE["fn"] = namespace["validate_config"]
    return _CACHE["fn"]


def test_config() -> dict:
    """A fresh copy of config/test/config.yaml."""
    if "cfg" not in _CACHE:
        _CACHE["cfg"] = yaml.safe_load(TEST_CONFIG.read_text(encoding="utf-8"))
    return copy.deepcopy(_CACHE["cfg"])


test_config.__test__ = False  # a helper, not a test


def config_error(cfg: dict, capsys) -> str | None:
    """The one-line config error for `cfg`, or None when it is accepted."""
    capsys.readouterr()
    try:
        validate_config()(cfg)
    except SystemExit as exc:
        assert exc.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: config: ") and "\n" not in err, err
        return err
    return None

