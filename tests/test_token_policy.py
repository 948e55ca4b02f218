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
