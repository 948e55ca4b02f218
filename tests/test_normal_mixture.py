"""normal_mixture: the responsibilities, far from every component, against an oracle typed here.

log p(x) = log Σ_i π_i N(x | μ_i, σ_i²) with π = softmax(z); the eligibilities go through the
responsibilities r_j = π_j N_j / Σ_i π_i N_i:

    ∂/∂z_j = r_j − π_j,  ∂/∂μ_j = r_j (x − μ_j)/σ_j²,  ∂/∂σ_j = r_j ((x − μ_j)²/σ_j² − 1)/σ_j.

The oracle below is written from these formulas in mpmath at 50 digits (not from the engine)."""
from __future__ import annotations

import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy

import symelig
from symelig.family import K, j, l


def _oracle(x, logits, loc, scale):
    """(log p, e_z, e_μ, e_σ) in mpmath at 50 digits."""
    with mpmath.workdps(50):
        x = mpmath.mpf(x)
        z, mu, sigma = ([mpmath.mpf(v) for v in a] for a in (logits, loc, scale))
        f = [z[i] - mpmath.log(sigma[i]) - (x - mu[i]) ** 2 / (2 * sigma[i] ** 2) for i in range(len(z))]
        norm_f, norm_z = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in f)), mpmath.log(mpmath.fsum(mpmath.exp(a) for a in z))
        r = [mpmath.exp(a - norm_f) for a in f]
        pi = [mpmath.exp(a - norm_z) for a in z]
        log_p = norm_f - norm_z - mpmath.log(2 * mpmath.pi) / 2
        e_z = [a - b for a, b in zip(r, pi)]
        e_mu = [r[i] * (x - mu[i]) / sigma[i] ** 2 for i in range(len(z))]
        e_sigma = [r[i] * ((x - mu[i]) ** 2 / sigma[i] ** 2 - 1) / sigma[i] for i in range(len(z))]
        return log_p, e_z, e_mu, e_sigma


def _close(got, want, rtol):
    got = np.ravel(np.asarray(got, float))
    want = [float(w) for w in np.ravel(np.asarray(want, dtype=object))]
    for g, w in zip(got, want):
        assert np.isfinite(g), (got, want)
        assert abs(g - w) <= rtol * abs(w) + 1e-300, (got, want)


@pytest.mark.parametrize("x", [1e3, -1e3, 1e5, 3.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_far_from_every_component_log_p_and_eligibility_are_finite_and_correct(x, dtype):
    """x = 1e3 with unit scales: every N(x | μ_i, 1) underflows (e^(−5e5)), yet log p ≈ −5e5 and
    the responsibilities (all on the nearest component) come out finite and right: the kernel
    works with log-weights, max-shifted, never with the densities themselves."""
    logits, loc, scale = np.array([0.3, -1.0, 2.0, 0.0]), np.array([-1.0, 0.5, 2.0, 4.0]), np.ones(4)
    d = symelig.derive("normal_mixture", "scale")
    args = {"logits": logits.astype(dtype), "loc": loc.astype(dtype), "scale": scale.astype(dtype)}
    log_p, e_z, e_mu, e_sigma = _oracle(x, *(a.astype(dtype).astype(float) for a in args.values()))
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    got = d.log_prob(dtype(x), **args)
    assert got.dtype == dtype
    _close(got, [log_p], rtol)
    e = d.eligibility(dtype(x), **args)
    assert all(v.dtype == dtype for v in e.values())
    _close(e["logits"], e_z, rtol if dtype == np.float64 else 1e-5)
    _close(e["loc"], e_mu, rtol)
    _close(e["scale"], e_sigma, rtol)


def test_far_tail_in_every_parametrization_and_in_log_scale_unit_scales():
    """The same far point through log_scale and softplus_scale (σ = e^s, softplus(r))."""
    logits, loc = np.array([0.3, -1.0, 2.0]), np.array([-1.0, 0.5, 2.0])
    for param, theta, scale in (("log_scale", np.zeros(3), np.ones(3)),
                                ("softplus_scale", np.full(3, 0.5), np.log1p(np.exp(np.full(3, 0.5))))):
        d = symelig.derive("normal_mixture", param)
        name = d.parameters[2]
        log_p, e_z, e_mu, e_sigma = _oracle(1e3, logits, loc, scale)
        _close(d.log_prob(1e3, logits=logits, loc=loc, **{name: theta}), [log_p], 1e-13)
        e = d.eligibility(1e3, logits=logits, loc=loc, **{name: theta})
        _close(e["logits"], e_z, 1e-13)
        _close(e["loc"], e_mu, 1e-13)
        chain = scale if param == "log_scale" else 1 / (1 + np.exp(-theta))  # dσ/dθ
        _close(e[name], [v * c for v, c in zip(e_sigma, chain)], 1e-12)


@pytest.mark.parametrize("param", ["scale", "log_scale", "softplus_scale"])
def test_eligibility_matches_central_differences_of_log_p(param):
    d = symelig.derive("normal_mixture", param)
    rng = np.random.default_rng(4)
    args = {"logits": rng.normal(size=5), "loc": 2 * rng.normal(size=5),
            d.parameters[2]: rng.uniform(0.5, 2, size=5) if param == "scale" else rng.normal(size=5)}
    x, h = 0.7, 1e-6
    e = d.eligibility(x, **args)
    for name in d.parameters:
        for c in range(5):
            up, down = ({**args, name: args[name] + s * h * np.eye(5)[c]} for s in (1, -1))
            numeric = (d.log_prob(x, **up) - d.log_prob(x, **down)) / (2 * h)
            assert e[name][c] == pytest.approx(numeric, rel=1e-7, abs=1e-9), (name, c)


def test_mean_eligibility_is_zero_by_monte_carlo():
    """E[e] = 0 under x ~ p(x | θ): the mean over 4·10⁵ draws is within 5 standard errors of 0."""
    d = symelig.derive("normal_mixture", "log_scale")
    rng = np.random.default_rng(9)
    logits, loc, log_scale = np.array([0.5, -0.3, 1.0]), np.array([-2.0, 0.5, 3.0]), np.array([0.0, -0.7, 0.4])
    n = 400_000
    pi = np.exp(logits) / np.exp(logits).sum()
    component = rng.choice(3, size=n, p=pi)
    x = loc[component] + np.exp(log_scale[component]) * rng.normal(size=n)
    e = d.eligibility(x, logits=logits, loc=loc, log_scale=log_scale)
    for name, v in e.items():
        mean, error = v.mean(0), v.std(0) / np.sqrt(n)
        assert np.all(np.abs(mean) < 5 * error + 1e-12), (name, mean, error)


def test_printed_hessian_matches_central_differences():
    """The Hessian is printed only (three vector parameters: no structured kernel); its formulas,
    evaluated at K = 3, equal central differences of the eligibility kernel."""
    from symelig.functions import LogSumExp, Softmax

    d = symelig.derive("normal_mixture", "log_scale")
    so, s = d.second_order, d.symbolic.symbols
    rng = np.random.default_rng(6)
    values = {"logits": rng.normal(size=3), "loc": rng.normal(size=3), "log_scale": 0.3 * rng.normal(size=3)}
    x, h = 0.4, 1e-6
    numbers = {s["x"]: x, **{s[n][c]: values[n][c] for n in values for c in range(3)}}
    for (a, b), expr in so.hessian.items():
        for cj in range(3):
            for cl in range(3):
                e = expr.replace(lambda f: isinstance(f, (LogSumExp, Softmax)), lambda f: f.doit())
                e = e.subs({j: cj, l: cl}).subs(K, 3).doit()
                symbolic = float(sympy.N(e.subs(numbers)))
                up, down = ({**values, b: values[b] + sign * h * np.eye(3)[cl]} for sign in (1, -1))
                numeric = (d.eligibility(x, **up)[a][cj] - d.eligibility(x, **down)[a][cj]) / (2 * h)
                assert symbolic == pytest.approx(numeric, rel=1e-6, abs=1e-8), (a, b, cj, cl)


def test_fisher_has_no_closed_form_and_says_so_in_one_line():
    d = symelig.derive("normal_mixture", "scale")
    assert d.second_order.fisher is None
    with pytest.raises(symelig.SymeligError) as raised:
        d.fisher(logits=np.zeros(2), loc=np.zeros(2), scale=np.ones(2))
    message = str(raised.value)
    assert "\n" not in message and "no closed-form Fisher information" in message and "responsibilities" in message
    assert len(message) < 250
    text = d.text(order=2)
    assert "Fisher information: no closed form (x enters through a ratio of sums over K terms" in text


def test_cli_derive_order_two_says_no_closed_form():
    run = subprocess.run([sys.executable, "-m", "symelig", "derive", "normal_mixture", "--param", "log_scale", "--order", "2"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Fisher information: no closed form" in run.stdout
    assert "softmax(z - s - (x - μ)**2*exp(-2*s)/2)_j - softmax(z)_j" in run.stdout
