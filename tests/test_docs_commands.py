"""Every shell command quoted in README.md and profiles/README.md runs as written, in its
dry-run form: `snakemake …` with -n (the part before a pipe), `make X` as `make -n X`, and
`python -m amuro.<step> …` as `--help` (in-process)."""

from __future__ import annotations

import importlib
import re
import subprocess

import pytest
from test_workflow import ENV, ROOT, SNAKEMAKE

DOCS = [ROOT / "README.md", ROOT / "profiles" / "README.md"]
PROGRAMS = ("snakemake ", "make ", "python -m amuro.")


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each command in a bash code block or an inline code span."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
        lines = [line.split("  #")[0].strip() for b in blocks for line in b.splitlines()]
        prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]
        for command in [*lines, *spans]:
            name = str(doc.relative_to(ROOT))
            if ((command + " ").startswith(PROGRAMS)) and (command, name) not in found:
                found.append((command, name))
    return [(name, command) for command, name in found]


COMMANDS = documented_commands()


def test_commands_found():
    assert len(COMMANDS) >= 15
    assert any("--profile profiles/slurm" in c for _, c in COMMANDS)


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_runs(doc, command, capsys):
    if command.startswith("python -m amuro."):
        module = command.split()[2]
        main = importlib.import_module(module).main
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0, f"{doc}: {command}"
        assert "usage:" in capsys.readouterr().out
        return
    words = command.split("|")[0].split()
    if words[0] == "make":
        argv = ["make", "-n", *words[1:]]
    else:
        argv = [str(SNAKEMAKE), *words[1:]]
        if "-n" not in argv and "--dry-run" not in argv:
            argv.insert(1, "-n")
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"{doc}: `{command}` fails as written:\n"
                                  f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
