"""`symelig derive --quantity entropy|kl` and the closed forms without PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

import symelig
from symelig.cli import main


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


def test_derive_quantity_kl_prints_the_closed_form_and_gradients(capsys):
    code, out, _ = _run(capsys, "derive", "normal", "--param", "scale", "--quantity", "kl")
    assert code == 0
    # typeset like the eligibility's text page: 2-D, σ² as a superscript, no SymPy ** or *
    assert "KL(p ‖ q) =\n" in out and "∂KL/∂σ =\n" in out and "∂KL/∂σ_q =\n" in out
    assert "**" not in out and "*" not in out and "2⋅σ_q ⋅log(σ_q)" in out
    code, out, _ = _run(capsys, "derive", "normal", "--param", "scale", "--quantity", "entropy", "-f", "json")
    data = json.loads(out)
    assert data["quantity"] == "entropy" and data["gradients"]["p"]["scale"]["text"] == "1/σ"
    code, out, _ = _run(capsys, "derive", "categorical", "--param", "logits", "--quantity", "kl", "-f", "latex")
    assert code == 0 and r"\begin{align}" in out and r"\operatorname{softmax}(z_{q})_{j}" in out


def test_audit_text_writes_powers_as_a_reader_does(capsys):
    code, out, _ = _run(capsys, "audit", "kl", "normal", "--param", "scale")
    assert code == 0 and "**" not in out and "∂/∂σ KL(π_θ‖π_ref) = σ/σ_ref² - 1/σ" in out


@pytest.mark.parametrize("argv, message", [
    (("derive", "poisson", "--quantity", "entropy"), "poisson --param rate has no closed-form entropy"),
    (("derive", "laplace", "--quantity", "kl"), "laplace --param scale has no closed-form KL divergence"),
    (("derive", "normal", "--quantity", "mean"), "--quantity is entropy or kl"),
    (("derive", "normal", "--quantity", "kl", "-f", "numpy"), "--quantity prints --format text, latex or json"),
    (("derive", "normal", "--quantity", "kl", "--order", "2"), "--quantity works with a catalog entry"),
])
def test_derive_quantity_errors_are_one_line(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_closed_forms_match_textbook_formulas():
    """Oracles typed in by hand: the normal and gamma KL, the Dirichlet entropy at K = 3."""
    from scipy.special import digamma, gammaln

    n = symelig.derive("normal", "scale")
    p, q = {"loc": 0.3, "scale": 1.3}, {"loc": -0.4, "scale": 0.8}
    textbook = np.log(0.8 / 1.3) + (1.3**2 + 0.7**2) / (2 * 0.8**2) - 0.5
    assert np.isclose(n.kl(p, q), textbook, rtol=1e-14)
    g = symelig.derive("gamma", "concentration_rate")
    a, b, c, d = 2.5, 1.5, 1.2, 0.7
    textbook = (a - c) * digamma(a) - gammaln(a) + gammaln(c) + c * (np.log(b) - np.log(d)) + a * (d - b) / b
    assert np.isclose(g.kl({"concentration": a, "rate": b}, {"concentration": c, "rate": d}), textbook, rtol=1e-13)
    dirichlet = symelig.derive("dirichlet", "concentration")
    alpha = np.array([0.7, 2.0, 3.5])
    a0 = alpha.sum()
    textbook = gammaln(alpha).sum() - gammaln(a0) + (a0 - 3) * digamma(a0) - ((alpha - 1) * digamma(alpha)).sum()
    assert np.isclose(dirichlet.entropy(concentration=alpha), textbook, rtol=1e-13)


def test_explain_quantity_shows_the_engines_steps(capsys):
    from symelig.entropy_kl import closed_form

    code, out, _ = _run(capsys, "explain", "normal", "--param", "log_scale", "--quantity", "kl")
    assert code == 0 and "**" not in out
    titles = [line.split(":")[0] for line in out.splitlines() if line[:1].isdigit()]
    assert titles == ["1. Model", "2. Model", "3. Integrand", "4. Expectation", "5. Reparametrize q", "6. Simplify",
                      "7. Gradient", "8. Gradient", "9. Gradient", "10. Gradient"]
    assert "Gamma(1/2, 1)" in out and "σ_ref = exp(s_q)" in out and "∂KL/∂s_q =" in out
    form = closed_form("kl", "normal", "log_scale")
    # each step is what the engine held: the last value step is the printed form, and the
    # expectation, reparametrized and simplified steps are one function of θ_p and θ_q
    (_, _, _, averaged), (_, _, _, mapped), (_, _, _, tidy) = form.steps[3:6]
    assert tidy == form.value and [g for *_, g in form.steps[6:]] == [*form.gradients["p"].values(), *form.gradients["q"].values()]
    point = {sym: v for sym, v in zip(sorted(mapped.free_symbols, key=str), (0.3, -0.2, 0.4, -0.1))}
    assert abs(float((mapped - tidy).subs(point))) < 1e-12
    code, out, _ = _run(capsys, "explain", "categorical", "--param", "logits", "--quantity", "entropy", "-f", "latex")
    assert code == 0 and out.count(r"&\text{") == 5 and r"\mathrm{H}(p) &=" in out and "∼" not in out
    code, out, _ = _run(capsys, "explain", "gamma", "--quantity", "entropy", "-f", "markdown")
    assert code == 0 and out.count("```math") == len(closed_form("entropy", "gamma", None).steps)


@pytest.mark.parametrize("argv, message", [
    (("explain", "normal", "--quantity", "mean"), "--quantity is entropy or kl"),
    (("explain", "normal", "--quantity", "kl", "--loc", "0"), "explain --quantity shows the steps without values"),
    (("explain", "poisson", "--quantity", "entropy"), "has no closed-form entropy"),
])
def test_explain_quantity_errors_are_one_line(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_derivations_pages_have_the_entropy_and_kl_section():
    from symelig.pages import markdown

    page = markdown(symelig.derive("poisson", "rate"), divergences=True)
    section = page.split("## Entropy and KL divergence", 1)[1]
    assert "No closed-form entropy" in section and "`symelig eval poisson --param rate --quantity entropy --samples N --rate V`" in section
    assert r"\mathrm{KL}(p \,\|\, q) = " in section and r"\frac{\partial \mathrm{KL}}{\partial \lambda_{q}}" in section
    assert "## Entropy and KL divergence" not in markdown(symelig.derive("poisson", "rate"))  # derive -f markdown: unchanged


def test_moments_from_a_moment_generating_function():
    from sympy import Lambda, Symbol, exp

    from symelig.family import mgf_variable as u, moments_from_mgf

    x, lam = Symbol("x"), Symbol("lambda", positive=True)
    moments = moments_from_mgf(x, Lambda(u, exp(lam * (exp(u) - 1))), 4)
    assert (moments[x**2] - (lam**2 + lam)).expand() == 0 and (moments[x**4] - (lam**4 + 6 * lam**3 + 7 * lam**2 + lam)).expand() == 0
    with pytest.raises(ValueError, match="declared mean"):
        moments_from_mgf(x, Lambda(u, exp(lam * (exp(u) - 1))), 2, mean=2 * lam)
