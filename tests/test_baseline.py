"""The optimal constant baseline b_j* = E[e_j² f]/E[e_j²] and the variance it achieves."""
from __future__ import annotations

import numpy as np
import pytest

import symelig
from symelig.baseline import gradient_variance, optimal_baseline
from symelig.errors import SymeligError


def _bandit(n, seed, k=6):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=k)
    pi = np.exp(logits) / np.exp(logits).sum()
    means = np.linspace(-1.0, 2.0, k)
    x = rng.choice(k, size=n, p=pi)
    return logits, pi, means, x, means[x] + rng.normal(size=n)


def test_optimal_baseline_converges_to_the_exact_ratio():
    """Exact E[e_j² f]/E[e_j²] by enumeration over the arms (e_j(m) = δ_jm − π_j)."""
    d = symelig.derive("categorical", "logits")
    logits, pi, means, x, f = _bandit(400_000, 1)
    e2 = (np.eye(len(pi)) - pi) ** 2                    # e_j(m)², rows m
    exact = (pi * means) @ e2 / (pi @ e2)
    b = optimal_baseline(d, x, f, logits=np.broadcast_to(logits, (len(x), len(pi))))["logits"]
    np.testing.assert_allclose(b, exact, atol=0.02)


def test_optimal_baseline_minimizes_the_second_moment_and_beats_the_mean():
    d = symelig.derive("categorical", "logits")
    logits, pi, means, x, f = _bandit(50_000, 2)
    z = np.broadcast_to(logits, (len(x), len(pi)))
    b = optimal_baseline(d, x, f, logits=z)["logits"]
    e = d.eligibility(x, logits=z)["logits"]
    second = lambda base: (e**2 * (f[:, None] - base) ** 2).mean(0)  # noqa: E731
    for shift in (-0.05, 0.05):
        assert np.all(second(b) < second(b + shift))
    optimal = gradient_variance(d, x, f, {"logits": b}, logits=z)["logits"]
    mean = gradient_variance(d, x, f, f.mean(), logits=z)["logits"]
    assert optimal.sum() < mean.sum()


def test_scalar_parameters_and_bad_returns():
    d = symelig.derive("normal", "scale")
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, 1000)
    b = optimal_baseline(d, x, x**2, loc=1.0, scale=2.0)
    assert set(b) == {"loc", "scale"} and np.ndim(b["loc"]) == 0
    with pytest.raises(SymeligError, match="returns must be one number per sample"):
        optimal_baseline(d, x, np.ones((1000, 2)), loc=1.0, scale=2.0)
    with pytest.raises(SymeligError, match="first axis"):
        optimal_baseline(d, 0.5, np.ones(3), loc=1.0, scale=2.0)
