"""The helpers generated kernels embed (symelig/emit/runtime), tested as functions: against
mpmath at 50 digits at extreme points, the numpy and array-API forms against each other, and
the text the emitters copy (dependencies found, numpy binding, standalone)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

import symelig
from symelig.emit import runtime

from conftest import random_arguments

mpmath.mp.dps = 50
mp = mpmath.mp


def _softplus(z):
    return mp.log1p(mp.exp(z))


def _sigmoid(z):
    return 1 / (1 + mp.exp(-z))


def _polygamma(n, u):
    return mp.loggamma(u) if n == -1 else mp.polygamma(n, u)


def _stirlerr(z):
    return mp.loggamma(z) - ((z - mp.mpf(1) / 2) * mp.log(z) - z + mp.log(2 * mp.pi) / 2)


def _bd0(a, m, d):
    return m if a == 0 else mp.inf if m == 0 else a * mp.log(a / m) + m - a


def _fms(a, b, c):
    return a - b * c  # exact in mpmath at 50 digits for float64 inputs


# (helper, reference on mpmath numbers, argument tuples at the edges of each branch)
CASES = [
    ("_sigmoid", _sigmoid, [(-700.0,), (-40.0,), (-1e-10,), (0.0,), (30.0,), (700.0,)]),
    ("_softplus", _softplus, [(-700.0,), (-37.5,), (-1e-8,), (0.0,), (40.0,), (700.0,)]),
    ("_log_softplus", lambda z: mp.log(_softplus(z)), [(-1000.0,), (-37.5,), (-36.5,), (-1e-3,), (0.0,), (50.0,), (1e5,)]),
    ("_sigmoid_over_softplus", lambda z: _sigmoid(z) / _softplus(z), [(-1000.0,), (-37.5,), (-20.0,), (0.0,), (20.0,), (700.0,)]),
    ("_log_softplus_curvature", lambda z: (_sigmoid(-z) * _softplus(z) - _sigmoid(z)) / _softplus(z) ** 2,
     [(-1000.0,), (-50.0,), (-2.8,), (-2.7,), (-1e-3,), (0.0,), (1e-3,), (5.0,), (700.0,)]),
    ("_log1mexp", lambda u: mp.log(1 - mp.exp(u)), [(-1e-20,), (-1e-5,), (-0.69,), (-0.7,), (-5.0,), (-700.0,)]),
    ("_log1pmx", lambda z: mp.log1p(z) - z, [(-0.9,), (-0.25,), (-0.24,), (-1e-10,), (1e-5,), (0.24,), (0.3,), (1e10,)]),
    ("_stirlerr", _stirlerr, [(0.5,), (1.0,), (14.9,), (15.1,), (100.0,), (1e10,)]),
    ("_factorial_remainder", lambda a: mp.loggamma(a + 1) - (a * mp.log(a) - a) if a > 0 else mp.mpf(0),
     [(0.0,), (1.0,), (15.0,), (16.0,), (1000.0,), (1e12,)]),
    ("_bd0", _bd0, [(10.0, 9.5, 0.5), (1e10, 1e10 + 1024, -1024.0), (3.0, 30.0, -27.0), (1e300, 1e-300, 1e300), (0.0, 3.0, -3.0),
              (3.0, 0.0, 3.0)]),
    ("_fms", _fms, [(1.0, 1 / 3, 3.0), (0.1 * 0.7, 0.1, 0.7), (2.0**900 * 3, 2.0**900, 3.0 + 2.0**-50), (5.0, 1e-300, 1e-10)]),
    ("_xlogy", lambda a, b: a * mp.log(b) if a else mp.mpf(0), [(0.0, 0.0), (2.0, 1e-300), (3.0, 0.5)]),
    ("_xdivy", lambda a, b: a / b if a else mp.mpf(0), [(0.0, 0.0), (2.0, 1e-300), (3.0, 0.5)]),
    ("_gamma_difference", lambda n, b, d, a, shift: _polygamma(n, b + d) - _polygamma(n, b + shift),
     [(-1, 1e3, 0.25, 1e3 + 0.25, 0), (0, 1e3, 0.25, 1e3 + 0.25, 1), (1, 50.0, -0.03125, 50.0 - 0.03125, 1), (-1, 2.0, 1.5, 3.5, 0)]),
]
IDS = [case[0] for case in CASES]


def _reference(function, args):
    """The value at 50 digits; worked at 1000 where its terms cancel (the curvature at z = −1000
    is a difference of terms of e^1000)."""
    with mp.workdps(1000):
        return float(function(*[a if isinstance(a, int) else mp.mpf(a) for a in args]))


# stirlerr just below 15 is the difference log Γ(z) − (…) of terms near 25: its relative error
# reaches 7e-13 there (4e-15 absolute, next to a log Γ of 25); 1e-13 elsewhere
RTOL = {"_stirlerr": 1e-12}


def _close(got, want, rtol):
    got = float(got)
    if np.isinf(want) or want == 0:
        return got == want
    return abs(got - want) <= rtol * abs(want)


@pytest.mark.parametrize(("name", "reference", "points"), CASES, ids=IDS)
def test_numpy_helpers_match_mpmath_at_extremes(name, reference, points):
    """The numpy modules' text of each helper, on arrays holding all the points at once and on
    each point alone (so that a numpy form skipping an unused piece is taken both ways)."""
    helper = runtime.namespace("numpy", [name])[name]
    wants = [_reference(reference, p) for p in points]
    if all(isinstance(a, float) for p in points for a in p):
        together = helper(*[np.array(column) for column in zip(*points)])
        for got, want, p in zip(together, wants, points):
            assert _close(got, want, RTOL.get(name, 1e-13)), (name, p, float(got), want)
    for p, want in zip(points, wants):
        got = helper(*[np.array([a]) if isinstance(a, float) else a for a in p])[0]
        assert _close(got, want, RTOL.get(name, 1e-13)), (name, p, float(got), want)


def _array_api_namespaces():
    import array_api_compat.numpy

    yield "numpy", array_api_compat.numpy, lambda a: a
    try:
        import array_api_compat.torch
        import torch
    except ImportError:
        return
    yield "torch", array_api_compat.torch, lambda a: torch.asarray(a, dtype=torch.float64)


@pytest.mark.parametrize(("name", "reference", "points"), CASES, ids=IDS)
def test_array_api_helpers_match_mpmath_and_the_numpy_forms(name, reference, points):
    """The array-API text (the shared :mod:`special` form where numpy has a faster one of its
    own) agrees with mpmath and with the numpy form, for numpy and torch arrays."""
    numpy_helper = runtime.namespace("numpy", [name])[name]
    helper = runtime.namespace("xp", [name]).get(name)
    for library, xp, convert in _array_api_namespaces():
        for p in points:
            want = _reference(reference, p)
            got = helper(xp, *[convert(np.array([a])) if isinstance(a, float) else a for a in p])
            got = float(np.asarray(got.tolist() if library == "torch" else got)[0])
            assert _close(got, want, RTOL.get(name, 1e-13)), (name, library, p, got, want)
            expected = float(numpy_helper(*[np.array([a]) if isinstance(a, float) else a for a in p])[0])
            assert _close(got, expected, 1e-13), (name, library, p, got, expected)


def test_float32_inputs_stay_float32():
    helpers = runtime.namespace("numpy", [name for name, _, _ in CASES if name != "_gamma_difference"])
    z = np.array([-50.0, -0.5, 0.0, 0.5, 20.0], np.float32)
    for name in ["_sigmoid", "_softplus", "_log_softplus", "_sigmoid_over_softplus", "_log_softplus_curvature", "_stirlerr"]:
        assert helpers[name](np.abs(z) + 1 if name == "_stirlerr" else z).dtype == np.float32, name
    assert helpers["_log1mexp"](-np.abs(z) - 1).dtype == np.float32


def test_dependencies_are_found_in_the_code():
    assert runtime.closure("numpy", ["_log_softplus"]) == {"_log_softplus", "_softplus"}
    assert runtime.closure("xp", ["_betaln"]) == {"_betaln", "_gamma_difference", "_special"}
    assert runtime.closure("numpy", ["_rank_one_solve"]) == {"_rank_one_solve", "_pinv_diagonal"}
    with pytest.raises(KeyError, match="_nonesuch"):
        runtime.closure("numpy", ["_nonesuch"])


def test_numpy_binding_drops_the_namespace_and_leaves_strings_alone():
    source = 'def f(xp, z):\n    """xp here stays."""\n    return g(xp, xp.log(z)) + h(xp)  # xp(\n'
    assert runtime.for_numpy(source) == 'def f(z):\n    """xp here stays."""\n    return g(np.log(z)) + h()  # xp(\n'


@pytest.mark.parametrize("dialect", ["numpy", "xp"])
def test_every_helper_text_stands_alone(dialect):
    """Each dialect's helpers, with what they call, use no name the generated modules lack."""
    pyflakes = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter
    import io

    names = set(runtime._library(dialect))
    given = "import numpy as np\n" if dialect == "numpy" else "from array_api_compat import array_namespace, device\n"
    out = io.StringIO()
    assert pyflakes.check(given + "\n\n".join(runtime.sources(dialect, names)), "helpers", Reporter(out, out)) == 0, out.getvalue()


# ---- exported numpy modules import, and run what needs no scipy, without scipy --------------------

_WITHOUT_SCIPY = r"""
import importlib.util, json, sys
sys.modules["scipy"] = None  # any import of scipy (or scipy.special) now raises ImportError
results = {}
for path, args in json.loads(sys.argv[1]).items():
    spec = importlib.util.spec_from_file_location("m", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        results[path] = {k: v.tolist() for k, v in module.eligibility(**args).items()}
    except ImportError as error:
        results[path] = str(error)
print(json.dumps(results))
"""

DERIVATIONS = Path(__file__).resolve().parent.parent / "derivations"


def _needs_scipy(source: str, function: str) -> bool:
    """Whether ``function`` of the module text, or a module function it calls, imports scipy."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    todo, seen = [function], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = functions[name]
        if any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("scipy") for n in ast.walk(node)):
            return True
        todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in functions]
    return False


def test_exported_numpy_modules_import_and_run_without_scipy():
    """Issue 17: every module imports without scipy, and an eligibility that needs no special
    function (multinomial logits, categorical, normal, …) runs and gives the same numbers."""
    rng = np.random.default_rng(3)
    calls, expected, scipy_free = {}, {}, set()
    for entry in symelig.catalog():
        path = DERIVATIONS / f"{entry.family}_{entry.param}.py"
        if not path.exists():  # a user family registered by the tests: no page
            continue
        d = symelig.derive(entry.family, entry.param)
        args = random_arguments(d, rng)
        calls[str(path)] = {k: np.asarray(v).tolist() for k, v in args.items()}
        expected[str(path)] = d.eligibility(**args)
        if not _needs_scipy(path.read_text(encoding="utf-8"), "eligibility"):
            scipy_free.add(str(path))
    run = subprocess.run([sys.executable, "-c", _WITHOUT_SCIPY, json.dumps(calls)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout)
    assert str(DERIVATIONS / "multinomial_logits.py") in scipy_free and len(scipy_free) >= 30
    for path, got in results.items():
        if path in scipy_free:
            assert isinstance(got, dict), (path, got)
            for name, value in expected[path].items():
                np.testing.assert_allclose(got[name], value, rtol=1e-12, err_msg=f"{path} {name}")
        else:
            assert isinstance(got, str) and "scipy" in got, (path, got)


@pytest.mark.parametrize(("name", "reference", "points"), CASES, ids=IDS)
def test_numba_scalar_helpers_match_mpmath(name, reference, points):
    """The numba kernels' scalar helpers (compiled here for float64) at the same points."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from symelig.emit.runtime import numba_kernels

    helper = getattr(numba_kernels, name)
    for p in points:
        want = _reference(reference, p)
        got = helper(*p)
        assert _close(got, want, RTOL.get(name, 1e-13)), (name, p, float(got), want)


def test_array_api_select_computes_each_piece_only_where_taken():
    """_select of the array-API modules: the pieces see only their own elements (numpy, torch),
    a new array of the broadcast shape comes out, and under JAX both pieces run everywhere."""
    select = runtime.namespace("xp", ["_select"])["_select"]
    seen = []

    def piece(scale):
        def f(a, b):
            seen.append(a.shape[0])
            return scale * a + b
        return f

    for library, xp, convert in _array_api_namespaces():
        a, b = convert(np.arange(6.0)), convert(np.array([10.0]))
        for need in [a > 2.5, a > 10, a >= 0]:  # mixed, none, all
            seen.clear()
            out = select(xp, need, piece(2), (a, b), piece(1), (a, -b))
            flags = np.asarray(need.tolist() if library == "torch" else need)
            np.testing.assert_array_equal(np.asarray(out.tolist() if library == "torch" else out),
                                          np.where(flags, 2 * np.arange(6.0) + 10, np.arange(6.0) - 10))
            assert sum(seen) == 6, (library, seen)  # each element computed by one piece only
            assert out is not a and tuple(out.shape) == (6,)
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    out = jax.jit(lambda a: select(jnp, a > 2.5, piece(2), (a, 10.0), piece(1), (a, -10.0)))(jnp.arange(6.0))
    np.testing.assert_array_equal(np.asarray(out), np.where(np.arange(6.0) > 2.5, 2 * np.arange(6.0) + 10, np.arange(6.0) - 10))


def test_array_api_saddle_point_kernels_match_numpy_where_rows_take_both_pieces():
    """Binomial and Poisson kernels with counts on both sides of the saddle-point threshold in
    one batch: the array-API kernels (numpy and torch arrays) agree with the numpy ones."""
    from symelig.emit import xp as xp_emitter

    for family, param, args in [
        ("binomial", "logits", {"x": np.array([0.0, 3.0, 150.0, 400.0]), "total_count": np.array([5.0, 7.0, 300.0, 1000.0]), "logits": np.array([-1.0, 0.5, 0.1, 2.0])}),
        ("poisson", "rate", {"x": np.array([0.0, 2.0, 120.0, 5000.0]), "rate": np.array([0.5, 3.0, 110.0, 4900.0])}),
    ]:
        d = symelig.derive(family, param)
        scope = {}
        exec(compile(xp_emitter.module_source(d.symbolic), f"<{family} xp>", "exec"), scope)  # noqa: S102 -- generated here
        for library, _, convert in _array_api_namespaces():
            converted = {k: convert(v) for k, v in args.items()}
            got = scope["log_prob"](**converted)
            np.testing.assert_allclose(np.asarray(got.tolist() if library == "torch" else got), d.log_prob(**args), rtol=1e-12)
            for name, value in scope["eligibility"](**converted).items():
                np.testing.assert_allclose(np.asarray(value.tolist() if library == "torch" else value), d.eligibility(**args)[name], rtol=1e-12)
