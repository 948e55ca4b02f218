"""The command line: outputs in every format, one-line errors with exit code 2, no traceback,
nothing half-written on disk."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from symelig.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_derive_text_prints_log_likelihood_and_eligibility(capsys):
    code, out, _ = run(capsys, "derive", "categorical", "--param", "probs")
    assert code == 0
    assert "log-likelihood" in out and "δ" in out and "pₓ" in out and "Williams" in out


@pytest.mark.parametrize("fmt,needle", [("latex", r"\delta_{j x}"), ("numpy", "def eligibility("), ("json", '"eligibility"'),
                                        ("markdown", "## Step by step")])
def test_derive_formats(capsys, fmt, needle):
    code, out, _ = run(capsys, "derive", "categorical", "--param", "probs", "--format", fmt)
    assert code == 0 and needle in out
    if fmt == "json":
        assert json.loads(out)["parameters"] == ["probs"]


def test_derive_to_file(capsys, tmp_path):
    target = tmp_path / "cat.tex"
    code, _, _ = run(capsys, "derive", "categorical", "--param", "logits", "-f", "latex", "--standalone", "-o", str(target))
    assert code == 0
    assert target.read_text().startswith("\\documentclass")
    assert [p.name for p in tmp_path.iterdir()] == ["cat.tex"]


def test_derive_k_table(capsys):
    code, out, _ = run(capsys, "derive", "categorical", "--param", "probs", "--k", "8")
    assert code == 0
    assert out.count("∂ log p / ∂p") == 64
    # components as one writes them: 1/p₀ − 1/Σp, subscripts, no Python syntax
    assert "∂ log p / ∂p₀ = 1/p₀ - 1/(p₀ + p₁ + p₂ + p₃ + p₄ + p₅ + p₆ + p₇)" in out
    assert "**" not in out and "[" not in out and "*" not in out
    code, out, _ = run(capsys, "derive", "multinomial", "--param", "logits", "--k", "4", "-f", "json")
    assert len(json.loads(out)["components"]) == 4


def test_eval_reproduces_the_seed(capsys):
    code, out, _ = run(capsys, "eval", "categorical", "--param", "probs", "--probs", "0.69,0.1,0.2,0.01", "--x", "0")
    assert code == 0
    assert "[0.449275, -1, -1, -1]" in out
    assert "[0.31, -0.69, -0.69, -0.69]" in out


def test_eval_json_and_multinomial(capsys):
    code, out, _ = run(capsys, "eval", "multinomial", "--param", "probs", "--probs", "0.2,0.3,0.5", "--x", "1,0,2", "--total-count", "3", "-f", "json")
    assert code == 0
    result = json.loads(out)
    assert result["eligibility"]["probs"] == pytest.approx([1 / 0.2 - 3, -3, 2 / 0.5 - 3])


def test_explain_answers_the_seed(capsys):
    code, out, _ = run(capsys, "explain", "categorical", "--param", "probs", "--probs", "0.69,0.1,0.2,0.01", "--x", "0")
    assert code == 0
    assert "Chain rule through a log" in out and "Kronecker delta" in out and "Vector form" in out
    assert "[0.449275, -1, -1, -1]" in out and "[0.31, -0.69, -0.69, -0.69]" in out
    assert "[1.44928, 0, 0, 0]" in out  # normalized probs: zero for the unsampled categories


@pytest.mark.parametrize("fmt,needle", [("latex", "\\intertext{\\raggedright Step 1"), ("markdown", "```math"), ("text", " 1. Model")])
def test_explain_formats(capsys, tmp_path, fmt, needle):
    target = tmp_path / "steps.out"
    code, _, _ = run(capsys, "explain", "gamma", "--param", "log_concentration_rate", "-f", fmt, "-o", str(target))
    assert code == 0 and needle in target.read_text()


def test_list_shows_the_catalog(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "categorical" in out and "normalized_probs" in out and "Multinomial" in out
    header, *rows = out.splitlines()
    assert "support of x" in header and "torch.distributions" in header
    normal = next(r for r in rows if r.split()[:2] == ["normal", "log_scale"])
    assert "loc, log_scale" in normal and "ℝ" in normal and normal.endswith("Normal")


def test_bare_command_prints_help(capsys):
    code, out, err = run(capsys)
    assert code == 0 and "Usage" in out and "derive" in out and err == ""


@pytest.mark.parametrize(
    "argv,message",
    [
        (["derive", "gaussian"], "unknown family 'gaussian'; choose one of: bernoulli, beta, binomial, categorical"),
        (["derive", "categorical", "--param", "softmax"], "choose one of: probs, normalized_probs, logits"),
        (["derive", "categorical", "--format", "pdf"], "'pdf' is not one of"),
        (["derive", "categorical", "--k", "0"], "--k must be an integer from 1 to 64"),
        (["derive", "categorical", "--k", "four"], "--k"),
        (["derive", "categorical", "--k", "3", "-f", "numpy"], "--k works with"),
        (["derive", "categorical", "--nope"], "No such option"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,abc", "--x", "0"], "'abc' is not a number"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,,0.4", "--x", "0"], "'' is not a number"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,0.4", "--x", "2"], "category index in {0, …, 1}"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,0.4"], "missing --x"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,0.4", "--x", "0", "--logits", "1"], "unexpected '--logits'"),
        (["eval", "categorical", "--param", "probs", "--probs", "0.6,-0.4", "--x", "0"], "probs[1] = -0.4"),
        (["eval", "categorical", "--param", "probs", "--probs", "1,0", "--x", "1"], "probability 0"),
        (["eval", "multinomial", "--param", "probs", "--probs", "0.5,0.5", "--x", "1,1", "--total-count", "3"], "must sum to total_count"),
        (["eval", "multinomial", "--param", "logits", "--logits", "0,0,0", "--x", "1,1", "--total-count", "2"], "disagree"),
        (["export", "categorical", "-o", "module.txt"], "-o FILE.py"),
        (["export", "categorical", "-o", "my-module.py"], "not an importable module name"),
        (["export", "-o", "x.py"], "name a family"),
        (["export", "categorical", "-o", "class.py"], "not a Python keyword"),
        (["derive", "categorical", "-o", ""], "-o needs a file name"),
        (["explain", "categorical", "--probs", "0.5,0.5", "--x", "0,1"], "explain takes one sample"),
        (["explain", "categorical", "--standalone"], "use it with --format latex"),
        (["explain", "categorical", "--probs", "0.5,0.5"], "missing --x"),
        (["explain", "categorical", "--probs", "0.5,0.5", "--x", "3"], "category index in {0, …, 1}"),
        (["derive", "normal", "--param", "scale", "--k", "3"], "normal has none"),
        (["eval", "categorical", "--probs", "1e308,1e308", "--x", "0"], "sums past the float range"),
        (["derive", "categorical", "--standalone"], "--standalone makes a whole LaTeX document"),
        (["derive", "categorical", "-f", "latex", "--standalone", "--k", "3"], "without --k"),
        (["eval", "categorical", "--probs=", "--x", "0"], "--probs needs a value after '='"),
        (["eval", "categorical", "--probs", "1_000,1", "--x", "0"], "'1_000' is not a number"),
        (["eval", "categorical", "--probs", "nan,1", "--x", "0"], "'nan' is not a number"),
        (["eval", "categorical", "--probs", "0.5,infinity", "--x", "0"], "'infinity' is not a number"),
        (["eval", "categorical", "--probs", "\u0661,1", "--x", "0"], "is not a number"),
        (["eval", "normal", "--param", "scale", "--loc", "0", "--scale", "-1", "--x", "0.3"], "scale = -1 is not allowed: scale must be a finite number > 0"),
        (["eval", "beta", "--concentration1", "2", "--concentration0", "3", "--x", "1"], "x = 1 is not allowed"),
        (["eval", "poisson", "--rate", "2", "--x", "1.5"], "x = 1.5 is not allowed"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_failed_write_leaves_nothing_behind(capsys, tmp_path):
    code, _, err = run(capsys, "derive", "categorical", "-o", str(tmp_path / "missing" / "out.txt"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "taken.tex").mkdir()  # the final rename fails after the text was written
    code, _, err = run(capsys, "derive", "categorical", "-f", "latex", "-o", str(tmp_path / "taken.tex"))
    assert code == 2 and "cannot write" in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["taken.tex"] and not any((tmp_path / "taken.tex").iterdir())


def test_written_files_follow_the_umask(capsys, tmp_path):
    old = os.umask(0o022)
    try:
        code, _, _ = run(capsys, "export", "categorical", "-o", str(tmp_path / "cat.py"))
    finally:
        os.umask(old)
    assert code == 0 and (tmp_path / "cat.py").stat().st_mode & 0o777 == 0o644


def test_console_script_end_to_end(tmp_path):
    """A real process: exit codes and stderr as a shell user sees them."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    ok = subprocess.run([sys.executable, "-m", "symelig", "derive", "categorical", "--param", "probs"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "eligibility" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "symelig", "eval", "categorical", "--probs", "0.5,0.5", "--x", "7"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("symelig: error:") and bad.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "categorical", "--param", "probs", "--probs", "1e308,1e308", "--x", "0"],
        ["eval", "normal", "--param", "scale", "--loc", "0", "--scale", "1e-200", "--x", "0.3"],
        ["eval", "categorical", "--param", "probs", "--probs", "1,0", "--x", "1"],
    ],
)
def test_numeric_failures_print_one_line_and_no_warning(argv):
    """Overflow inside numpy must surface as our one-line error, not as a RuntimeWarning too."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    bad = subprocess.run([sys.executable, "-m", "symelig", *argv], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("symelig: error:") and bad.stderr.count("\n") == 1, bad.stderr
