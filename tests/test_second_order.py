"""Hessian, Fisher information and natural gradient of every catalog entry.

References computed here, independently of the engine's expectations: exact sums over finite
supports, truncated sums over counts, adaptive quadrature over continuous supports (the
entry's own log_prob kernel as the density), Monte Carlo for the Dirichlet."""
from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

import symelig
from symelig import constraints

from conftest import moderate_arguments, random_arguments


def _derivation(entry):
    return symelig.derive(entry.family, entry.param)


def _require_kernels(d):
    from symelig.emit.second_order import supported

    if not supported(d.second_order):
        pytest.skip(f"no second-order kernels for {d.family}'s {len(d.parameters)} vector parameters (math printed only)")


def _with_fisher(entry):
    d = _derivation(entry)
    if d.second_order.fisher is None:
        pytest.skip(f"no closed-form Fisher for {entry.family}: {d.second_order.no_closed_form}")
    return d


def _dense(d, value):
    """(..., P, P) or the (..., K, K) matrix of a structured block."""
    return d.second_order_kernels.dense(value) if isinstance(value, dict) else value


def _flat_eligibility(d, e):
    """Stack the eligibilities into (..., P) (or (..., K) for the one vector parameter)."""
    parts = [np.asarray(e[n]) for n in d.parameters]
    return parts[0] if parts[0].ndim and d.symbolic.is_vector and len(parts) == 1 else np.stack(np.broadcast_arrays(*parts), -1)


def _arguments(d, rng, size=4):
    args = moderate_arguments(d, rng, size=size)
    if "total_count" in args:
        args["total_count"] = np.asarray(5)
        if d.symbolic.family.value is constraints.counts:
            args["x"] = rng.multinomial(5, np.full(size, 1 / size))
        else:
            args["x"] = np.asarray(2)
    return args


def _all_counts(total, size):
    for cut in itertools.combinations(range(total + size - 1), size - 1):
        edges = (-1, *cut, total + size - 1)
        yield [edges[k + 1] - edges[k] - 1 for k in range(size)]


def _expect(d, args, function, rng):
    """E over x ~ p(x | θ) of function(x-array) -> (n, ...) values; exact, quadrature or MC."""
    from scipy import integrate

    value = d.symbolic.family.value
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    size = np.shape(args[d.parameters[0]])[-1] if d.symbolic.is_vector else None
    if value is constraints.open_simplex:  # Dirichlet: Monte Carlo from numpy's sampler
        alpha = _dirichlet_concentration(d.param, args[d.parameters[0]])
        x = rng.dirichlet(alpha, size=200000)
        values = function(x, {n: np.broadcast_to(v, (len(x),) + np.shape(v)) for n, v in params.items()})
        return values.mean(0), values.std(0) / np.sqrt(len(x))
    if value is constraints.real_vector:  # diagonal normal: Monte Carlo from numpy's sampler
        scale = {"scale": lambda v: v, "log_scale": np.exp, "softplus_scale": lambda v: np.logaddexp(0, v)}[d.param](args[d.parameters[1]])
        x = rng.normal(args["loc"], scale, size=(200000,) + np.shape(scale))
        values = function(x, {n: np.broadcast_to(v, (len(x),) + np.shape(v)) for n, v in params.items()})
        return values.mean(0), values.std(0) / np.sqrt(len(x))
    if value is constraints.category or value is constraints.binary:
        support = np.arange(2 if value is constraints.binary else size)
    elif value is constraints.counts:
        support = np.array(list(_all_counts(int(args["total_count"]), size)))
    elif value is constraints.multi_category:  # one category per block: every combination
        support = np.array(list(itertools.product(*(range(int(n)) for n in args["nvec"]))))
    elif value is constraints.up_to_total_count:
        support = np.arange(int(args["total_count"]) + 1)
    elif value is constraints.nonnegative_integer:
        support = np.arange(4000)
    else:
        def integrand(t, index):
            one = {n: np.asarray(v)[None] for n, v in params.items()}
            with np.errstate(all="ignore"):
                p = np.exp(d.kernels.log_prob(np.array([t]), **one))[0]
                return 0.0 if p == 0 else float(p * function(np.array([t]), one)[0][index])

        shape = np.shape(function(np.array([1.0 if value.lower < 1 < value.upper else 0.5]), {n: np.asarray(v)[None] for n, v in params.items()})[0])
        lower, upper = (float(b) for b in value.bounds(**params))
        if value is constraints.angle:
            lower, upper = float(args["loc"]) - np.pi, float(args["loc"]) + np.pi
        out = np.zeros(shape)
        for index in np.ndindex(shape):
            out[index] = integrate.quad(integrand, lower, upper, args=(index,), limit=400, epsabs=1e-12)[0]
        return out, np.zeros(shape)
    shared = {n for n, c in d.symbolic.family.arguments.items() if c.own_axis}  # nvec: one for the batch
    stacked = {n: v if n in shared else np.broadcast_to(v, (len(support),) + np.shape(v)) for n, v in params.items()}
    with np.errstate(all="ignore"):
        p = np.exp(d.kernels.log_prob(support, **stacked))
    values = function(support, stacked)
    p = p.reshape(p.shape + (1,) * (values.ndim - 1))
    return np.where(p > 0, p * np.where(p > 0, values, 0), 0).sum(0), np.zeros(values.shape[1:])


def _dirichlet_concentration(param, theta):
    return {"concentration": theta, "log_concentration": np.exp(theta),
            "softplus_concentration": np.logaddexp(0, theta), "natural": theta + 1}[param]


def _outer(d):
    def function(x, params):
        with np.errstate(all="ignore"):
            e = _flat_eligibility(d, d.kernels.eligibility(x, **params))
        return e[..., :, None] * e[..., None, :]

    return function


def _minus_hessian(d):
    def function(x, params):
        with np.errstate(all="ignore"):
            return -_dense(d, d.second_order_kernels.hessian(x, **params))

    return function


def _tangent(d, matrix):
    """For coordinates on the simplex, −E[H] and E[e eᵀ] agree on its tangent space only."""
    size = matrix.shape[-1]
    projection = np.eye(size) - 1.0 / size
    return projection @ matrix @ projection


def _mean_score(d):
    def function(x, params):
        with np.errstate(all="ignore"):
            return _flat_eligibility(d, d.kernels.eligibility(x, **params))

    return function


def test_fisher_is_the_expected_outer_product_and_minus_hessian(entry):
    """F = E[e eᵀ] everywhere (its definition), including free simplex coordinates where the
    score has a non-zero mean; F = −E[H] too wherever the score identity E[e] = 0 holds."""
    d = _with_fisher(entry)
    _require_kernels(d)
    rng = np.random.default_rng(5)
    args = _arguments(d, rng)
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    fisher = _dense(d, d.fisher(**params))
    outer, se = _expect(d, args, _outer(d), rng)
    if d.symbolic.family.value is constraints.open_simplex:  # Monte Carlo: within 6 standard errors
        assert np.all(np.abs(fisher - outer) < 6 * se + 1e-9), (fisher, outer, se)
    else:
        np.testing.assert_allclose(fisher, outer, rtol=1e-6, atol=1e-8)
    if "Dirac" in d.second_order.method:
        return  # the pointwise Hessian misses the delta at x = μ: F = E[e eᵀ] only
    minus_h, se = _expect(d, args, _minus_hessian(d), rng)
    if "mean" in d.second_order.method:
        fisher, minus_h = _tangent(d, fisher), _tangent(d, minus_h)
    np.testing.assert_allclose(fisher, minus_h, rtol=1e-6, atol=1e-8 + 6 * se.max())


def test_the_output_says_when_the_score_has_a_non_zero_mean(entry):
    """Where E[e] ≠ 0 (free simplex coordinates) the method names the mean and F = E[e eᵀ];
    elsewhere it does not claim one."""
    d = _with_fisher(entry)
    rng = np.random.default_rng(9)
    args = _arguments(d, rng)
    mean, se = _expect(d, args, _mean_score(d), rng)
    nonzero = np.any(np.abs(mean) > 1e-6 + 6 * se)
    method = d.second_order.method
    assert ("the score has mean" in method) == bool(nonzero), (mean, method)
    if nonzero:
        assert method.startswith("F = E[e eᵀ]")
        assert any("not the covariance" in a for a in d.second_order.assumptions)


def test_multinomial_free_probabilities_fisher_is_the_outer_product():
    """The reported case: π = [.5, .3, .2], n = 3: −E[H] = diag(6, 10, 15), E[e eᵀ] adds 6·𝟙𝟙ᵀ."""
    d = symelig.derive("multinomial", "normalized_probs")
    f = _dense(d, d.fisher(total_count=3, normalized_probs=np.array([0.5, 0.3, 0.2])))
    np.testing.assert_allclose(f, np.diag([6.0, 10.0, 15.0]) + 6.0)


@pytest.mark.parametrize("sampler", [random_arguments, moderate_arguments], ids=["random", "moderate"])
def test_fisher_is_symmetric_positive_semidefinite(entry, sampler):
    d = _with_fisher(entry)
    _require_kernels(d)
    rng = np.random.default_rng(6)
    args = sampler(d, rng, size=5) if sampler is moderate_arguments else sampler(d, rng, batch=(6,), size=5)
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    fisher = _dense(d, d.fisher(**params))  # symmetric by construction (the upper triangle is derived)
    eigenvalues = np.linalg.eigvalsh(fisher)
    scale = np.abs(fisher).max(axis=(-1, -2), keepdims=False)
    assert np.all(eigenvalues >= -1e-9 * scale[..., None]), eigenvalues


def test_natural_gradient_is_the_pseudo_inverse_applied_to_the_gradient(entry):
    d = _with_fisher(entry)
    _require_kernels(d)
    rng = np.random.default_rng(7)
    args = moderate_arguments(d, rng, size=5)
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    grad = {n: rng.normal(size=np.shape(args[n])) for n in d.parameters}
    v = d.natural_gradient(grad, **params)
    fisher = _dense(d, d.fisher(**params))
    g = _flat_eligibility(d, grad)
    expected = np.linalg.pinv(fisher, rcond=1e-10, hermitian=True) @ g
    np.testing.assert_allclose(_flat_eligibility(d, v), expected, rtol=1e-7, atol=1e-9)
    # the least-squares normal equations F(Fv − g) = 0 hold whether or not F is singular
    residual = fisher @ (fisher @ _flat_eligibility(d, v) - g)
    np.testing.assert_allclose(residual, 0, atol=1e-8 * max(1.0, np.abs(fisher).max() ** 2))


def test_hessian_matches_central_differences_of_the_eligibility(entry):
    d = _derivation(entry)
    _require_kernels(d)
    rng = np.random.default_rng(8)
    args = _arguments(d, rng, size=4)
    hessian = _dense(d, d.hessian(**args))
    h = 1e-6
    columns = []
    for name in d.parameters:
        value = np.asarray(args[name], dtype=float)
        for index in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[index] += h
            down[index] -= h
            e_up = _flat_eligibility(d, d.eligibility(**{**args, name: up}))
            e_down = _flat_eligibility(d, d.eligibility(**{**args, name: down}))
            columns.append((e_up - e_down) / (2 * h))
    numeric = np.stack(columns, -1)
    np.testing.assert_allclose(hessian, numeric, rtol=1e-5, atol=1e-6)


def test_structured_blocks_of_the_softmax_families():
    """The closed forms a paper states: F = diag(π) − ππᵀ for logits (times n for counts), its
    null space the all-ones vector; relative probs' null space is p itself."""
    rng = np.random.default_rng(9)
    z = rng.normal(size=(3, 6))
    pi = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    d = symelig.derive("categorical", "logits")
    f = d.fisher(logits=z)
    np.testing.assert_allclose(d.second_order_kernels.dense(f), pi[..., :, None] * np.eye(6) - pi[..., :, None] * pi[..., None, :], rtol=1e-12)
    assert str(d.second_order.null_space[("logits", "logits")]) == "1"
    m = symelig.derive("multinomial", "logits")
    np.testing.assert_allclose(m.second_order_kernels.dense(m.fisher(total_count=7, logits=z)), 7 * m.second_order_kernels.dense(f), rtol=1e-12)
    p = symelig.derive("categorical", "probs")
    assert str(p.second_order.null_space[("probs", "probs")]) == "p[j]"
    probs = rng.uniform(0.5, 2, size=6)
    np.testing.assert_allclose(p.second_order_kernels.dense(p.fisher(probs=probs)) @ probs, 0, atol=1e-12)


def test_known_closed_forms_of_continuous_families():
    """Oracles typed in from the literature (Lange et al. 1989 for Student's t)."""
    from scipy.special import polygamma

    nu, sigma = 3.7, 1.3
    f = symelig.derive("student_t", "scale").fisher(df=nu, loc=0.2, scale=sigma)
    np.testing.assert_allclose(f[1, 1], (nu + 1) / ((nu + 3) * sigma**2), rtol=1e-12)
    np.testing.assert_allclose(f[2, 2], 2 * nu / ((nu + 3) * sigma**2), rtol=1e-12)
    np.testing.assert_allclose(f[0, 2], -2 / (sigma * (nu + 1) * (nu + 3)), rtol=1e-12)
    nu_nu = (polygamma(1, nu / 2) - polygamma(1, (nu + 1) / 2)) / 4 - (nu + 5) / (2 * nu * (nu + 1) * (nu + 3))
    np.testing.assert_allclose(f[0, 0], nu_nu, rtol=1e-10)
    g = symelig.derive("gumbel", "scale").fisher(loc=0.0, scale=2.0)
    np.testing.assert_allclose(g, np.array([[1, np.euler_gamma - 1], [np.euler_gamma - 1, (1 - np.euler_gamma) ** 2 + np.pi**2 / 6]]) / 4, rtol=1e-12)


def test_softplus_and_large_concentration_fisher_stay_finite():
    # raw = −1e4: σ = softplus(raw) underflows, so F_μμ = 1/σ² is a true overflow; F_rr = 2·(sigmoid/softplus)² is not
    f = symelig.derive("normal", "softplus_scale").fisher(loc=0.0, raw_scale=np.array([-1e4, -700.0]), validate=False)
    np.testing.assert_allclose(f[:, 1, 1], 2.0, rtol=1e-12)
    for family, param, args in [
        ("normal", "softplus_scale", {"loc": 0.0, "raw_scale": np.array([-50.0, 0.0, 50.0])}),
        ("gamma", "softplus_concentration_rate", {"raw_concentration": np.array([-30.0, 0.0, 30.0]), "raw_rate": np.array([-30.0, 0.0, 30.0])}),
        ("von_mises", "concentration", {"loc": 0.0, "concentration": np.array([1e-6, 1.0, 1e3])}),
        ("categorical", "logits", {"logits": np.array([[1e4, -1e4, 0.0]])}),
    ]:
        f = symelig.derive(family, param).fisher(**args)
        values = f["diagonal"] if isinstance(f, dict) else f
        assert np.all(np.isfinite(values)), (family, param, values)


def test_float32_in_float32_out():
    d = symelig.derive("categorical", "logits")
    f = d.fisher(logits=np.zeros((2, 3), np.float32))
    assert f["diagonal"].dtype == np.float32 and f["scale"].dtype == np.float32
    n = symelig.derive("normal", "scale")
    assert n.fisher(loc=np.float32(0), scale=np.ones(3, np.float32)).dtype == np.float32


def test_bad_input_is_one_line_error():
    d = symelig.derive("categorical", "logits")
    with pytest.raises(symelig.SymeligError, match="grad must be a dict"):
        d.natural_gradient([1.0, 2.0], logits=np.zeros(2))
    with pytest.raises(symelig.SymeligError, match="unknown argument"):
        d.fisher(probs=np.ones(3))
    with pytest.raises(symelig.SymeligError, match="category axis"):
        d.natural_gradient({"logits": np.ones(4)}, logits=np.zeros(3))
    with pytest.raises(symelig.SymeligError, match="do not broadcast"):
        symelig.derive("normal").natural_gradient({"loc": np.ones(4), "scale": np.ones(3)}, loc=0.0, scale=1.0)
    assert d.natural_gradient({"logits": np.ones((5, 3))}, logits=np.zeros(3))["logits"].shape == (5, 3)
    with pytest.raises(symelig.SymeligError, match="no closed-form Fisher"):
        symelig.derive("lab_logistic", "scale").fisher(loc=0.0, scale=1.0)


@pytest.mark.parametrize("fmt", ["text", "latex", "json", "numpy", "markdown"])
def test_cli_order_two_in_every_format(fmt):
    out = subprocess.run(
        [sys.executable, "-m", "symelig", "derive", "student_t", "--param", "scale", "--order", "2", "--format", fmt],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    marker = {"text": "Fisher information", "latex": "F_{", "json": '"fisher"', "numpy": "def natural_gradient", "markdown": "Fisher information"}[fmt]
    assert marker in out.stdout
    bad = subprocess.run([sys.executable, "-m", "symelig", "derive", "normal", "--order", "3"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--order" in bad.stderr


def test_user_reparametrizations_singular_and_mixed():
    """loc = a·b makes F singular (a and b trade off): the natural gradient is pinv(F)·g; a mix
    of a vector and a scalar parameter has its formulas printed and a clear error for kernels."""
    d = symelig.reparametrize("normal", "loc = a * b", ["a", "b"])
    args = {"a": 1.0, "b": 2.0, "scale": 1.5}
    grad = {"scale": 0.3, "a": 1.0, "b": -0.4}
    fisher = d.fisher(**args)
    order = list(d.parameters)
    g = np.array([grad[n] for n in order])
    v = d.natural_gradient(grad, **args)
    np.testing.assert_allclose([v[n] for n in order], np.linalg.pinv(fisher) @ g, rtol=1e-10)
    mixed = symelig.reparametrize("categorical", "logits = z / tau", ["z", "tau"], positive=["tau"])
    assert mixed.second_order.fisher is not None
    with pytest.raises(symelig.SymeligError, match="one vector parameter"):
        mixed.fisher(z=np.zeros(3), tau=1.0)


def test_declared_moments_are_used_only_where_f_is_affine_in_them():
    from sympy import Symbol, exp, sqrt

    from symelig.expectation import _affine

    x, lam = Symbol("x", positive=True), Symbol("lam", positive=True)
    assert _affine(2 * x + 1, x, {x: 1 / lam}) == 1 + 2 / lam
    for f in (1 / x, sqrt(x), exp(x), x**2):
        assert _affine(f, x, {x: 1 / lam}) is None, f


def test_degenerate_fisher_gives_the_pseudo_inverse_not_nan():
    """A softmax that underflows to 0 and a count total of 0 make rows of F zero: F⁺ is still
    defined, and the natural gradient equals pinv(F)·g there."""
    c = symelig.derive("categorical", "logits")
    z = np.array([0.0, -800.0, 1.0])
    g = np.array([1.0, 2.0, 3.0])
    expected = np.linalg.pinv(c.second_order_kernels.dense(c.fisher(logits=z))) @ g
    np.testing.assert_allclose(c.natural_gradient({"logits": g}, logits=z)["logits"], expected, rtol=1e-10, atol=1e-12)
    m = symelig.derive("multinomial", "probs")
    assert np.all(m.natural_gradient({"probs": g}, total_count=0, probs=g)["probs"] == 0)
    assert symelig.derive("binomial", "probs").natural_gradient({"probs": 1.0}, total_count=0, probs=0.3)["probs"] == 0


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_second_order_on_tensors_matches_numpy(entry, library):
    """hessian, fisher and natural_gradient on torch tensors and JAX arrays: the library's
    arrays out, equal to the numpy kernels."""
    lib = pytest.importorskip(library)
    d = _with_fisher(entry)
    _require_kernels(d)
    if library == "jax":
        lib.config.update("jax_enable_x64", True)
        convert = lib.numpy.asarray
    else:
        convert = lib.as_tensor
    rng = np.random.default_rng(10)
    args = _arguments(d, rng)
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    grad = {n: rng.normal(size=np.shape(args[n])) for n in d.parameters}
    tensors = {n: convert(np.asarray(v)) for n, v in args.items()}
    theirs = {
        "hessian": d.hessian(**tensors),
        "fisher": d.fisher(**{n: tensors[n] for n in params}),
        "natural_gradient": d.natural_gradient({n: convert(g) for n, g in grad.items()}, **{n: tensors[n] for n in params}),
    }
    ours = {"hessian": d.hessian(**args), "fisher": d.fisher(**params), "natural_gradient": d.natural_gradient(grad, **params)}
    rtol = 1e-5 if entry.family in ("student_t", "dirichlet", "beta", "gamma", "von_mises") else 1e-9
    for kind in ours:
        mine, other = ours[kind], theirs[kind]
        for key in (mine if isinstance(mine, dict) else [None]):
            a, b = (mine[key], other[key]) if key is not None else (mine, other)
            assert type(b).__module__.split(".")[0] in (library, "jaxlib"), (kind, type(b))
            np.testing.assert_allclose(np.asarray(b), a, rtol=rtol, atol=1e-7, err_msg=f"{kind} {key}")


def test_natural_gradient_follows_the_gradients_library():
    """A torch gradient (even one autograd records) beside plain-number parameters comes back
    as a torch tensor, in its dtype."""
    torch = pytest.importorskip("torch")
    d = symelig.derive("normal", "scale")
    grad = {"loc": torch.ones(5, requires_grad=True, dtype=torch.float64), "scale": torch.ones(5, dtype=torch.float64)}
    v = d.natural_gradient(grad, loc=0.0, scale=2.0)
    assert isinstance(v["loc"], torch.Tensor) and v["loc"].dtype == torch.float64
    np.testing.assert_allclose(v["loc"].detach().numpy(), 4.0)
    np.testing.assert_allclose(v["scale"].detach().numpy(), 2.0)


# Free simplex coordinates written by the user (--via into normalized_probs): the score has a
# non-zero mean, so F = E[e eᵀ] must be taken as it is defined, and checked here against the
# exact E[e eᵀ] (enumeration of every outcome at π = [.5, .3, .2], n = 3) of the entry's own
# eligibility kernel.  w is the value of the new parameter that puts π on the simplex.
_PI = np.array([0.5, 0.3, 0.2])
FREE_SIMPLEX_VIAS = [
    ("normalized_probs = w", ["w"], lambda p: p),
    ("normalized_probs = w**2", ["w"], np.sqrt),
    ("normalized_probs = exp(w)", [], np.log),        # log p linear in w: the Hessian block is 0
    ("normalized_probs = 1/w", ["w"], lambda p: 1 / p),
    ("normalized_probs = w/(1 + w)", ["w"], lambda p: p / (1 - p)),  # e_j a sum: products of sums
]


def _outcomes(family):
    """[(x, probability)] of every outcome under _PI (n = 3 draws for the multinomial)."""
    if family == "categorical":
        return [(np.asarray(k), _PI[k]) for k in range(3)]
    from math import factorial

    return [(np.asarray(x), factorial(3) / np.prod([factorial(c) for c in x]) * np.prod(_PI**np.asarray(x)))
            for x in _all_counts(3, 3)]


@pytest.mark.parametrize("family", ["categorical", "multinomial"])
@pytest.mark.parametrize("via, positive, to_w", FREE_SIMPLEX_VIAS, ids=[v for v, _, _ in FREE_SIMPLEX_VIAS])
def test_free_simplex_vias_fisher_is_the_exact_outer_product(family, via, positive, to_w):
    d = symelig.reparametrize(family, via, wrt=["w"], positive=positive)
    extra = {"total_count": 3} if family == "multinomial" else {}
    w = to_w(_PI)
    fisher = _dense(d, d.fisher(w=w, **extra))
    scores = [(np.asarray(d.eligibility(x, w=w, **extra)["w"]), p) for x, p in _outcomes(family)]
    exact = sum(p * np.outer(e, e) for e, p in scores)
    mean = sum(p * e for e, p in scores)
    np.testing.assert_allclose(fisher, exact, rtol=1e-9, atol=1e-12)
    assert np.abs(mean).max() > 1e-3  # these are the coordinates where E[e] ≠ 0 ...
    method = d.second_order.method
    assert method.startswith("F = E[e eᵀ]") and "the score has mean" in method, method  # ... and the output says so
    hessian = _dense(d, d.hessian(_outcomes(family)[0][0], w=w, **extra))
    assert hessian.shape == fisher.shape


def test_an_x_free_score_with_a_non_zero_mean_is_not_called_minus_h():
    """multinomial with π_i = e^τ for every i: e = n, H = 0, F = E[e²] = n², and the method
    said "H does not depend on x, so F = −H" (which is 0)."""
    d = symelig.reparametrize("multinomial", "normalized_probs = exp(tau)", wrt=["tau"], vector=[])
    so = d.second_order
    n = d.symbolic.symbols["total_count"]
    assert so.fisher[("tau", "tau")] == n**2
    assert so.hessian[("tau", "tau")] == 0
    assert "F = −H" not in so.method and "F = e eᵀ" in so.method, so.method


def test_free_simplex_coordinates_with_an_unknown_mean_do_not_use_minus_expected_hessian():
    """Where E[e] has no closed form on free simplex coordinates, E[e] = 0 cannot be assumed,
    so F is not taken as −E[H] (which equals E[e eᵀ] only when it holds)."""
    d = symelig.reparametrize("multinomial", "normalized_probs = tau", wrt=["tau"], positive=["tau"], vector=[])
    so = d.second_order
    assert so.method.startswith("F = E[e eᵀ]") and "−E[H] is not used" in so.method, so.method
