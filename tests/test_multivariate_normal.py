"""multivariate_normal (symelig.matrix): the matrix-form derivation, its kernels against an
element-wise SymPy derivative, finite differences, Monte Carlo, torch autograd, and bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import symelig
from symelig import SymeligError
from symelig.cli import main

PARAMS = ("scale_tril", "log_diag_tril")


def random_case(rng, batch, d, param, dtype=np.float64):
    """x, loc and the matrix parameter; L well conditioned (diagonal in [0.5, 2])."""
    A = rng.normal(scale=0.5, size=(*batch, d, d))
    A[..., np.arange(d), np.arange(d)] = rng.uniform(np.log(0.5), np.log(2), size=(*batch, d))
    L = np.tril(A, -1) + np.einsum("...i,ij->...ij", np.exp(np.diagonal(A, axis1=-2, axis2=-1)), np.eye(d))
    loc = rng.normal(size=(*batch, d))
    x = loc + np.einsum("...ij,...j->...i", L, rng.normal(size=(*batch, d)))
    matrix = L if param == "scale_tril" else A
    return {"x": x.astype(dtype), "loc": loc.astype(dtype), param: matrix.astype(dtype)}, L


def relative_error(got, expected):
    return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300))


# the derivation --------------------------------------------------------------------------------
def test_printed_in_matrix_notation():
    text = symelig.derive("multivariate_normal", "scale_tril").text(order=2)
    assert "∂log p/∂μ = L⁻ᵀ z" in text
    assert "∂log p/∂L = tril(L⁻ᵀ z zᵀ) − diag(L)⁻¹" in text
    assert "z = L⁻¹ (x − μ)" in text and "F_μμ = −E[∂²log p/∂μ∂μᵀ] = L⁻ᵀ L⁻¹" in text
    text = symelig.derive("multivariate_normal", "log_diag_tril").text()
    assert "∂log p/∂A = tril(L⁻ᵀ z zᵀ, −1) + diag(L) diag(L⁻ᵀ z zᵀ) − I" in text
    tex = symelig.derive("multivariate_normal", "scale_tril").latex_fragment()
    assert r"\operatorname{tril}\left(L^{-\top}\, z\, z^{\top}\right) - \operatorname{diag}\left(L\right)^{-1}" in tex


def test_steps_are_the_rules_the_engine_applied():
    steps = symelig.derive("multivariate_normal", "log_diag_tril").steps()
    rules = [rule for _, rule, *_ in steps]
    for rule in ("matrix_calculus", "jacobi_formula", "whiten", "triangular_projection", "triangular_identities",
                 "chain_rule_log_diagonal", "fisher_constant_hessian", "natural_gradient"):
        assert rule in rules
    last = next(s for s in reversed(steps) if s[0] == "log_diag_tril")
    assert last[4] == "tril(L⁻ᵀ z zᵀ, −1) + diag(L) diag(L⁻ᵀ z zᵀ) − I"


@pytest.mark.parametrize("param", PARAMS)
def test_kernels_match_an_elementwise_sympy_derivative(param):
    """The oracle knows nothing of matrix calculus: log p written with the entries of a 3 × 3
    L (Σ log L_ii, the quadratic form through SymPy's exact inverse), each entry differentiated."""
    import sympy as sp

    dim = 3
    rng = np.random.default_rng(1)
    args, L_value = random_case(rng, (), dim, param)
    x, mu = sp.Matrix(sp.symbols("x0:3")), sp.Matrix(sp.symbols("m0:3"))
    entries = {(i, j): sp.Symbol(f"a{i}{j}") for i in range(dim) for j in range(i + 1)}
    if param == "scale_tril":
        L = sp.Matrix(dim, dim, lambda i, j: entries.get((i, j), 0))
    else:
        L = sp.Matrix(dim, dim, lambda i, j: sp.exp(entries[(i, j)]) if i == j else entries.get((i, j), 0))
    r = x - mu
    log_p = -(r.T * (L * L.T).inv() * r)[0] / 2 - sum(sp.log(L[i, i]) for i in range(dim)) - dim * sp.log(2 * sp.pi) / 2
    matrix = args[param]
    values = {**dict(zip(x, args["x"])), **dict(zip(mu, args["loc"])), **{s: matrix[i, j] for (i, j), s in entries.items()}}
    e = symelig.derive("multivariate_normal", param).eligibility(**args)
    assert abs(float(log_p.subs(values)) - symelig.derive("multivariate_normal", param).log_prob(**args)) < 1e-12
    for k in range(dim):
        assert abs(float(sp.diff(log_p, mu[k]).subs(values)) - e["loc"][k]) < 1e-12
    for (i, j), s in entries.items():
        assert abs(float(sp.diff(log_p, s).subs(values)) - e[param][i, j]) < 1e-12
    assert np.all(np.triu(e[param], 1) == 0)


@pytest.mark.parametrize("param", PARAMS)
def test_finite_differences(param):
    rng = np.random.default_rng(2)
    args, _ = random_case(rng, (4,), 5, param)
    d = symelig.derive("multivariate_normal", param)
    e = d.eligibility(**args)
    h = 1e-6
    for name in ("loc", param):
        value = args[name]
        for index in np.ndindex(value.shape[1:]):
            if name == param and index[1] > index[0]:
                continue  # above the diagonal: not a free entry (0 for log_diag_tril, checked below)
            step = np.zeros_like(value)
            step[(slice(None), *index)] = h
            plus = d.log_prob(**{**args, name: value + step})
            minus = d.log_prob(**{**args, name: value - step})
            np.testing.assert_allclose(e[name][(slice(None), *index)], (plus - minus) / (2 * h), rtol=1e-6, atol=1e-7)
    if param == "log_diag_tril":  # A's upper part does not enter L
        assert np.all(np.triu(e[param], 1) == 0)


@pytest.mark.parametrize("param", PARAMS)
def test_expected_eligibility_is_zero_and_fisher_is_its_covariance(param):
    """E[e] = 0 and E[e_μ e_μᵀ] = F_μμ, by Monte Carlo over x ~ N(μ, LLᵀ)."""
    rng = np.random.default_rng(3)
    dim, n = 3, 400_000
    args, L = random_case(rng, (), dim, param)
    x = args["loc"] + rng.normal(size=(n, dim)) @ L.T
    d = symelig.derive("multivariate_normal", param)
    e = d.eligibility(x, loc=args["loc"], **{param: args[param]})
    for name, value in e.items():
        mean, error = value.mean(0), value.std(0) / np.sqrt(n)
        assert np.all(np.abs(mean) <= 5 * error + 1e-12), name
    covariance = e["loc"].T @ e["loc"] / n
    fisher = d.fisher(loc=args["loc"], **{param: args[param]})
    np.testing.assert_allclose(covariance, fisher, rtol=0.03, atol=0.03 * np.abs(fisher).max())
    np.testing.assert_allclose(fisher, np.linalg.inv(L @ L.T), rtol=1e-10)
    g = rng.normal(size=dim)
    np.testing.assert_allclose(d.natural_gradient(g, loc=args["loc"], **{param: args[param]}), L @ L.T @ g, rtol=1e-12)


def test_batches_broadcast_and_dtypes_are_kept():
    rng = np.random.default_rng(4)
    args, _ = random_case(rng, (), 4, "scale_tril")
    d = symelig.derive("multivariate_normal", "scale_tril")
    x = rng.normal(size=(7, 4))
    e = d.eligibility(x, loc=args["loc"], scale_tril=args["scale_tril"])
    assert e["loc"].shape == (7, 4) and e["scale_tril"].shape == (7, 4, 4)
    for row in range(7):
        single = d.eligibility(x[row], loc=args["loc"], scale_tril=args["scale_tril"])
        np.testing.assert_allclose(e["scale_tril"][row], single["scale_tril"], rtol=1e-13)
    small = {n: v.astype(np.float32) for n, v in args.items()}
    out = d.eligibility(**small)
    assert out["loc"].dtype == np.float32 and out["scale_tril"].dtype == np.float32
    assert d.log_prob(**small).dtype == np.float32


# bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    ({"scale_tril": [[1.0, 0.5], [0.2, 1.0]]}, "scale_tril must be lower triangular: scale_tril[0, 1] = 0.5 is above the diagonal"),
    ({"scale_tril": [[1.0, 0.0], [0.2, 0.0]]}, "scale_tril must have a positive diagonal: scale_tril[1, 1] = 0.0 is not > 0"),
    ({"scale_tril": [[1.0, 0.0, 0.0]]}, "scale_tril must be (…, d, d)"),
    ({"loc": [0.0, 0.0, 0.0]}, "loc must be (…, 2) to match scale_tril"),
    ({"scale_tril": [[1.0, 0.0], [np.inf, 1.0]]}, "scale_tril[1, 0] = inf is not allowed: scale_tril must be finite"),
])
def test_bad_input_is_one_line(bad, message):
    args = {"x": [0.5, 1.0], "loc": [0.0, 0.0], "scale_tril": [[1.0, 0.0], [0.2, 1.0]], **bad}
    with pytest.raises(SymeligError) as error:
        symelig.derive("multivariate_normal", "scale_tril").eligibility(**args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_results_beyond_the_range_are_an_error():
    d = symelig.derive("multivariate_normal")
    args = {"x": [1.0, 1.0], "loc": [0.0, 0.0], "scale_tril": [[1e-200, 0.0], [0.0, 1.0]]}
    with pytest.raises(SymeligError, match="beyond the float64 range"):
        d.eligibility(**args)
    small = {"x": [1.0, 1.0], "loc": [0.0, 0.0], "scale_tril": [[1e-100, 0.0], [0.0, 1.0]]}  # z_0 = 1e100: still in range
    assert np.isfinite(d.log_prob(**small)) and d.eligibility(**small)["loc"][0] == pytest.approx(1e200, rel=1e-12)


def test_batch_shapes_must_broadcast():
    with pytest.raises(SymeligError, match="the batch shapes do not broadcast"):
        symelig.derive("multivariate_normal").log_prob(np.zeros((3, 2)), loc=np.zeros((4, 2)), scale_tril=np.eye(2))


@pytest.mark.parametrize("argv, message", [
    (["eval", "multivariate_normal", "--x", "1,2", "--loc", "0,0", "--scale-tril", "1,0.3;0.5,2"], "must be lower triangular"),
    (["eval", "multivariate_normal", "--x", "1,2", "--loc", "0,0", "--scale-tril", "1,0;0.5,-2"], "must have a positive diagonal"),
    (["eval", "multivariate_normal", "--x", "1,2,3", "--loc", "0,0", "--scale-tril", "1,0;0.5,2"], "x must be (…, 2)"),
    (["eval", "multivariate_normal", "--x", "1,2", "--loc", "0,0", "--scale-tril", "1,0;0.5"], "equal lengths"),
    (["derive", "multivariate_normal", "--param", "cholesky"], "unknown parametrization 'cholesky'"),
    (["export", "multivariate_normal", "--backend", "numba", "-o", "m.py"], "no numba backend"),
    (["paper", "multivariate_normal"], "is derived in matrix form"),
    (["audit", "kl", "multivariate_normal"], "is derived in matrix form"),
    (["html", "multivariate_normal", "-o", "site"], "is derived in matrix form"),
    (["eval-files", "multivariate_normal", "-i", "in", "-o", "out"], "is derived in matrix form"),
    (["explain", "multivariate_normal", "--x", "1,2"], "takes no values"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_list_derive_eval(capsys):
    with pytest.raises(SystemExit):
        main(["list"])
    listed = capsys.readouterr().out
    assert re.search(r"^multivariate_normal +scale_tril ", listed, re.M) and "log_diag_tril" in listed  # columns as wide as the longest name
    with pytest.raises(SystemExit) as done:
        main(["eval", "multivariate_normal", "--x", "1,2", "--loc", "0,0", "--scale-tril", "1,0;0.5,2", "--format", "json"])
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out)
    # z = (1, 0.75), L⁻ᵀz = (0.8125, 0.375): by hand
    np.testing.assert_allclose(result["eligibility"]["loc"], [0.8125, 0.375])
    np.testing.assert_allclose(result["eligibility"]["scale_tril"], [[0.8125 - 1, 0], [0.375, 0.375 * 0.75 - 0.5]])


_RUN_EXPORTED = """
import sys, json, importlib.util
sys.modules["sympy"] = None
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import numpy as np
args = {k: np.array(v) for k, v in json.loads(sys.argv[2]).items()}
print(json.dumps({k: v.tolist() for k, v in module.eligibility(**args).items()}))
"""


@pytest.mark.parametrize("param", PARAMS)
def test_exported_module_runs_without_sympy(param, tmp_path):
    target = tmp_path / f"mvn_{param}.py"
    with pytest.raises(SystemExit) as done:
        main(["export", "multivariate_normal", "--param", param, "-o", str(target)])
    assert done.value.code == 0
    args, _ = random_case(np.random.default_rng(5), (3,), 4, param)
    run = subprocess.run([sys.executable, "-c", _RUN_EXPORTED, str(target), json.dumps({k: v.tolist() for k, v in args.items()})],
                         capture_output=True, text=True, check=True)
    expected = symelig.derive("multivariate_normal", param).eligibility(**args)
    for name, value in json.loads(run.stdout).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-12)


# torch -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("d", [1, 3, 8])
def test_matches_torch_autograd(param, d):
    torch = pytest.importorskip("torch")
    from torch.distributions import MultivariateNormal

    rng = np.random.default_rng(10 + d)
    args, _ = random_case(rng, (64,), d, param)
    t = {n: torch.tensor(v, requires_grad=n != "x") for n, v in args.items()}
    if param == "scale_tril":
        L = t["scale_tril"]
    else:
        A = t["log_diag_tril"]
        L = torch.tril(A, -1) + torch.diag_embed(torch.exp(torch.diagonal(A, dim1=-2, dim2=-1)))
    log_p = MultivariateNormal(t["loc"], scale_tril=L).log_prob(t["x"])
    log_p.sum().backward()
    d_ = symelig.derive("multivariate_normal", param)
    assert relative_error(d_.log_prob(**args), log_p.detach().numpy()) < 1e-10
    ours = d_.eligibility(**args)
    assert relative_error(ours["loc"], t["loc"].grad.numpy()) < 1e-10
    expected = t[param].grad.numpy()
    if param == "scale_tril":
        expected = np.tril(expected)  # autograd of a full matrix: the upper part is not a parameter
    assert relative_error(ours[param], expected) < 1e-10
    on_torch = d_.eligibility(**{n: torch.tensor(v) for n, v in args.items()})  # the array API kernels
    for name, value in on_torch.items():
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
        assert relative_error(value.numpy(), ours[name]) < 1e-12


@pytest.mark.parametrize("param", PARAMS)
def test_array_api_substitution_without_torch(param):
    """The array API kernels' own substitution (what jax or cupy arrays get), run on numpy arrays."""
    args, _ = random_case(np.random.default_rng(6), (5,), 4, param)
    d = symelig.derive("multivariate_normal", param)
    generic, expected = d.array_api_kernels.eligibility(**args), d.eligibility(**args)
    for name in expected:
        np.testing.assert_allclose(generic[name], expected[name], rtol=1e-12)
    np.testing.assert_allclose(d.array_api_kernels.fisher(args["loc"], args[param]), d.fisher(loc=args["loc"], **{param: args[param]}),
                               rtol=1e-12)


def test_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    args, _ = random_case(np.random.default_rng(8), (5,), 3, "log_diag_tril", np.float32)
    d = symelig.derive("multivariate_normal", "log_diag_tril")
    got = d.eligibility(**{n: jnp.asarray(v) for n, v in args.items()})
    expected = d.eligibility(**{n: v.astype(np.float64) for n, v in args.items()})
    for name in expected:
        assert got[name].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got[name]), expected[name], rtol=1e-4, atol=1e-4)


def test_torch_tensors_are_checked():
    torch = pytest.importorskip("torch")
    with pytest.raises(SymeligError, match="must be lower triangular"):
        symelig.derive("multivariate_normal").eligibility(torch.zeros(2), loc=torch.zeros(2), scale_tril=torch.ones(2, 2, dtype=torch.float64))
