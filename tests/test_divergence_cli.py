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
    assert "KL(p ‖ q) = (μ**2 + μ_q**2 + σ**2 + 2*σ_q**2*log(σ_q) - 2*μ*μ_q - 2*σ_q**2*log(σ) - σ_q**2)/(2*σ_q**2)" in out
    assert "∂KL/∂σ = σ/σ_q**2 - 1/σ" in out and "∂KL/∂σ_q" in out
    code, out, _ = _run(capsys, "derive", "normal", "--param", "scale", "--quantity", "entropy", "-f", "json")
    data = json.loads(out)
    assert data["quantity"] == "entropy" and data["gradients"]["p"]["scale"]["text"] == "1/σ"
    code, out, _ = _run(capsys, "derive", "categorical", "--param", "logits", "--quantity", "kl", "-f", "latex")
    assert code == 0 and r"\begin{align}" in out and r"\operatorname{softmax}(z_{q})_{j}" in out


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
