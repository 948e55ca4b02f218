"""The notebook face: derivations and explanations display as math in IPython/Jupyter,
``d.latex()`` is math that ``IPython.display.Math`` takes, and ``symelig.explain`` gives the
steps, their renderings and p·e from Python."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import symelig
from symelig import SymeligError

SEED = dict(probs=[0.69, 0.1, 0.2, 0.01], x=0)


def _formatted(obj) -> dict:
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(obj)
    return data


def test_a_derivation_displays_as_math_in_a_notebook():
    data = _formatted(symelig.derive("categorical", "probs"))
    assert {"text/plain", "text/latex", "text/markdown", "text/html"} <= set(data)
    for mime in ("text/latex", "text/markdown"):
        assert r"\frac{\delta_{j x}}{{p}_{x}} - \frac{1}{\sum_{i=0}^{K - 1} {p}_{i}}" in data[mime]
    assert data["text/latex"].startswith("$$\\begin{aligned}") and data["text/latex"].endswith("\\end{aligned}$$")
    html = data["text/html"]
    assert "&amp;=" in html and "<script" not in html and "categorical, parametrization probs" in html


def test_an_explanation_displays_its_steps_and_the_numbers():
    data = _formatted(symelig.explain("categorical", "probs", **SEED))
    assert {"text/plain", "text/latex", "text/markdown", "text/html"} <= set(data)
    assert "Chain rule through a log" in data["text/html"] and "What the numbers mean" in data["text/html"]
    assert "[0.31, -0.69, -0.69, -0.69]" in data["text/markdown"]  # p·e, the seed question's answer
    assert r"\left(0.31, -0.69, -0.69, -0.69\right)" in data["text/latex"]
    assert "```" not in data["text/markdown"]  # $$…$$, which notebooks render, not GitHub's fences


def _pure_math(tex: str) -> None:
    assert "%" not in tex and "$" not in tex and "\\nonumber" not in tex and "\\intertext" not in tex
    assert tex.startswith("\\begin{aligned}") and tex.endswith("\\end{aligned}")
    assert "where" not in tex


def test_latex_is_pure_math():
    for entry in symelig.catalog():
        _pure_math(symelig.derive(entry.family, entry.param).latex())
    _pure_math(symelig.derive("normal", "scale").latex(order=2))
    _pure_math(symelig.explain("categorical", "probs", **SEED).latex())
    assert symelig.derive("normal", "scale").latex(standalone=True).startswith("\\documentclass")
    assert symelig.derive("normal", "scale").latex_fragment().startswith("% normal")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs texlive-latex-base)")
def test_ipython_math_of_every_latex_compiles(tmp_path):
    """What IPython.display.Math makes of d.latex() ($\\displaystyle …$) is valid LaTeX math."""
    display = pytest.importorskip("IPython.display")
    blocks = [symelig.derive(e.family, e.param).latex() for e in symelig.catalog()]
    blocks += [symelig.derive("categorical", "logits").latex(order=2), symelig.derive("normal", "scale").latex(order=2),
               symelig.explain("categorical", "probs", **SEED).latex(), symelig.explain("gamma", "log_concentration_rate").latex()]
    body = "\n\n".join(display.Math(b)._repr_latex_() for b in blocks)
    (tmp_path / "math.tex").write_text(
        "\\documentclass{article}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    )
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "math.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]


def test_explain_from_python_is_what_the_command_prints(capsys):
    from symelig.cli import main

    explanation = symelig.explain("categorical", "probs", **SEED)
    assert [step.rule for step in explanation.steps][:2] == ["model", "parametrize"]
    np.testing.assert_allclose(explanation.numbers["eligibility"]["probs"], [1 / 0.69 - 1, -1, -1, -1])
    np.testing.assert_allclose(explanation.prob_gradient["probs"], [0.31, -0.69, -0.69, -0.69])
    with pytest.raises(SystemExit):
        main(["explain", "categorical", "--param", "probs", "--probs", "0.69,0.1,0.2,0.01", "--x", "0"])
    assert capsys.readouterr().out == explanation.text()
    d = symelig.derive("normal", "scale")
    assert symelig.explain(d).markdown() == symelig.explain("normal", "scale").markdown()
    assert symelig.explain(d).prob_gradient is None


def test_prob_gradient_is_what_autograd_gives_for_exp_log_prob():
    torch = pytest.importorskip("torch")
    probs = torch.tensor([0.69, 0.1, 0.2, 0.01], dtype=torch.float64, requires_grad=True)
    torch.distributions.Categorical(probs=probs).log_prob(torch.tensor(0)).exp().backward()
    d = symelig.derive("categorical", "probs")
    np.testing.assert_allclose(d.prob_gradient(0, probs=[0.69, 0.1, 0.2, 0.01])["probs"], probs.grad.numpy())
    loc, scale = (torch.tensor([0.3, -1.0], dtype=torch.float64, requires_grad=True) for _ in range(2))
    scale.data = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.distributions.Normal(loc, scale).log_prob(torch.tensor([0.1, 0.7], dtype=torch.float64)).exp().sum().backward()
    g = symelig.derive("normal", "scale").prob_gradient(np.array([0.1, 0.7]), loc=[0.3, -1.0], scale=[0.5, 2.0])
    np.testing.assert_allclose(g["loc"], loc.grad.numpy())
    np.testing.assert_allclose(g["scale"], scale.grad.numpy())
    on_tensors = d.prob_gradient(torch.tensor([0]), probs=torch.tensor([[0.69, 0.1, 0.2, 0.01]], dtype=torch.float64))
    np.testing.assert_allclose(on_tensors["probs"][0].numpy(), probs.grad.numpy())


@pytest.mark.parametrize(
    "args,kwargs,message",
    [
        (("categorical", "probs"), dict(probs=[0.5, 0.5]), "missing argument 'x' for categorical param=probs; explain takes all of x, probs"),
        (("categorical", "probs"), dict(logits=[0.5, 0.5], x=0), "unknown argument 'logits'"),
        (("categorical", "probs"), dict(probs=[[0.5, 0.5]], x=0), "probs: explain takes one sample"),
        (("categorical", "probs"), dict(probs=[0.5, 0.5], x=3), "category index in {0, …, 1}"),
        (("categorcal", "probs"), {}, "did you mean 'categorical'"),
        ((3,), {}, "explain takes a family name or a derivation"),
    ],
)
def test_explain_errors_are_one_line(args, kwargs, message):
    with pytest.raises(SymeligError) as info:
        symelig.explain(*args, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
