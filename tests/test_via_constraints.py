"""A --via right side must satisfy the left side's declared constraint at the caller's values.

``categorical --via "normalized_probs = w"`` at w = [1, 1, 1] gave log p = 0 for every category
and F = diag(1, 1, 1) with exit 0; ``normal --via "scale = a - b"`` at a = 1, b = 2 ran the
kernels at scale = −1.  The catalog entry checks its parameter; a --via derivation checks its
right side, evaluated at the given values, against the left side's constraint, in every API
entry point (log_prob, eligibility, hessian, fisher, natural_gradient), in symelig.dask and in
``explain`` with values.  The class is tested over every constrained parameter of the catalog,
with a violating --via made automatically (``lhs = qa - qb``, or ``lhs = qw`` for a vector).
"""
from __future__ import annotations

import functools
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import symelig
from symelig import constraints
from symelig.errors import SymeligError
from symelig.family import families

K = 3
# constrained parameters whose generic --via the kernel generator cannot vectorize (derivation
# refused in one line, so there is nothing to call)
UNDERIVABLE = {("categorical", "probs"), ("masked_categorical", "probs")}


def _constrained():
    cases = {}
    for family, cls in families().items():
        for parametrization in cls.parametrizations().values():
            for name, c in parametrization.parameters.items():
                bounded = c.lower > -np.inf or c.upper < np.inf
                if (bounded or c.event_dim and c.name != "real_vector") and (family, name) not in cases:
                    cases[(family, name)] = c
    return cases


CASES = _constrained()


def test_the_catalog_cases_are_all_there():
    """Every bounded or summed parameter of the catalog is a case (a new family joins by itself)."""
    assert len(CASES) >= 37
    kinds = {c.name for c in CASES.values()}
    assert {"positive", "unit_interval", "negative", "above_minus_one", "simplex", "nonnegative_vector",
            "positive_vector", "above_minus_one_vector"} <= kinds


@functools.lru_cache(maxsize=None)
def _via(family: str, lhs: str):
    c = CASES[(family, lhs)]
    if c.event_dim:
        return symelig.reparametrize(family, f"{lhs} = qw", wrt=["qw"])
    return symelig.reparametrize(family, f"{lhs} = qa - qb", wrt=["qa", "qb"])


def _violations(c) -> list:
    """Values of the left side outside its constraint: past each finite bound (and on an open
    bound), off the simplex, all-zero weights."""
    if not c.event_dim:
        out = []
        if c.lower > -np.inf:
            out += [c.lower - 1.0] + ([c.lower] if c.lower_open else [])
        if c.upper < np.inf:
            out += [c.upper + 0.5] + ([c.upper] if c.upper_open else [])
        return out
    out = []
    if c.lower > -np.inf:
        out.append([1.5, c.lower - 0.5, 0.5] if c.name != "simplex" else [1.25, -0.25, 0.0])
    if c.name == "simplex":
        out += [[1.0, 1.0, 1.0], [0.2, 0.2, 0.2]]
    if c.name == "nonnegative_vector":
        out.append([0.0, 0.0, 0.0])
    return out


def _valid(c):
    if c.event_dim:
        return {"simplex": [0.2, 0.3, 0.5], "above_minus_one_vector": [-0.5, 0.5, 2.0]}.get(c.name, [0.5, 1.5, 2.5])
    if c.lower > -np.inf and c.upper < np.inf:
        return (c.lower + c.upper) / 2 + 0.1 * (c.upper - c.lower)
    return {"negative": -0.7, "above_minus_one": -0.4}.get(c.name, 1.3)


def _call_args(family: str, lhs: str, values: list):
    """x and the parameters of the --via derivation for a batch with the left side's ``values``
    (one row each), and the catalog entry's parameters for the same rows."""
    d = _via(family, lhs)
    s = d.symbolic
    cls = s.family
    c = CASES[(family, lhs)]
    rng = np.random.default_rng(1)
    rows = len(values)
    lhs_values = np.array(values, dtype=float)
    args = {}
    for n, constraint in s.parametrization.parameters.items():
        if n in ("qa", "qb", "qw"):
            continue
        args[n] = np.full((rows, K) if constraint.event_dim else rows, _valid(constraint))  # the kept parameters: valid
    args.update({n: np.ones((rows, K), bool) if constraint is constraints.mask
                 else constraint.sample(rng, (rows, K)) if constraint.event_dim else constraint.sample(rng, ()) + 1
                 for n, constraint in cls.arguments.items()})
    if c.event_dim:
        args["qw"] = lhs_values
    else:
        args["qa"], args["qb"] = lhs_values + 0.75, np.full(rows, 0.75)
    context = {"size": K, "probs": np.full(K, 1.0 / K), **{n: args.get(n) for n in cls.arguments}}
    x = cls.value.sample(rng, (rows, K) if cls.value.event_dim else (rows,), **context)
    catalog = {n: v for n, v in args.items() if n not in ("qa", "qb", "qw")}
    catalog[lhs] = lhs_values
    return d, x, args, catalog


def _bad_row_error(lhs: str, c) -> str:
    return rf"^--via {re.escape(lhs)} = .* at batch index \[1\].*: {re.escape(lhs)} must be {re.escape(c.allowed)}$"


@pytest.mark.parametrize("family,lhs", sorted(CASES), ids=lambda v: v)
def test_a_right_side_outside_the_constraint_is_refused_and_inside_it_matches_the_catalog(family, lhs):
    if (family, lhs) in UNDERIVABLE:
        with pytest.raises(SymeligError, match="cannot vectorize"):
            _via(family, lhs)
        return
    c = CASES[(family, lhs)]
    good = _valid(c)
    for bad in _violations(c):
        d, x, args, _ = _call_args(family, lhs, [good, bad])
        for function in ("log_prob", "eligibility"):
            with pytest.raises(SymeligError, match=_bad_row_error(lhs, c)) as err:
                getattr(d, function)(x, **args)
            assert "\n" not in str(err.value)
        with np.errstate(all="ignore"):
            d.log_prob(x, validate=False, **args)  # validate=False: the kernel as it is, no checks
    # inside the constraint: accepted, and the same numbers as the catalog entry at that value
    d, x, args, catalog = _call_args(family, lhs, [good, good])
    base = d.symbolic.family.parametrizations()
    param = next(p for p, entry in base.items() if lhs in entry.parameters)
    entry = symelig.derive(family, param)
    catalog = {n: catalog[n] for n in [*entry.arguments, *entry.parameters]}
    np.testing.assert_allclose(d.log_prob(x, **args), entry.log_prob(x, **catalog), rtol=1e-12)


SECOND_ORDER = [
    ("categorical", "normalized_probs"), ("multinomial", "normalized_probs"), ("dirichlet", "concentration"),
    ("normal", "scale"), ("poisson", "rate"), ("binomial", "probs"), ("gamma", "eta2"), ("von_mises", "concentration"),
]


@pytest.mark.parametrize("family,lhs", SECOND_ORDER, ids=lambda v: v)
def test_every_entry_point_checks_the_right_side(family, lhs):
    """hessian, fisher and natural_gradient too (they share the argument checks)."""
    c = CASES[(family, lhs)]
    d, x, args, _ = _call_args(family, lhs, [_valid(c), _violations(c)[0]])
    match = _bad_row_error(lhs, c)
    with pytest.raises(SymeligError, match=match):
        d.hessian(x, **args)
    if d.second_order.fisher is None:
        return
    with pytest.raises(SymeligError, match=match):
        d.fisher(**args)
    grad = {n: np.ones(np.shape(args[n])) for n in d.parameters}
    with pytest.raises(SymeligError, match=match):
        d.natural_gradient(grad, **args)
    good = {n: v[:1] for n, v in args.items() if np.ndim(v)} | {n: v for n, v in args.items() if not np.ndim(v)}
    assert np.all(np.isfinite(d.fisher(**good)["diagonal"] if c.event_dim else d.fisher(**good)))


@pytest.mark.parametrize("family,via,wrt,values,x,shown", [
    # the reviewer's examples and their relatives; x None: the Fisher information (no sample)
    ("categorical", "normalized_probs = w", ["w"], {"w": [1.0, 1.0, 1.0]}, None, "normalized_probs = w is [1, 1, 1], which sums to 3"),
    ("multinomial", "normalized_probs = w", ["w"], {"w": [1.0, 1.0, 1.0], "total_count": 3}, None, "normalized_probs = w is [1, 1, 1], which sums to 3"),
    ("categorical", "normalized_probs = w**3", ["w"], {"w": [-1.0, 1.0, 1.0]}, None, "normalized_probs = w**3 is [-1, 1, 1]"),
    ("multinomial", "probs = w**3", ["w"], {"w": [-1.0, 1.0, 1.0], "total_count": 3}, [1, 1, 1], "probs = w**3 is [-1, 1, 1]"),
    ("normal", "scale = a - b", ["a", "b"], {"a": 1.0, "b": 2.0, "loc": 0.0}, 0.5, "scale = a - b is -1 for a = 1, b = 2"),
    ("poisson", "rate = a*b", ["a", "b"], {"a": 1.0, "b": -2.0}, 1, "rate = a*b is -2"),
    ("binomial", "probs = a", ["a"], {"a": 1.5, "total_count": 4}, 1, "probs = a is 1.5"),
    ("binomial", "probs = a", ["a"], {"a": 1.0000000001, "total_count": 4}, 1, "probs = a is 1.0000000001"),
    ("dirichlet", "concentration = exp(a) - 1", ["a"], {"a": [1.0, -1.0, 2.0]}, [0.2, 0.3, 0.5], "concentration = exp(a) - 1 is [1.71828, -0.632121, 6.38906], entry [1] is -0.6321205588285577:"),
    ("von_mises", "concentration = a*a - 1", ["a"], {"a": 0.5, "loc": 0.0}, 0.5, "concentration = a*a - 1 is -0.75"),
    ("normal", "scale = sqrt(a)", ["a"], {"a": -4.0, "loc": 0.0}, 0.5, "scale = sqrt(a) is nan for a = -4 (not a number"),
    ("gamma", "eta2 = a", ["a"], {"a": 0.0, "eta1": 1.0}, 0.5, "eta2 = a is 0"),
])
def test_the_examples(family, via, wrt, values, x, shown):
    d = symelig.reparametrize(family, via, wrt=wrt)
    values = {n: np.array(v) for n, v in values.items()}
    with pytest.raises(SymeligError) as err:
        d.fisher(**values) if x is None else d.eligibility(np.array(x), **values)
    assert str(err.value).startswith("--via " + shown), str(err.value)


def test_categorical_normalized_probs_off_the_simplex_no_longer_gives_a_fisher_of_ones():
    d = symelig.reparametrize("categorical", "normalized_probs = w", wrt=["w"])
    with pytest.raises(SymeligError, match=r"^--via normalized_probs = w is \[1, 1, 1\], which sums to 3: normalized_probs must be a probability vector"):
        d.fisher(w=[1, 1, 1])
    with pytest.raises(SymeligError, match="sums to 3"):
        d.log_prob(np.array([0, 1, 2]), w=np.ones(3))
    # on the simplex, with float32 rounding in the sum: accepted
    w = np.array([0.1, 0.2, 0.7], np.float32)
    np.testing.assert_allclose(d.log_prob(np.array([0, 1, 2]), w=w), np.log(w), rtol=1e-6)


def test_no_refusal_where_the_value_is_inside_the_constraint():
    """The right side is evaluated in its stable form: e^a − 1 at a = 1e-17 is 1e-17 > 0 (as
    written, 1 − 1 = 0); a hand-written softmax is on the simplex, also where e^z overflows."""
    d = symelig.reparametrize("dirichlet", "concentration = exp(a) - 1", wrt=["a"])
    a = np.array([1.0, 1e-17, 2.0])
    x = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(d.log_prob(x, a=a), symelig.derive("dirichlet", "concentration").log_prob(x, concentration=np.expm1(a)), rtol=1e-12)
    d = symelig.reparametrize("categorical", "normalized_probs = exp(z)/sum(exp(z))", wrt=["z"])
    z = np.array([[1.0, 0.5, 0.0], [3.0, -2.0, 0.25], [800.0, 0.0, 799.0]])  # e^800 overflows float64
    np.testing.assert_allclose(d.log_prob(np.array([0, 2, 2]), z=z), symelig.derive("categorical", "logits").log_prob(np.array([0, 2, 2]), logits=z), rtol=1e-12)


def test_a_constraint_sympy_proves_is_not_checked_at_call_time():
    """scale = exp(a) is > 0 for every real a (an underflow to 0 is not a violation), logits
    have no bounds: nothing to evaluate per call."""
    assert symelig.reparametrize("normal", "scale = exp(a)", wrt=["a"]).value_checks == ()
    assert symelig.reparametrize("categorical", "logits = z / tau", wrt=["z", "tau"]).value_checks == ()
    assert symelig.reparametrize("normal", "scale = a - b", wrt=["a", "b"]).value_checks != ()
    # a simplex is always checked for its sum, even with entries proved > 0
    assert symelig.reparametrize("categorical", "normalized_probs = exp(z)", wrt=["z"]).value_checks != ()


def test_a_vector_left_side_needs_a_vector_on_the_right_when_nothing_else_has_the_category_axis():
    with pytest.raises(SymeligError, match="--vector must name at least one new parameter"):
        symelig.reparametrize("categorical", "normalized_probs = w", wrt=["w"], vector=[])
    # the multinomial's counts carry K: the sum K·e^τ is checked against them
    d = symelig.reparametrize("multinomial", "normalized_probs = exp(tau)", wrt=["tau"], vector=[])
    x = np.array([1, 1, 1])
    d.log_prob(x, total_count=3, tau=-np.log(3))
    with pytest.raises(SymeligError, match="which sums to 3"):
        d.log_prob(x, total_count=3, tau=0.0)


def test_the_check_pickles_and_holds_no_user_text_as_code():
    d = symelig.reparametrize("categorical", "normalized_probs = sigmoid(w[i])*exp(a)/sum(sigmoid(w))", wrt=["w", "a"])
    check, = d.value_checks
    again = pickle.loads(pickle.dumps(check))
    again({"w": np.zeros((2, 3)), "a": np.zeros(2)})
    with pytest.raises(SymeligError, match=r"at batch index \[1\].*sums to 2\.71828"):
        again({"w": np.zeros((2, 3)), "a": np.array([0.0, 1.0])})
    assert "def rhs(w, a):" in check.source and "sigmoid(w[i])" not in check.source


def test_dask_checks_the_right_side_and_names_the_row_of_the_whole_array():
    da = pytest.importorskip("dask.array")
    import symelig.dask as sd

    d = symelig.reparametrize("normal", "scale = a - b", wrt=["a", "b"])
    a = np.full(1000, 3.0)
    a[777] = 1.0
    x = da.from_array(np.zeros(1000), chunks=100)
    with pytest.raises(SymeligError, match=r"^--via scale = a - b is -1 at batch index \[777\] for a = 1, b = 2"):
        sd.eligibility(d, x, loc=0.0, a=da.from_array(a, chunks=100), b=2.0)["a"].compute()
    d = symelig.reparametrize("categorical", "normalized_probs = w", wrt=["w"])
    w = np.tile([0.2, 0.3, 0.5], (500, 1))
    w[321] = 1
    with pytest.raises(SymeligError, match=r"is \[1, 1, 1\] at batch index \[321\], which sums to 3"):
        sd.log_prob(d, da.from_array(np.zeros(500, int), chunks=50), w=da.from_array(w, chunks=(50, 3))).compute()
    w[321] = [0.2, 0.3, 0.5]
    np.testing.assert_allclose(sd.log_prob(d, da.from_array(np.zeros(500, int), chunks=50), w=da.from_array(w, chunks=(50, 3))).compute(), np.log(0.2))


def test_the_cli_refuses_in_one_line():
    run = subprocess.run(
        [sys.executable, "-m", "symelig", "explain", "categorical", "--via", "normalized_probs = w", "--wrt", "w",
         "--w", "1,1,1", "--x", "0"],
        capture_output=True, text=True, encoding="utf-8",
    )
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "symelig: error: --via normalized_probs = w is [1, 1, 1], which sums to 3: normalized_probs must be a "
        "probability vector (entries ≥ 0 summing to 1)"
    ]
