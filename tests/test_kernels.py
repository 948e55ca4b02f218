"""Generated numpy kernels: right math (finite differences, symbolic evaluation, score
identity), vectorized, stable at extreme inputs, dtype-preserving, broadcasting."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from sympy import Float, IndexedBase, Symbol, erf, lambdify

import symelig
from symelig import constraints
from symelig.family import K, j, n_blocks, n_placed

from conftest import moderate_arguments, random_arguments


def _perturbed_log_prob(d, args, name, index, h):
    moved = dict(args)
    value = np.array(args[name], dtype=np.float64, copy=True)
    value[index] += h
    moved[name] = value
    return d.kernels.log_prob(**moved)


def test_eligibility_matches_central_differences(entry):
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(0)
    args = random_arguments(d, rng, batch=(3,), size=4)
    e = d.eligibility(**args)
    for name in d.parameters:
        value = np.asarray(args[name], dtype=np.float64)
        numeric = np.empty_like(value)
        noise = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            h = 1e-5 * abs(value[index]) or 1e-6  # relative step: components may be tiny
            up = _perturbed_log_prob(d, args, name, index, h)
            down = _perturbed_log_prob(d, args, name, index, -h)
            batch_index = index[:-1] if d.symbolic.parametrization.parameters[name].event_dim else index
            numeric[index] = ((up - down) / (2 * h))[batch_index]
            # log p summed over a vector (diag_normal) carries the other components' rounding
            noise[index] = 8 * np.finfo(float).eps * np.max(np.abs([up, down]), axis=0)[batch_index] / h
        np.testing.assert_allclose(e[name], numeric, rtol=1e-5, atol=1e-6 + np.max(noise), err_msg=name)


def _symbolic_value(expr, d, args, row, component, size):
    """Evaluate the symbolic eligibility of one batch row and component with SymPy."""
    s = d.symbolic.symbols
    family = d.symbolic.family
    constraint_of = d.symbolic.constraints
    values = {K: size, j: component}
    if family.value.own_axis:  # an ordering's k steps, or a multi-discrete action's B blocks: x's length
        values[n_placed] = values[n_blocks] = np.shape(args["x"])[-1]
    expr = expr.subs(values).doit()
    indices = {}  # an ordering, block sizes: they index z, so they go in first
    for name, symbol in s.items():
        if name in args and constraint_of[name].own_axis:
            a = np.asarray(args[name]) if name != "x" else np.asarray(args[name])[row]  # nvec: one for the batch
            indices.update({symbol[m]: int(a[m]) for m in range(a.shape[-1])})
    for _ in range(3 if indices else 0):  # a block's start Σ_{c<b} n_c shows n_c only once written out
        expr = expr.subs(indices).doit()
    # Φ(β) − Φ(α) in a tail (erf(46) − erf(25) = 8e-274) is what the kernels' stable forms avoid,
    # and the reference must not lose it either: there the values are 600-digit numbers
    digits = 600 if expr.has(erf) else 15
    substitutions = {}
    for name, symbol in s.items():
        if name not in args or constraint_of[name].own_axis:  # canonical parameters are written in terms of the given ones
            continue
        a = np.asarray(args[name])[row]
        if isinstance(symbol, IndexedBase):
            substitutions.update({symbol[m]: Float(float(a[m]), digits) for m in range(a.shape[-1])})
        else:
            substitutions[symbol] = int(a) if constraint_of[name].integer else Float(float(a), digits)
    expr = expr.subs({s["x"]: substitutions.pop(s["x"])}) if s["x"] in substitutions else expr
    return float(expr.doit().subs(substitutions).evalf(digits))


def test_symbolic_expression_matches_kernel(entry):
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(1)
    size = 3
    args = random_arguments(d, rng, batch=(2,), size=size)
    e = d.eligibility(**args)
    lp = d.log_prob(**args)
    for row in range(2):
        assert _symbolic_value(d.symbolic.log_prob, d, args, row, 0, size) == pytest.approx(lp[row], rel=1e-10)
        for name, expr in d.symbolic.eligibility.items():
            vector = e[name].ndim > 1
            for m in range(size if vector else 1):
                expected = _symbolic_value(expr, d, args, row, m, size)
                got = e[name][row, m] if vector else e[name][row]
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, m)


def _all_counts(total, size):
    for cut in itertools.combinations(range(total + size - 1), size - 1):
        edges = (-1, *cut, total + size - 1)
        yield [edges[k + 1] - edges[k] - 1 for k in range(size)]


def _expectation_of_eligibility(d, args):
    """Σ_x p(x|θ) e(x) over the support: exact for finite supports, a sum truncated where the
    tail is below 1e-16 for counts, adaptive quadrature for continuous ones; None for vectors
    on a continuous support (the Monte Carlo test covers those)."""
    from scipy import integrate

    value = d.symbolic.family.value
    params = {n: args[n] for n in (*d.arguments, *d.parameters)}
    if value is constraints.category or value is constraints.binary:
        support = np.arange(2 if value is constraints.binary else np.shape(args[d.parameters[0]])[-1])
    elif value is constraints.counts:
        support = np.array(list(_all_counts(int(args["total_count"]), np.shape(args[d.parameters[0]])[-1])))
    elif value is constraints.ordering:  # every full permutation of the K categories
        support = np.array(list(itertools.permutations(range(np.shape(args[d.parameters[0]])[-1]))))
    elif value is constraints.multi_category:  # one category per block: every combination
        support = np.array(list(itertools.product(*(range(int(n)) for n in args["nvec"]))))
    elif value is constraints.up_to_total_count:
        support = np.arange(int(args["total_count"]) + 1)
    elif value is constraints.nonnegative_integer:
        support = np.arange(4000)
    elif value.event_dim:
        return None
    else:
        def integrand(t, name, which):
            one = {n: np.asarray(v)[None] for n, v in params.items()}
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                p = np.exp(d.kernels.log_prob(np.array([t]), **one))[0]
                # a real x with vector parameters (a mixture's components): one integral per component
                return 0.0 if p == 0 else float(p * np.ravel(d.kernels.eligibility(np.array([t]), **one)[name][0])[which])

        lower, upper = (float(b) for b in value.bounds(**params))
        return {n: np.array([integrate.quad(integrand, lower, upper, args=(n, c), limit=400, epsabs=1e-11)[0]
                             for c in range(np.size(args[n]))]).reshape(np.shape(args[n])) for n in d.parameters}
    shared = {n for n, c in d.symbolic.family.arguments.items() if c.own_axis}  # nvec: one for the batch
    stacked = {n: v if n in shared else np.broadcast_to(v, (len(support),) + np.shape(v)) for n, v in params.items()}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.exp(d.kernels.log_prob(support, **stacked))
        e = d.kernels.eligibility(support, **stacked)
    assert p.sum() == pytest.approx(1.0, rel=1e-10)
    return {n: np.nansum(p.reshape(p.shape + (1,) * (v.ndim - 1)) * np.where(p.reshape(p.shape + (1,) * (v.ndim - 1)) > 0, v, 0), axis=0) for n, v in e.items()}


def test_score_identity(entry):
    """E[e] = 0 over the whole support (the score identity).

    For coordinates constrained to the simplex the identity holds on its tangent space only
    (log p is not normalized off the simplex): there E[e] is a multiple of the all-ones vector.
    """
    d = symelig.derive(entry.family, entry.param)
    args = moderate_arguments(d, np.random.default_rng(2))
    if "total_count" in args:
        args["total_count"] = np.asarray(5)
    expectation = _expectation_of_eligibility(d, args)
    if expectation is None:
        pytest.skip("vector on a continuous support: covered by the Monte Carlo test")
    for name, value in expectation.items():
        value = np.asarray(value, dtype=float)
        if d.symbolic.parametrization.parameters[name] is constraints.simplex:
            value = value - value.mean()
        np.testing.assert_allclose(value, 0.0, atol=1e-7, err_msg=name)


def test_score_identity_monte_carlo():
    """Counts, Dirichlet and diagonal normal draws: the sample mean of e is within 5 standard errors of 0."""
    rng = np.random.default_rng(3)
    for param in ("probs", "logits", "normalized_probs"):
        d = symelig.derive("multinomial", param)
        z = rng.normal(size=5)
        probs = np.exp(z) / np.exp(z).sum()
        x = rng.multinomial(20, probs, size=20000)
        theta = {"probs": rng.uniform(0.5, 2.0) * probs, "logits": z + 3.0, "normalized_probs": probs}[param]
        e = d.eligibility(x, total_count=20, **{param: theta})[param]
        if param == "normalized_probs":  # E[e] = n·𝟙 off the simplex; zero on its tangent space
            e = e - e.mean(-1, keepdims=True)
        mean, se = e.mean(0), e.std(0) / np.sqrt(len(e))
        assert np.all(np.abs(mean) < 5 * se + 1e-12), (param, mean, se)
    for entry in [e for e in symelig.catalog() if e.family == "dirichlet"]:
        d = symelig.derive(entry.family, entry.param)
        args = moderate_arguments(d, rng)
        theta = {n: args[n] for n in d.parameters}
        x = rng.dirichlet(_dirichlet_concentration(entry.param, args[d.parameters[0]]), size=20000)
        e = d.eligibility(x, **{n: np.broadcast_to(v, (len(x),) + v.shape) for n, v in theta.items()})[d.parameters[0]]
        mean, se = e.mean(0), e.std(0) / np.sqrt(len(e))
        assert np.all(np.abs(mean) < 5 * se + 1e-12), (entry.param, mean, se)
    for entry in [e for e in symelig.catalog() if e.family == "diag_normal"]:
        d = symelig.derive(entry.family, entry.param)
        args = moderate_arguments(d, rng)
        scale = {"scale": lambda v: v, "log_scale": np.exp, "softplus_scale": lambda v: np.logaddexp(0, v)}[entry.param](args[d.parameters[1]])
        x = rng.normal(args["loc"], scale, size=(20000,) + scale.shape)
        e = d.eligibility(x, **{n: np.broadcast_to(args[n], x.shape) for n in d.parameters})
        for name, value in e.items():
            mean, se = value.mean(0), value.std(0) / np.sqrt(len(value))
            assert np.all(np.abs(mean) < 5 * se + 1e-12), (entry.param, name, mean, se)


def _dirichlet_concentration(param, theta):
    """α from the Dirichlet parametrization's parameter (the test's own oracle of each map)."""
    return {"concentration": theta, "log_concentration": np.exp(theta),
            "softplus_concentration": np.logaddexp(0, theta), "natural": theta + 1}[param]


def test_float32_in_float32_out(entry):
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(4), dtype=np.float32)
    assert d.log_prob(**args).dtype == np.float32
    for name, e in d.eligibility(**args).items():
        assert e.dtype == np.float32, name


def test_batch_axes_broadcast(entry):
    """Parameters (2, 1, K) against samples of batch (3,) give eligibilities (2, 3, K)."""
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(5)
    args = random_arguments(d, rng, batch=(3,), size=4)
    one = random_arguments(d, rng, batch=(2, 1), size=4)
    mixed = {"x": args["x"], **{n: one[n] for n in d.parameters}}
    mixed.update({n: args[n] for n in d.arguments})
    e = d.eligibility(**mixed)
    for name in d.parameters:
        event = (4,) if d.symbolic.parametrization.parameters[name].event_dim else ()
        assert e[name].shape == (2, 3) + event
        for a, b in itertools.product(range(2), range(3)):
            shared = {n for n, c in d.symbolic.family.arguments.items() if c.own_axis}  # nvec: one for the batch
            row = {"x": args["x"][b], **{n: one[n][a, 0] for n in d.parameters},
                   **{n: args[n] if n in shared else args[n][b] for n in d.arguments}}
            np.testing.assert_allclose(e[name][a, b], d.eligibility(**row)[name], rtol=1e-12)
    assert d.log_prob(**mixed).shape == (2, 3)


def test_generated_source_has_no_python_loop(entry):
    source = symelig.derive(entry.family, entry.param).full_numpy_source  # second-order functions too
    code = [line for line in source.splitlines() if line.startswith("    ") and not line.strip().startswith(("#", '"'))]
    assert not any(line.lstrip().startswith(("for ", "while ")) or " for " in line for line in code)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_extreme_values_stay_finite(dtype):
    z = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4]], dtype)
    cat = symelig.derive("categorical", "logits")
    e = cat.eligibility([1, 2], logits=z)["logits"]
    assert e.dtype == dtype and np.all(np.isfinite(e))
    np.testing.assert_allclose(e[0], [-0.5, 1.0, 0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(e[1], [-0.25, -0.25, 0.75, -0.25], atol=1e-6)
    assert np.all(np.isfinite(cat.log_prob([1, 2], logits=z)))
    multi = symelig.derive("multinomial", "logits")
    counts = np.array([[0, 2, 1, 0], [1, 1, 1, 0]])
    e = multi.eligibility(counts, total_count=3, logits=z)["logits"]
    assert e.dtype == dtype and np.all(np.isfinite(e))
    assert np.all(np.isfinite(multi.log_prob(counts, total_count=3, logits=z)))


def test_zero_probability_in_unsampled_categories():
    cat = symelig.derive("categorical", "probs")
    e = cat.eligibility([0, 2], probs=[[0.5, 0.0, 0.5], [0.0, 0.0, 2.0]])["probs"]
    np.testing.assert_allclose(e, [[1.0, -1.0, -1.0], [-0.5, -0.5, 0.0]])
    multi = symelig.derive("multinomial", "probs")
    e = multi.eligibility([2, 0, 1], total_count=3, probs=[0.5, 0.0, 0.5])["probs"]
    np.testing.assert_allclose(e, [1.0, -3.0, -1.0])
    assert np.isfinite(multi.log_prob([2, 0, 1], total_count=3, probs=[0.5, 0.0, 0.5]))


def test_large_total_count_log_factorial_does_not_overflow():
    multi = symelig.derive("multinomial", "probs")
    lp = multi.log_prob([600, 400], total_count=1000, probs=[0.6, 0.4])
    from scipy.stats import multinomial

    expected = multinomial.logpmf([600, 400], 1000, [0.6, 0.4])
    assert lp == pytest.approx(expected, rel=1e-12)


def test_von_mises_matches_scipy_including_large_concentration():
    """log I0 and I1/I0 via exponentially scaled Bessel functions: no overflow at κ = 1e4."""
    from scipy.stats import vonmises

    d = symelig.derive("von_mises", "concentration")
    kappa = np.array([0.5, 20.0, 1e4])
    x = np.array([0.3, -2.0, 0.01])
    np.testing.assert_allclose(d.log_prob(x, loc=0.1, concentration=kappa), vonmises.logpdf(x, kappa, loc=0.1), rtol=1e-12)
    e = d.eligibility(x, loc=0.1, concentration=kappa)["concentration"]
    assert np.all(np.isfinite(e))


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_kernels_never_write_into_their_inputs(entry, batch):
    """The generated code recycles its own buffers with out=; a read-only input proves it never
    recycles the caller's arrays (numpy raises on a write), whatever the batch shape."""
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(7), batch=batch, size=4)
    frozen = {n: np.array(v) for n, v in args.items()}
    for v in frozen.values():
        v.flags.writeable = False
    e = d.kernels.eligibility(**frozen)
    d.kernels.log_prob(**frozen)
    for n, v in args.items():
        np.testing.assert_array_equal(frozen[n], v)
    for name, value in e.items():  # outputs are the caller's own, writable arrays
        assert isinstance(value, np.ndarray) and value.flags.writeable, name
        assert not any(np.shares_memory(value, v) for v in frozen.values()), name


def test_shared_parameters_broadcast_into_new_buffers():
    """A (K,) parameter shared by a batch of samples: in-place writes must not assume that the
    buffer already has the output's shape."""
    d = symelig.derive("multinomial", "logits")
    z = np.array([0.1, -0.3, 2.0])
    x = np.array([[1, 0, 2], [0, 3, 0]])
    e = d.eligibility(x, total_count=[3, 3], logits=z)["logits"]
    softmax = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(e, x - 3 * softmax, rtol=1e-13)
    d = symelig.derive("normal", "scale")
    e = d.eligibility(np.array([0.5, 1.0, -1.0]), loc=0.25, scale=2.0)
    np.testing.assert_allclose(e["scale"], ((np.array([0.5, 1.0, -1.0]) - 0.25) ** 2 - 4) / 8, rtol=1e-13)


@pytest.mark.parametrize("dtype,raw", [(np.float32, -120.0), (np.float64, -800.0), (np.float64, -1e4)])
def test_softplus_parametrizations_survive_underflow(dtype, raw):
    """softplus(r) underflows to 0 for very negative raw outputs, but log softplus(r) = r and
    sigmoid(r)/softplus(r) = 1 there: rates and concentrations stay finite, nothing is 'probability 0'."""
    r = np.array([raw], dtype)
    poisson = symelig.derive("poisson", "softplus_rate")
    assert poisson.eligibility(np.array([3]), raw_rate=r)["raw_rate"] == pytest.approx(3.0)
    assert poisson.log_prob(np.array([3]), raw_rate=r) == pytest.approx(3 * raw - np.log(6), rel=1e-6)
    exponential = symelig.derive("exponential", "softplus_rate")
    e = exponential.eligibility(np.array([2.0], dtype), raw_rate=r)["raw_rate"]
    assert e.dtype == dtype and e == pytest.approx(1.0)
    gamma = symelig.derive("gamma", "softplus_concentration_rate")
    e = gamma.eligibility(np.array([2.0], dtype), raw_concentration=np.array([0.5], dtype), raw_rate=r)
    assert np.isfinite(e["raw_rate"]) and e["raw_rate"] == pytest.approx(float(np.logaddexp(0, 0.5)), rel=1e-5)


def test_array_exponents_broadcast_into_larger_batches():
    """x^k with k an array of another batch shape must not be written into x's buffer."""
    d = symelig.derive("weibull", "scale_concentration")
    x, scale, k = np.array([1.0, 2, 3]), np.array([1.0, 2, 3]), np.array([[1.5], [2.0]])
    e = d.eligibility(x, scale=scale, concentration=k)
    expected = d.eligibility(np.broadcast_to(x, (2, 3)), scale=np.broadcast_to(scale, (2, 3)),
                             concentration=np.broadcast_to(k, (2, 3)))
    for name in e:
        np.testing.assert_allclose(e[name], expected[name], rtol=1e-13)


def test_rewrites_for_speed_keep_accuracy():
    """Speed rewrites of the generator must not cost digits: the Poisson's (x − λ)/λ keeps its
    exact subtraction (x/λ − 1 would lose it when x ≈ λ), and a row sum over a broadcast or
    strided parameter keeps np.sum's pairwise accuracy (numpy's own matmul adds one by one)."""
    e = symelig.derive("poisson", "rate").eligibility(np.float32([20001]), rate=np.float32([20000]))["rate"]
    np.testing.assert_allclose(e, 5e-5, rtol=1e-6)
    size = 2 * 10**6
    probs = np.broadcast_to(np.float32(1 / size), (size,))
    e = symelig.derive("categorical", "probs").eligibility(0, probs=probs)["probs"]
    np.testing.assert_allclose(e[1:5], -1.0, rtol=1e-5)
    p = np.random.default_rng(0).random((4, 2 * 10**5)).astype(np.float32)[:, ::2]
    e = symelig.derive("categorical", "probs").eligibility(np.zeros(4, int), probs=p)["probs"]
    np.testing.assert_allclose(e[:, 1], -1 / p.astype(np.float64).sum(-1), rtol=1e-6)
