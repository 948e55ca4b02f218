"""The truncated normal against scipy.stats.truncnorm (torch.distributions has no class), against
mpmath far in the tails (bounds 10σ and 40σ from μ), and E[e] = 0 by Monte Carlo."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

import symelig

stats = pytest.importorskip("scipy.stats")

PARAMS = ("scale", "log_scale")


def _scale(param, theta):
    return theta if param == "scale" else np.exp(theta)


def _random_batch(rng, n=64):
    """Bounds anywhere from 3σ below to 3σ above μ, of widths 0.05σ to 6σ; x inside."""
    loc, scale = rng.normal(0, 2, n), rng.uniform(0.2, 3.0, n)
    low = loc + scale * rng.uniform(-3, 3, n)
    high = low + scale * rng.uniform(0.05, 6, n)
    x = low + rng.uniform(0, 1, n) * (high - low)
    return x, low, high, loc, scale


def _scipy_log_prob(x, low, high, loc, scale):
    return stats.truncnorm.logpdf(x, (low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)


@pytest.mark.parametrize("param", PARAMS)
def test_log_prob_and_eligibility_match_scipy(param):
    d = symelig.derive("truncated_normal", param)
    x, low, high, loc, scale = _random_batch(np.random.default_rng(0))
    theta = scale if param == "scale" else np.log(scale)
    args = dict(low=low, high=high, loc=loc, **{param: theta})
    np.testing.assert_allclose(d.log_prob(x, **args), _scipy_log_prob(x, low, high, loc, scale), rtol=1e-10, atol=0)
    e = d.eligibility(x, **args)
    for name in ("loc", param):
        # Richardson-extrapolated central differences of scipy's logpdf: error O(h⁴) + rounding
        def at(step):
            up, down = dict(args), dict(args)
            up[name], down[name] = args[name] + step, args[name] - step
            return (_scipy_log_prob(x, low, high, up["loc"], _scale(param, up[param]))
                    - _scipy_log_prob(x, low, high, down["loc"], _scale(param, down[param]))) / (2 * step)

        h = 1e-3 * np.maximum(np.abs(args[name]), 1.0)
        numeric = (4 * at(h / 2) - at(h)) / 3
        np.testing.assert_allclose(e[name], numeric, rtol=1e-7, atol=1e-9, err_msg=name)


def _mp_log_prob(x, low, high, loc, scale):
    """log p at 50 digits, the mass through erfc on the side of its tail."""
    root = mpmath.sqrt(2)
    a, b = (low - loc) / scale, (high - loc) / scale
    if a > 0:
        mass = (mpmath.erfc(a / root) - mpmath.erfc(b / root)) / 2
    elif b <= 0:
        mass = (mpmath.erfc(-b / root) - mpmath.erfc(-a / root)) / 2
    else:
        mass = 1 - (mpmath.erfc(-a / root) + mpmath.erfc(b / root)) / 2
    return -mpmath.log(scale) - mpmath.log(2 * mpmath.pi) / 2 - (x - loc) ** 2 / (2 * scale**2) - mpmath.log(mass)


# (low, high) in units of σ from μ: both bounds in the upper tail, the lower tail, one bound in a
# tail and the other far beyond, and a mass of 1 − 1e-349 across μ
TAILS = [(10, 11), (40, 41), (-11, -10), (-41, -40), (40, 1000), (-1000, -40), (-40, 40), (10, 10.001), (39.9, 40.1)]


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("bounds", TAILS, ids=[f"{lo}..{hi}" for lo, hi in TAILS])
def test_tails_against_mpmath(param, bounds):
    d = symelig.derive("truncated_normal", param)
    loc, scale = 0.7, 1.3
    low, high = loc + bounds[0] * scale, loc + bounds[1] * scale
    theta = scale if param == "scale" else np.log(scale)
    with mpmath.workdps(50):
        mp_scale = (lambda t: t) if param == "scale" else mpmath.exp
        for fraction in (0.0, 0.1, 0.5, 1.0):
            x = min(low + fraction * (high - low), high) if bounds != (-40, 40) else loc + fraction * scale
            args = dict(low=low, high=high, loc=loc, **{param: theta})
            got = d.log_prob(x, **args)
            values = [mpmath.mpf(v) for v in (x, low, high, loc, theta)]

            def log_p(m, t):
                return _mp_log_prob(values[0], values[1], values[2], m, mp_scale(t))

            true = log_p(values[3], values[4])
            assert np.isfinite(got) and abs(got - true) <= 1e-10 * abs(true), (x, got, true)
            e = d.eligibility(x, **args)
            for name, order in (("loc", (1, 0)), (param, (0, 1))):
                true_e = mpmath.diff(log_p, (values[3], values[4]), order)
                # relative, or absolute against the terms it cancels from (z² and α·R ~ α²)
                allowed = 1e-10 * max(abs(true_e), 1.0)
                assert abs(e[name] - true_e) <= allowed, (name, x, e[name], true_e)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("bounds", [(-1.0, 2.0), (1.5, 4.0), (10.0, 11.0)])
def test_score_has_mean_zero_by_monte_carlo(param, bounds):
    """The sample mean of e over scipy's draws is within 4 standard errors of 0."""
    d = symelig.derive("truncated_normal", param)
    loc, scale = 0.3, 0.8
    low, high = loc + bounds[0] * scale, loc + bounds[1] * scale
    x = stats.truncnorm.rvs(bounds[0], bounds[1], loc=loc, scale=scale, size=200_000, random_state=np.random.default_rng(5))
    theta = scale if param == "scale" else np.log(scale)
    e = d.eligibility(x, low=low, high=high, loc=loc, **{param: theta})
    for name, values in e.items():
        assert abs(values.mean()) < 4 * values.std() / np.sqrt(len(values)), (name, values.mean(), values.std())


def test_fisher_matches_the_variance_of_the_score():
    """F_μμ = Var(x)/σ⁴ for the truncated normal (its score in μ is (x − E[x])/σ²), with scipy's variance."""
    d = symelig.derive("truncated_normal", "scale")
    loc, scale = 0.3, 0.8
    for lo, hi in [(-1.0, 2.0), (1.5, 4.0), (10.0, 11.0), (40.0, 41.0)]:
        fisher = d.fisher(low=loc + lo * scale, high=loc + hi * scale, loc=loc, scale=scale)
        with mpmath.workdps(50):
            a, b = mpmath.mpf(lo), mpmath.mpf(hi)
            root = mpmath.sqrt(2)
            mass = (mpmath.erfc(a / root) - mpmath.erfc(b / root)) / 2 if a > 0 else mpmath.ncdf(b) - mpmath.ncdf(a)
            mean = (mpmath.npdf(a) - mpmath.npdf(b)) / mass
            variance = 1 + (a * mpmath.npdf(a) - b * mpmath.npdf(b)) / mass - mean**2
        np.testing.assert_allclose(fisher[..., 0, 0] if np.ndim(fisher) == 2 else fisher[0][0],
                                   float(variance) / scale**2, rtol=1e-6 if lo >= 10 else 1e-10, err_msg=f"{lo}..{hi}")


def test_a_sample_outside_the_bounds_and_reversed_bounds_are_one_line_errors():
    d = symelig.derive("truncated_normal", "scale")
    with pytest.raises(symelig.SymeligError, match=r"x\[1\] = 3.0 is outside \[low, high\] = \[-1.0, 2.0\]") as error:
        d.eligibility(np.array([0.5, 3.0]), low=-1.0, high=2.0, loc=0.0, scale=1.0)
    assert "\n" not in str(error.value)
    with pytest.raises(symelig.SymeligError, match="high = 1.0 is not above low = 1.0") as error:
        d.log_prob(1.0, low=1.0, high=1.0, loc=0.0, scale=1.0)
    assert "\n" not in str(error.value)
