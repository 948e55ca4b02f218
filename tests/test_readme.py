"""Every example in the README runs as written: each `symelig …` command line through the CLI
(in a fresh folder, like a fresh clone), each Python block in a process of its own.

The Python blocks use placeholders the README leaves to the reader (x, z, g, nu, mu, sigma);
``PRELUDE`` gives them small values of the documented shapes.  A block that imports a library
not installed here (cupy) is skipped; `symelig eval-files` gets the input files it names."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symelig.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SLOW = ("--all", "--order 2", 'symelig.derive("student_t")', 'backend="numba"')  # minutes cold, or numba compiles

PRELUDE = """\
import numpy as np
import symelig
rng = np.random.default_rng(0)
x = np.array([2, 0])                                   # two samples (category indices)
z = rng.normal(size=(2, 5)); g = rng.normal(size=(2, 5))   # logits and a gradient, K = 5
nu, mu, sigma = np.array([3.0, 5.0]), np.array([0.0, 1.0]), np.array([1.0, 2.0])
"""


def _blocks(text: str):
    """(language, code) of every fenced block, and ("shell", code) of every indented one."""
    fenced = re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    for match in fenced:
        yield match.group(1) or "shell", match.group(2)
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for block in re.finditer(r"(?:^(?: {4}.*)?\n)+", outside, re.M):
        lines = [line[4:] for line in block.group(0).splitlines() if line.startswith("    ")]
        if lines:
            yield "shell", "\n".join(lines)


def _commands() -> list:
    text = README.read_text(encoding="utf-8")
    return [line.strip() for language, code in _blocks(text) if language == "shell"
            for line in code.splitlines() if line.strip().startswith("symelig ")]


def _python_blocks() -> list:
    text = README.read_text(encoding="utf-8")
    return [code for language, code in _blocks(text) if language == "python"]


def _marks(code: str) -> list:
    return [pytest.mark.slow] if any(s in code for s in SLOW) else []


COMMANDS = _commands()
PYTHON = _python_blocks()


def test_the_readme_has_examples_to_run():
    assert len(COMMANDS) >= 15 and len(PYTHON) >= 5
    assert "symelig export --all -o kernels/" in COMMANDS


@pytest.mark.parametrize("command", [pytest.param(c, marks=_marks(c), id=c[:70]) for c in COMMANDS])
def test_readme_command_runs(command, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logged").mkdir()
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "logged" / "x.npy", np.array([0, 2, 1]))
    np.save(tmp_path / "logged" / "logits.npy", np.zeros((3, 4)))
    argv = shlex.split(command, comments=True)
    with pytest.raises(SystemExit) as exit_info:
        main(argv[1:])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    written = argv[argv.index("-o") + 1] if "-o" in argv else "-"
    if written == "-":
        assert out
    else:  # what it says it wrote is there
        assert "wrote " in err and (Path(written).is_file() or any(Path(written).iterdir()))


@pytest.mark.parametrize("code", [pytest.param(c, marks=_marks(c), id=f"block{n}") for n, c in enumerate(PYTHON, 1)])
def test_readme_python_block_runs(code, tmp_path):
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(code)) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    missing = sorted(m for m in imported if m and importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    (tmp_path / "block.py").write_text(PRELUDE + code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    run = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
