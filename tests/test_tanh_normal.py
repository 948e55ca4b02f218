"""tanh_normal (the sample as the action a) and tanh_normal_presquash (the stored u): the stable
inverse, the bounds, float32, finite differences, the zero eligibility of the Jacobian, and the
three libraries' log_prob formulas (``--compat``).  The torch cross-check is in test_torch.py."""
from __future__ import annotations

import subprocess
import sys

import mpmath
import numpy as np
import pytest

import symelig
from symelig import SymeligError

PARAMS = ("scale", "log_scale", "softplus_scale")
FAMILIES = ("tanh_normal", "tanh_normal_presquash")


def _theta(param, shape, rng):
    return rng.uniform(0.2, 3, size=shape) if param == "scale" else rng.normal(size=shape)


def _squash(u, low, high):
    return low + (high - low) * (np.tanh(u) + 1) / 2


def _batch(param, rng, rows=50, width=3, dtype=np.float64):
    loc = rng.normal(size=(rows, width))
    low = rng.uniform(-3, 0.5, size=loc.shape)
    high = low + rng.uniform(0.2, 4, size=loc.shape)
    u = loc + 1.5 * rng.normal(size=loc.shape)
    args = {"low": low, "high": high, "loc": loc, symelig.derive("tanh_normal", param).parameters[1]: _theta(param, loc.shape, rng)}
    return u.astype(dtype), {n: v.astype(dtype) for n, v in args.items()}


@pytest.mark.parametrize("param", PARAMS)
def test_eligibility_is_the_gaussians_at_u(param):
    """The Jacobian term has zero eligibility: for either sample form e equals diag_normal's at
    u, while log p differs from the Gaussian's by exactly the log-Jacobian."""
    rng = np.random.default_rng(1)
    u, args = _batch(param, rng)
    theta = {n: args[n] for n in symelig.derive("diag_normal", param).parameters}
    gaussian = symelig.derive("diag_normal", param)
    reference = gaussian.eligibility(u, **theta)
    action = _squash(u, args["low"], args["high"])
    for family, x in (("tanh_normal_presquash", u), ("tanh_normal", action)):
        e = symelig.derive(family, param).eligibility(x, **args)
        for name in reference:
            np.testing.assert_allclose(e[name], reference[name], rtol=1e-9, atol=1e-12, err_msg=f"{family} {name}")
    log_jacobian = np.log((args["high"] - args["low"]) / 2) + np.log1p(-np.tanh(u) ** 2)
    np.testing.assert_allclose(symelig.derive("tanh_normal_presquash", param).log_prob(u, **args),
                               gaussian.log_prob(u, **theta) - log_jacobian.sum(-1), rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("param", PARAMS)
def test_eligibility_matches_finite_differences(family, param):
    d = symelig.derive(family, param)
    rng = np.random.default_rng(2)
    u, args = _batch(param, rng, rows=8)
    x = u if family == "tanh_normal_presquash" else _squash(u, args["low"], args["high"])
    e = d.eligibility(x, **args)
    step = 1e-6
    for name in d.parameters:
        for k in range(x.shape[-1]):
            up, down = ({**args, name: args[name].copy()} for _ in range(2))
            up[name][:, k] += step
            down[name][:, k] -= step
            numeric = (d.log_prob(x, **up) - d.log_prob(x, **down)) / (2 * step)
            np.testing.assert_allclose(e[name][:, k], numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name}[{k}]")


def test_action_is_inverted_without_cancellation():
    """u = ½[log(a − low) − log(high − a)] keeps every digit next to a bound, where
    atanh(2(a − low)/(high − low) − 1) loses them: checked against mpmath at the float64 action
    (at the centre the two logs cancel to an absolute error of ε, which u − μ absorbs)."""
    d = symelig.derive("tanh_normal", "scale")
    low, high = -0.3, 0.7
    a = np.array([[high - 2.0**-53, low + 2.0**-54, 0.5, 0.2 + 1e-300, high - 3e-11 + 2.0**-53]])
    bounds = {"low": np.full(a.shape, low), "high": np.full(a.shape, high)}
    e = d.eligibility(a, **bounds, loc=np.zeros_like(a), scale=np.ones_like(a))["loc"]  # = u − μ at σ = 1
    true = [float(mpmath.log((mpmath.mpf(v) - low) / (high - mpmath.mpf(v))) / 2) for v in a[0]]
    np.testing.assert_allclose(e[0], true, rtol=1e-15, atol=3e-16)
    naive = np.arctanh(2 * (a - low) / (high - low) - 1)[0]
    assert abs(naive[-1] - true[-1]) > 1e-8 * abs(true[-1])  # the rescaled atanh loses digits there


@pytest.mark.parametrize("param", PARAMS)
def test_float32_is_finite_for_any_stored_u_and_actions_up_to_one_millionth_from_a_bound(param):
    rng = np.random.default_rng(3)
    u = np.concatenate([np.linspace(-40, 40, 81), [-1e4, 1e4, -20.0, 20.0]]).astype(np.float32)[:, None] * np.ones(2, np.float32)
    theta = {"loc": np.full(u.shape, 0.3, np.float32), symelig.derive("tanh_normal", param).parameters[1]: np.full(u.shape, 0.7 if param == "scale" else -0.4, np.float32)}
    bounds = {"low": -np.ones(u.shape, np.float32), "high": np.ones(u.shape, np.float32)}
    with np.errstate(all="raise"):
        for family, x in (("tanh_normal_presquash", u),
                          ("tanh_normal", np.array([[1 - 1e-6, -1 + 1e-6], [0.999, -0.5], [0.0, 1e-30]], np.float32))):
            d = symelig.derive(family, param)
            shaped = {n: v[: len(x)] for n, v in {**bounds, **theta}.items()}
            log_p, e = d.log_prob(x, **shaped), d.eligibility(x, **shaped)
            for value in (log_p, *e.values()):
                assert value.dtype == np.float32 and np.all(np.isfinite(value)), (family, value)
    del rng


def test_float32_action_that_rounds_onto_the_bound_is_a_one_line_error():
    """1 − 1e-8 is 1.0 in float32: no u; the error names the bound (store u instead)."""
    d = symelig.derive("tanh_normal", "log_scale")
    a = np.array([0.2, 1 - 1e-8], np.float32)
    assert a[1] == 1.0
    with pytest.raises(SymeligError) as err:
        d.eligibility(a, low=-np.ones(2), high=np.ones(2), loc=np.zeros(2), log_scale=np.zeros(2))
    message = str(err.value)
    assert "\n" not in message and message.startswith("x[1] = 1.0 is not allowed") and "high[1] = 1.0" in message


@pytest.mark.parametrize("a,bound", [(1.5, "high[0] = 1.0"), (-1.0, "low[0] = -1.0"), (np.nan, None)])
def test_action_outside_the_bounds_is_refused(a, bound):
    d = symelig.derive("tanh_normal", "scale")
    with pytest.raises(SymeligError) as err:
        d.log_prob(np.array([a, 0.0]), low=-np.ones(2), high=np.ones(2), loc=np.zeros(2), scale=np.ones(2))
    assert "\n" not in str(err.value)
    if bound:
        assert bound in str(err.value)


def test_high_must_exceed_low():
    d = symelig.derive("tanh_normal_presquash", "scale")
    with pytest.raises(SymeligError, match=r"^high\[1\] = -2.0 is not allowed: high must be > low; here low\[1\] = -1.0$"):
        d.log_prob(np.zeros(2), low=-np.ones(2), high=np.array([1.0, -2.0]), loc=np.zeros(2), scale=np.ones(2))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symelig", *args], capture_output=True, text=True)


def test_cli_refuses_an_action_at_the_bound_in_one_line():
    run = _cli("eval", "tanh_normal", "--param", "log_scale", "--x", "0.5,1", "--low", "-1,-1", "--high", "1,1",
               "--loc", "0,0", "--log-scale", "0,0")
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "x[1] = 1.0 is not allowed" in run.stderr and "high[1] = 1" in run.stderr


def test_cli_compat_prints_the_library_value_and_its_distance():
    run = _cli("eval", "tanh_normal", "--param", "log_scale", "--x", "0.999999,0", "--low", "-1,-1", "--high", "1,1",
               "--loc", "0,0", "--log-scale", "0,0", "--compat", "sb3")
    assert run.returncode == 0, run.stderr
    # SB3 adds 1e-6 inside log(1 − a²) = log(2e-6 − 1e-12): log(3/2) less than the exact value (and
    # log(1 + 1e-6) at a = 0)
    assert "log p as sb3 computes it" in run.stdout and "sb3 − exact log p             = -0.405466" in run.stdout
    bad = _cli("eval", "normal", "--x", "0", "--loc", "0", "--scale", "1", "--compat", "sb3")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "tanh_normal" in bad.stderr
    unknown = _cli("eval", "tanh_normal", "--x", "0,0", "--low", "-1,-1", "--high", "1,1", "--loc", "0,0", "--scale", "1,1", "--compat", "rllib")
    assert unknown.returncode != 0 and "choose one of: sb3, cleanrl, spinningup" in unknown.stderr


# -- the libraries' formulas, transcribed from their sources as oracles -------------------------


def _library_oracles(torch):
    """Each library's log_prob, as its source writes it (float64 tensors)."""
    F = torch.nn.functional
    Normal = torch.distributions.Normal

    def sb3(normal, u, action):
        # SquashedDiagGaussianDistribution.log_prob(actions, gaussian_actions): u given when stored,
        # else TanhBijector.inverse (clamp to ±(1 − eps), then 0.5·(log1p(y) − log1p(−y)))
        if u is None:
            eps = torch.finfo(action.dtype).eps
            y = action.clamp(min=-1.0 + eps, max=1.0 - eps)
            u = 0.5 * (y.log1p() - (-y).log1p())
        return normal(u).log_prob(u).sum(dim=1) - torch.sum(torch.log(1 - action**2 + 1e-6), dim=1)

    def cleanrl(normal, u, action_scale):
        y_t = torch.tanh(u)
        log_prob = normal(u).log_prob(u)
        log_prob -= torch.log(action_scale * (1 - y_t.pow(2)) + 1e-6)
        return log_prob.sum(1)

    def spinningup(normal, u):
        logp_pi = normal(u).log_prob(u).sum(axis=-1)
        logp_pi -= (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(axis=1)
        return logp_pi

    return Normal, sb3, cleanrl, spinningup


@pytest.mark.parametrize("param", PARAMS)
def test_compat_reproduces_each_library_to_1e12(param):
    torch = pytest.importorskip("torch")
    Normal, sb3, cleanrl, spinningup = _library_oracles(torch)
    to_scale = {"scale": lambda v: v, "log_scale": torch.exp, "softplus_scale": torch.nn.functional.softplus}[param]
    rng = np.random.default_rng(4)
    u, args = _batch(param, rng, rows=200, width=4)
    name = symelig.derive("tanh_normal", param).parameters[1]
    t = {n: torch.tensor(v) for n, v in args.items()}

    def normal(_):
        return Normal(t["loc"], to_scale(t[name]))

    tu = torch.tensor(u)
    c = (t["high"] - t["low"]) / 2
    unit = {**args, "low": -np.ones_like(u), "high": np.ones_like(u)}  # SB3 squashes into [−1, 1] only
    cases = [
        ("sb3", "tanh_normal_presquash", u, unit, sb3(normal, tu, torch.tanh(tu))),
        ("sb3", "tanh_normal", np.tanh(u), unit, sb3(normal, None, torch.tanh(tu))),
        ("cleanrl", "tanh_normal_presquash", u, args, cleanrl(normal, tu, c)),
        ("spinningup", "tanh_normal_presquash", u, args, spinningup(normal, tu)),
    ]
    for library, family, x, values, theirs in cases:
        ours = symelig.compat_log_prob(library, family, param, x, **values)
        np.testing.assert_allclose(ours.log_prob, theirs.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{library} {family}")
        np.testing.assert_allclose(ours.exact, symelig.derive(family, param).log_prob(x, **values), rtol=0, atol=0)


def test_compat_distances_from_the_exact_value():
    """What each library's epsilon and omitted log c cost, at u far from and near saturation."""
    u = np.array([[0.0, 0.5], [3.0, -3.0], [12.0, 13.0]])
    args = {"low": np.full(u.shape, -2.0), "high": np.full(u.shape, 2.0), "loc": np.zeros(u.shape), "scale": np.ones(u.shape)}
    c = 2.0
    d = {lib: symelig.compat_log_prob(lib, "tanh_normal_presquash", "scale", u, **args).difference for lib in ("sb3", "cleanrl", "spinningup")}
    exact = np.log(c / np.cosh(u) ** 2)       # the log-Jacobian, without the rounding of 1 − tanh²u
    one_minus_y2 = 1 - np.tanh(u) ** 2        # as the libraries compute it
    # Spinning Up is exact up to the log c it leaves out; SB3 leaves it out and adds 1e-6; CleanRL keeps c
    np.testing.assert_allclose(d["spinningup"], np.full(3, 2 * np.log(c)), rtol=1e-12)
    np.testing.assert_allclose(d["sb3"], (exact - np.log(one_minus_y2 + 1e-6)).sum(-1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d["cleanrl"], (exact - np.log(c * one_minus_y2 + 1e-6)).sum(-1), rtol=1e-12, atol=1e-15)
    assert d["cleanrl"][-1] < -10  # saturated: 1e-6 swamps c(1 − tanh²u) ≈ 1e-7


@pytest.mark.parametrize("family", FAMILIES)
def test_explain_shows_the_jacobian_term_has_zero_eligibility(family):
    """One "Change of variables" step per parameter: ∂/∂θ_j of the log-Jacobian is 0, and at
    values it evaluates to the zero vector; the steps' results are the Gaussian's eligibility."""
    explanation = symelig.explain(family, "log_scale", x=[0.5, -0.9], low=[-1.0, -1.0], high=[1.0, 1.0],
                                  loc=[0.0, 0.3], log_scale=[0.0, -0.5])
    steps = [item for item in explanation.items if item.rule == "jacobian"]
    assert [item.target for item in steps] == ["loc", "log_scale"]
    for item in steps:
        symbols = explanation.derivation.symbols
        assert item.expression == 0 and item.before.has(symbols["x"], symbols["high"])
        assert not any(item.before.has(symbols[n]) for n in ("loc", "log_scale", "scale"))  # free of θ
        np.testing.assert_array_equal(item.value, [0.0, 0.0])
    assert "Change of variables" in explanation.text() and "does not depend on θ" in explanation.text()


def test_bounds_default_to_the_unit_box():
    """low = −1 and high = 1 in every coordinate when left out: the API, Dask, torch tensors,
    the CLI and --compat give what the explicit bounds give."""
    rng = np.random.default_rng(5)
    u, args = _batch("log_scale", rng, rows=6, width=3)
    theta = {n: args[n] for n in ("loc", "log_scale")}
    unit = {"low": -np.ones(3), "high": np.ones(3)}
    a = np.tanh(u)
    for family, x in (("tanh_normal", a), ("tanh_normal_presquash", u)):
        d = symelig.derive(family, "log_scale")
        np.testing.assert_array_equal(d.log_prob(x, **theta), d.log_prob(x, **theta, **unit))
        for name, value in d.eligibility(x, **theta).items():
            np.testing.assert_array_equal(value, d.eligibility(x, **theta, **unit)[name])
        np.testing.assert_array_equal(symelig.compat_log_prob("sb3", family, "log_scale", x, **theta).log_prob,
                                      symelig.compat_log_prob("sb3", family, "log_scale", x, **theta, **unit).log_prob)
    with pytest.raises(SymeligError, match=r"^x\[0, 0\] = 1.5 is not allowed.*here high\[0, 0\] = 1.0$"):
        symelig.derive("tanh_normal", "scale").log_prob(np.array([[1.5, 0.0]]), loc=np.zeros(2), scale=np.ones(2))
    run = _cli("eval", "tanh_normal", "--param", "log_scale", "--x", "0.5,-0.25", "--loc", "0,0", "--log-scale", "0,0")
    explicit = _cli("eval", "tanh_normal", "--param", "log_scale", "--x", "0.5,-0.25", "--low", "-1,-1", "--high", "1,1",
                    "--loc", "0,0", "--log-scale", "0,0")
    assert run.returncode == 0 and run.stdout == explicit.stdout


def test_bounds_default_for_tensors_and_dask():
    torch = pytest.importorskip("torch")
    da = pytest.importorskip("dask.array")
    import symelig.dask

    d = symelig.derive("tanh_normal", "scale")
    a = np.array([[0.5, -0.999999], [0.0, 0.25]])
    theta = {"loc": np.zeros(2), "scale": np.full(2, 0.5)}
    expected = d.eligibility(a, **theta)["loc"]
    tensors = d.eligibility(torch.tensor(a), loc=torch.zeros(2, dtype=torch.float64), scale=torch.full((2,), 0.5, dtype=torch.float64))
    np.testing.assert_allclose(tensors["loc"].numpy(), expected, rtol=1e-12)
    lazy = symelig.dask.eligibility(d, da.from_array(a, chunks=(1, 2)), **theta)["loc"].compute()
    np.testing.assert_allclose(lazy, expected, rtol=1e-12)
