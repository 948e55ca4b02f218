"""Monte Carlo entropy and KL (symelig.monte_carlo): every family declares a sampler in its own
module, the estimates agree with the closed forms within 4 standard errors, and the API and CLI
around them (one-line errors, the offer where no closed form exists)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import symelig
from symelig.cli import main
from symelig.errors import SymeligError
from symelig.family import families
from symelig.monte_carlo import has_sampler

from conftest import moderate_arguments

# one parametrization per family: the samplers are per family, the map θ → canonical is the core's
# (the families without a closed form against oracles below)
WITHOUT_CLOSED_FORM = ("masked_categorical", "diag_normal", "tanh_normal", "tanh_normal_presquash", "plackett_luce", "multi_categorical",
                       "normal_mixture")
FIRST = [e for e in {e.family: e for e in reversed(symelig.catalog()) if e.builtin}.values()
         if e.family not in WITHOUT_CLOSED_FORM]


def _params(d, seed):
    args = moderate_arguments(d, np.random.default_rng(seed), size=4)
    args.pop("x")
    for a in d.arguments:
        if a == "total_count":
            args[a] = 6
    return args


def test_every_family_declares_a_sampler():
    builtin = {name: cls for name, cls in families().items() if cls.__module__.startswith("symelig.families")}
    assert len(builtin) >= 21
    without = [name for name, cls in builtin.items() if not has_sampler(cls)]
    assert without == [], without


@pytest.mark.parametrize("e", FIRST, ids=lambda e: f"{e.family}-{e.param}")
def test_estimates_agree_with_the_closed_forms(e):
    d = symelig.derive(e.family, e.param)
    p, q = _params(d, 0), _params(d, 1)
    for a in d.arguments:
        q[a] = p[a]
    checked = 0
    for quantity in ("entropy", "kl"):
        estimate = (d.entropy(method="monte_carlo", samples=40_000, seed=2, **p) if quantity == "entropy"
                    else d.kl(p, q, method="monte_carlo", samples=40_000, seed=2))
        assert estimate.samples == 40_000 and np.all(estimate.standard_error > 0)
        try:
            exact = d.entropy(**p) if quantity == "entropy" else d.kl(p, q)
        except SymeligError:
            continue
        assert abs(estimate.value - exact) < 4 * estimate.standard_error, (quantity, estimate, exact)
        checked += 1
    assert checked


def test_masked_categorical_against_its_masked_probabilities():
    d = symelig.derive("masked_categorical", "logits")
    z, mask = np.array([0.3, -1.0, 2.0, 0.5]), np.array([True, False, True, True])
    probs = np.exp(z) * mask / np.sum(np.exp(z) * mask)
    exact = -np.sum(probs[mask] * np.log(probs[mask]))
    estimate = d.entropy(method="monte_carlo", samples=100_000, seed=0, logits=z, mask=mask)
    assert abs(estimate.value - exact) < 4 * estimate.standard_error


def test_diag_normal_against_the_sum_of_normals():
    d = symelig.derive("diag_normal", "scale")
    p = {"loc": np.array([0.0, 1.0, -2.0]), "scale": np.array([0.5, 1.0, 3.0])}
    q = {"loc": np.array([0.5, 1.0, 0.0]), "scale": np.array([1.0, 2.0, 2.0])}
    entropy = np.sum(0.5 * np.log(2 * np.pi * np.e * p["scale"] ** 2))
    kl = np.sum(np.log(q["scale"] / p["scale"]) + (p["scale"] ** 2 + (p["loc"] - q["loc"]) ** 2) / (2 * q["scale"] ** 2) - 0.5)
    h = d.entropy(method="monte_carlo", samples=100_000, seed=0, **p)
    k = d.kl(p, q, method="monte_carlo", samples=100_000, seed=0)
    assert abs(h.value - entropy) < 4 * h.standard_error and abs(k.value - kl) < 4 * k.standard_error



def _sampler(name):
    return families()[name].sample


@pytest.mark.parametrize("family", ["tanh_normal", "tanh_normal_presquash"])
def test_tanh_normal_against_the_gaussian_and_its_jacobian(family):
    """H(a) = H(u) + E[log|da/du|] (the expectation by quadrature), and KL is the Gaussians' (a
    one-to-one map of the sample leaves it unchanged)."""
    from scipy.integrate import quad

    d = symelig.derive(family, "scale")
    bounds = {"low": np.array([-1.0, 0.0, -3.0]), "high": np.array([1.0, 2.0, 5.0])}
    p = {"loc": np.array([0.0, 1.5, -0.5]), "scale": np.array([0.5, 1.0, 2.0]), **bounds}
    q = {"loc": np.array([0.5, 1.0, 0.0]), "scale": np.array([1.0, 2.0, 1.5]), **bounds}

    def log_jacobian(u, width):  # log((high − low)/2) + log(1 − tanh²u)
        return np.log(width / 2) + 2 * (np.log(2) - abs(u) - np.log1p(np.exp(-2 * abs(u))))

    expected_jacobian = sum(
        quad(lambda u: np.exp(-((u - m) ** 2) / (2 * s**2)) / (s * np.sqrt(2 * np.pi)) * log_jacobian(u, w), m - 12 * s, m + 12 * s, points=[0.0])[0]
        for m, s, w in zip(p["loc"], p["scale"], bounds["high"] - bounds["low"]))
    entropy = np.sum(0.5 * np.log(2 * np.pi * np.e * p["scale"] ** 2)) + expected_jacobian
    kl = np.sum(np.log(q["scale"] / p["scale"]) + (p["scale"] ** 2 + (p["loc"] - q["loc"]) ** 2) / (2 * q["scale"] ** 2) - 0.5)
    h = d.entropy(method="monte_carlo", samples=100_000, seed=0, **p)
    k = d.kl(p, q, method="monte_carlo", samples=100_000, seed=0)
    assert abs(h.value - entropy) < 4 * h.standard_error, (h, entropy)
    assert abs(k.value - kl) < 4 * k.standard_error, (k, kl)
    # left out, the bounds are the family's defaults (−1, 1), as for log_prob
    unit = {n: v for n, v in p.items() if n not in bounds}
    assert np.array_equal(d.entropy(method="monte_carlo", samples=100, seed=0, **unit).value,
                          d.entropy(method="monte_carlo", samples=100, seed=0, **unit, low=-np.ones(3), high=np.ones(3)).value)


def test_tanh_normal_samples_squash_the_presquash_draws_and_stay_inside():
    loc, scale = np.array([[0.0, 1.0, -2.0], [40.0, -40.0, 3.0]]), np.array([[1.0, 0.5, 2.0], [1.0, 1.0, 0.1]])
    low, high = np.array([-1.0, 0.0, 10.0]), np.array([1.0, 2.0, 10.5])
    u = _sampler("tanh_normal_presquash")(np.random.default_rng(3), (5000, 2), loc, scale, low, high)
    a = _sampler("tanh_normal")(np.random.default_rng(3), (5000, 2), loc, scale, low, high)
    assert u.shape == a.shape == (5000, 2, 3)
    assert abs(u[:, 0].mean(0) - loc[0]).max() < 4 * scale[0].max() / np.sqrt(5000)
    # the same u, squashed: equal to the textbook map wherever it does not round onto a bound
    inner = np.abs(u) < 15
    textbook = low + (high - low) * (np.tanh(u) + 1) / 2
    assert np.allclose(a[inner], textbook[inner], rtol=1e-12, atol=1e-14)
    # 40σ out the action rounds onto a bound in float64: moved inside, where log p is finite
    assert np.all((a > low) & (a < high))
    d = symelig.derive("tanh_normal", "scale")
    assert np.all(np.isfinite(d.log_prob(a[:100], loc=loc, scale=scale, low=low, high=high)))


def test_truncated_normal_draws_against_scipy_including_far_tails():
    from scipy import stats

    loc, scale = np.array([0.0, 1.0, 0.0, 0.0, 2.0]), np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    # an ordinary window, one mostly above loc (drawn mirrored), 40σ up, 40σ down, one-sided wide
    low, high = np.array([-1.0, 0.0, 40.0, -41.0, 1.0]), np.array([2.0, 10.0, 41.0, -40.0, 20.0])
    x = _sampler("truncated_normal")(np.random.default_rng(0), (200_000, 5), loc, scale, low, high)
    assert x.shape == (200_000, 5) and np.all((x >= low) & (x <= high)) and np.all(np.isfinite(x))
    alpha, beta = (low - loc) / scale, (high - loc) / scale
    mean, sd = stats.truncnorm.mean(alpha, beta, loc, scale), stats.truncnorm.std(alpha, beta, loc, scale)
    assert np.all(abs(x.mean(0) - mean) < 4 * sd / np.sqrt(len(x))), (x.mean(0), mean)
    assert np.allclose(x.std(0), sd, rtol=0.02)
    for column in range(5):
        assert stats.kstest(x[:20_000, column], stats.truncnorm(alpha[column], beta[column], loc[column], scale[column]).cdf).pvalue > 1e-3


def test_plackett_luce_orderings_against_the_softmax_and_the_enumerated_entropy():
    from itertools import permutations

    logits = np.array([[0.5, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    n = 100_000
    x = _sampler("plackett_luce")(np.random.default_rng(1), (n, 2), logits)
    assert x.shape == (n, 2, 4) and np.all(np.sort(x, -1) == np.arange(4))
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    first = (x[..., 0, None] == np.arange(4)).mean(0)
    assert np.all(abs(first - softmax) < 4 * np.sqrt(softmax * (1 - softmax) / n))
    # second place given the first: the softmax of the rest
    given = x[:, 0, 0] == 2
    rest = np.exp(logits[0]) * (np.arange(4) != 2)
    rest /= rest.sum()
    second = (x[given, 0, 1, None] == np.arange(4)).mean(0)
    assert np.all(abs(second - rest) < 4 * np.sqrt(rest * (1 - rest) / given.sum()) + 1e-12)

    def probability(order, z):  # the sequential softmax, by hand
        weights, left = np.exp(z), list(range(len(z)))
        value = 1.0
        for c in order:
            value *= weights[c] / weights[left].sum()
            left.remove(c)
        return value

    z = logits[0]
    entropy = -sum(probability(o, z) * np.log(probability(o, z)) for o in permutations(range(4)))
    h = symelig.derive("plackett_luce", "logits").entropy(method="monte_carlo", samples=100_000, seed=0, logits=z)
    assert abs(h.value - entropy) < 4 * h.standard_error, (h, entropy)


def test_multi_categorical_blocks_against_their_softmaxes():
    nvec = np.array([3, 1, 4])
    logits = np.array([[0.5, -1.0, 2.0, 7.0, 0.0, 1.0, -2.0, 0.3], [0.0] * 8])
    n = 100_000
    x = _sampler("multi_categorical")(np.random.default_rng(2), (n, 2), logits, nvec)
    assert x.shape == (n, 2, 3) and np.all((x >= 0) & (x < nvec))
    entropy = 0.0
    for b, block in enumerate(np.split(logits, np.cumsum(nvec)[:-1], axis=-1)):
        softmax = np.exp(block) / np.exp(block).sum(-1, keepdims=True)
        frequency = (x[..., b, None] == np.arange(nvec[b])).mean(0)
        assert np.all(abs(frequency - softmax) < 4 * np.sqrt(softmax * (1 - softmax) / n) + 1e-12), b
        entropy = entropy - np.sum(softmax[0] * np.log(softmax[0]))
    h = symelig.derive("multi_categorical", "logits").entropy(method="monte_carlo", samples=100_000, seed=0, logits=logits[0], nvec=nvec)
    assert abs(h.value - entropy) < 4 * h.standard_error, (h, entropy)

def test_seeded_batched_and_float32():
    d = symelig.derive("poisson", "rate")
    one = d.entropy(method="monte_carlo", samples=1000, seed=5, rate=np.array([[1.0, 2.0, 30.0]]))
    two = d.entropy(method="monte_carlo", samples=1000, seed=5, rate=np.array([[1.0, 2.0, 30.0]]))
    assert one.value.shape == (1, 3) and np.array_equal(one.value, two.value)
    assert d.entropy(method="monte_carlo", samples=100, seed=0, rate=np.float32(2.0)).value.dtype == np.float32
    # more draws than one block: the blocks' means and variances merged
    big = d.entropy(method="monte_carlo", samples=200_000, seed=1, rate=3.0)
    small = d.entropy(method="monte_carlo", samples=20_000, seed=1, rate=3.0)
    assert big.standard_error < small.standard_error / 2.5


@pytest.mark.parametrize("call, message", [
    (lambda d: d.entropy(method="monte_carlo", samples=1, rate=2.0), "samples must be an integer ≥ 2"),
    (lambda d: d.entropy(method="monte_carlo", samples=10, seed=-1, rate=2.0), "seed must be"),
    (lambda d: d.entropy(method="exact", rate=2.0), "method is 'closed_form' or 'monte_carlo'"),
    (lambda d: d.entropy(method="monte_carlo", samples=10, rate=-2.0), "rate"),
    (lambda d: d.entropy(rate=2.0), r"has no closed-form entropy .*method='monte_carlo'"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(SymeligError, match=message) as caught:
        call(symelig.derive("poisson", "rate"))
    assert "\n" not in str(caught.value)


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


def test_cli_offers_and_runs_the_estimate(capsys):
    code, out, err = _run(capsys, "derive", "poisson", "--quantity", "entropy")
    assert code == 2 and err.count("\n") == 1
    assert "`symelig eval poisson --param rate --quantity entropy --samples N --rate V`" in err
    code, out, err = _run(capsys, "eval", "poisson", "--quantity", "entropy", "--samples", "50000", "--seed", "0", "--rate", "3.5")
    assert code == 0 and "H(p) ≈ " in out and " ± " in out and "50000 draws of p, seed 0" in out
    code, out, _ = _run(capsys, "eval", "laplace", "--quantity", "kl", "--samples", "50000", "--seed", "1", "-f", "json",
                        "--loc", "0", "--scale", "1", "--loc-q", "1", "--scale-q", "2")
    data = json.loads(out)
    textbook = np.log(2) + 0.5 + 0.5 * np.exp(-1) - 1  # KL(Laplace(0, 1) ‖ Laplace(1, 2))
    assert data["method"] == "monte_carlo" and abs(data["value"] - textbook) < 4 * data["standard_error"]
    code, out, _ = _run(capsys, "eval", "normal", "--quantity", "kl", "--loc", "0", "--scale", "1", "--loc-q", "1", "--scale-q", "2")
    assert code == 0 and "KL(p ‖ q)" in out and "∂KL(p ‖ q)/∂scale_q = 0.25" in out


@pytest.mark.parametrize("argv, message", [
    (("eval", "normal", "--seed", "3", "--loc", "0", "--scale", "1"), "--samples and --seed go with --quantity"),
    (("eval", "normal", "--quantity", "kl", "--loc", "0", "--scale", "1"), "missing --loc-q"),
    (("eval", "poisson", "--quantity", "entropy", "--seed", "1", "--rate", "2"), "--seed goes with --samples"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_normal_mixture_draws_have_the_mixture_mean_and_variance():
    """Gumbel-max picks component j with probability softmax(z)_j: the draws' mean is Σ π_j μ_j
    and their variance Σ π_j (σ_j² + μ_j²) − mean², within 4 standard errors."""
    from symelig.family import families

    logits, loc, scale = np.array([0.0, 1.0, -0.5]), np.array([-3.0, 3.0, 0.5]), np.array([1.0, 0.5, 2.0])
    x = families()["normal_mixture"].sample(np.random.default_rng(7), (200_000,), logits, loc, scale)
    weights = np.exp(logits) / np.exp(logits).sum()
    mean = weights @ loc
    variance = weights @ (scale**2 + loc**2) - mean**2
    assert abs(x.mean() - mean) < 4 * np.sqrt(variance / x.size)
    assert abs(x.var() - variance) < 4 * np.sqrt(np.mean((x - mean) ** 4) / x.size)
