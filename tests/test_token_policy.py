"""symelig.token_policy_gradient (issue 15, part 4) against PyTorch autograd of
``(A * log_softmax(h @ W.T / τ).gather(x)).sum()``, chunked so that no T × V array exists."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import symelig
from symelig import SymeligError

torch = pytest.importorskip("torch")


def _problem(rng, T, V, d, dtype):
    hidden = rng.normal(size=(T, d)).astype(dtype)
    weight = rng.normal(scale=0.5, size=(V, d)).astype(dtype)
    return hidden, weight, rng.integers(0, V, T), rng.normal(size=T).astype(dtype)


def _autograd(hidden, weight, tokens, advantages, tau):
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    t = torch.tensor(tau, dtype=h.dtype, requires_grad=True)
    log_pi = torch.log_softmax(h @ w.T / t, -1)
    objective = (torch.tensor(advantages) * log_pi.gather(1, torch.tensor(tokens)[:, None])[:, 0]).sum()
    objective.backward()
    entropy = -(log_pi.exp() * log_pi).sum(-1)
    return {"objective": objective, "hidden": h.grad, "weight": w.grad, "temperature": t.grad, "entropy": entropy}


def _relative(got, want):
    """max |got − want| / max |want|, per output."""
    got = got.numpy() if hasattr(got, "numpy") else np.asarray(got)
    want = want.detach().numpy()
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("rows", [1, 7, 1000], ids=["one-token-chunks", "chunks", "one-chunk"])
def test_matches_autograd(library, dtype, rtol, rows):
    T, V, d, tau = 29, 61, 12, 0.8
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(3), T, V, d, dtype)
    want = _autograd(hidden, weight, tokens, advantages, tau)
    args = (hidden, weight, tokens, advantages)
    if library == "torch":
        args = tuple(torch.tensor(a) for a in args)
    got = symelig.token_policy_gradient(*args, temperature=tau, chunk_bytes=rows * V * np.dtype(dtype).itemsize)
    for name, value in want.items():
        assert type(got[name]) is type(args[0]) or np.ndim(got[name]) == 0
        assert got[name].dtype == args[0].dtype, name
        assert tuple(got[name].shape) == tuple(value.shape), name
        assert _relative(got[name], value) < rtol, name


def test_no_tokens_by_vocabulary_array():
    """Peak memory beyond the inputs and outputs stays at a few chunks, far below one T × V array."""
    T, V, d = 512, 4000, 8
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(4), T, V, d, np.float64)
    symelig.token_policy_gradient(hidden, weight, tokens, advantages, chunk_bytes=8 * V * 8)  # derive, compile
    tracemalloc.start()
    symelig.token_policy_gradient(hidden, weight, tokens, advantages, chunk_bytes=8 * V * 8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outputs = (T * d + V * d + 2 * T) * 8
    assert peak - outputs < T * V * 8 / 8, peak


@pytest.mark.parametrize("change,message", [
    ({"tokens": np.array([0, 5, 61])}, r"^tokens\[2\] = 61 is not allowed: tokens must be in \{0, …, 60\}"),
    ({"temperature": 0.0}, r"^temperature = 0.0 is not allowed"),
    ({"advantages": np.ones(2)}, r"^advantages must be \(3,\)"),
    ({"weight": np.ones((61, 4))}, r"^hidden must be \(T, d\) and weight \(V, d\) with the same d"),
])
def test_bad_input_is_one_line(change, message):
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(5), 3, 61, 5, np.float64)
    args = {"hidden": hidden, "weight": weight, "tokens": tokens, "advantages": advantages, "temperature": 1.0, **change}
    with pytest.raises(SymeligError, match=message) as err:
        symelig.token_policy_gradient(**args)
    assert "\n" not in str(err.value)


def test_the_formulas_come_from_the_engine():
    """The kernels are the categorical logits entry reparametrized by logits = u/τ."""
    from symelig import token_policy

    d = token_policy.derivation()
    assert d.family == "categorical" and set(d.parameters) == {"u", "tau"}
    assert r"\operatorname{softmax}" in d.latex()


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_torch_in_place_path_matches_autograd(dtype, rtol, tau):
    """The torch path (matmul into one block, in-place softmax, addmm_ into ∂/∂W) against
    autograd, several chunks and a last short one, on inputs that require grad themselves."""
    T, V, d = 23, 97, 16
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(6), T, V, d, np.float64)
    want = _autograd(hidden, weight, tokens, advantages, tau)
    args = [torch.tensor(v, dtype=dtype if v.dtype.kind == "f" else None) for v in (hidden, weight, tokens, advantages)]
    args[0].requires_grad_()
    got = symelig.token_policy_gradient(*args, temperature=tau, chunk_bytes=5 * V * args[0].element_size())
    for name, value in want.items():
        assert got[name].dtype == dtype and not got[name].requires_grad, name
        assert _relative(got[name].double(), value) < rtol, name


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_in_place_path_matches_the_generated_kernels(library):
    """The in-place evaluation against the engine's generated array-API kernels (the path kept
    for immutable arrays), with extreme logits where softmax is one-hot in floating point."""
    from array_api_compat import array_namespace

    from symelig import token_policy

    T, V, d, tau = 17, 40, 6, 0.05
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(7), T, V, d, np.float64)
    tokens[:5] = np.argmax(hidden[:5] @ weight.T, axis=1)  # the dominant category: log π ≈ 0
    args = (hidden, weight, tokens, advantages) if library == "numpy" else tuple(torch.tensor(v) for v in (hidden, weight, tokens, advantages))
    xp = array_namespace(args[0])
    fused = token_policy._in_place_chunks(*args, tau, rows=4)
    generated = token_policy._kernel_chunks(xp, *args, tau, rows=4, chunk_bytes=4 * V * 8)
    for name, got, want in zip(("log_prob", "tau", "hidden", "weight"), fused, generated):
        got, want = np.asarray(got), np.asarray(want)
        assert np.all(np.isfinite(got)), name
        assert np.max(np.abs(got - want)) <= 1e-10 * max(1.0, np.max(np.abs(want))), name


def test_linear_forms_read_off_the_derivation():
    """The coefficients the in-place path uses, against the hand formulas (test oracle only):
    log π = u_x/τ − lse, ∂/∂u = −softmax/τ + δ/τ, ∂/∂τ = (E_π u − u_x)/τ²."""
    from symelig import token_policy

    forms = token_policy.linear_forms()
    tau = 0.7
    np.testing.assert_allclose(forms["log_prob"](tau), [1 / tau, -1], rtol=1e-15)
    np.testing.assert_allclose(forms["u"](tau), [-1 / tau, 1 / tau], rtol=1e-15)
    np.testing.assert_allclose(forms["tau"](tau), [1 / tau**2, -1 / tau**2], rtol=1e-15)


def test_a_formula_outside_the_linear_forms_is_refused():
    import sympy

    from symelig import token_policy

    tau, a, b = sympy.symbols("tau a b", positive=True)
    with pytest.raises(SymeligError, match=r"^the derivation's tau = .* is not linear in a, b with coefficients in tau alone$"):
        token_policy._coefficients("tau", a**2 / tau + b, (a, b), tau)
    with pytest.raises(SymeligError, match="not linear"):
        token_policy._coefficients("tau", a * b, (a,), tau)


def test_immutable_arrays_take_the_generated_kernels():
    jnp = pytest.importorskip("jax.numpy")
    T, V, d, tau = 11, 30, 5, 0.9
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(8), T, V, d, np.float32)
    want = _autograd(hidden, weight, tokens, advantages, tau)
    got = symelig.token_policy_gradient(*(jnp.asarray(v) for v in (hidden, weight, tokens, advantages)), temperature=tau, chunk_bytes=4 * V * 4)
    for name, value in want.items():
        assert got[name].dtype == jnp.float32, name
        assert _relative(np.asarray(got[name]), value) < 1e-5, name


def test_no_tokens():
    hidden, weight = np.ones((0, 4)), np.ones((5, 4))
    out = symelig.token_policy_gradient(hidden, weight, np.zeros(0, dtype=int), np.zeros(0))
    assert out["objective"] == 0 and out["hidden"].shape == (0, 4) and out["entropy"].shape == (0,)
    assert np.array_equal(out["weight"], np.zeros((5, 4)))


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_no_negative_zero(library):
    """Tokens with advantage 0 contribute ±0 products; no output holds −0.0 (the project's standard)."""
    T, V, d = 6, 9, 3
    hidden, weight, tokens, advantages = _problem(np.random.default_rng(9), T, V, d, np.float64)
    advantages[:] = 0.0
    hidden[:, 0] = 0.0
    args = (hidden, weight, tokens, advantages) if library == "numpy" else tuple(torch.tensor(v) for v in (hidden, weight, tokens, advantages))
    out = symelig.token_policy_gradient(*args, temperature=0.5, chunk_bytes=2 * V * 8)
    for name, value in out.items():
        value = np.asarray(value)
        assert not np.any(np.signbit(value) & (value == 0)), name
