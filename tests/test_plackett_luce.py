"""plackett_luce (issue 15, part 3) against autograd of a plain PyTorch implementation of the
log-likelihood (PyTorch has no Plackett–Luce class): log p and the eligibility for full
permutations (k = K), top-k lists and k = 1, float64 to 1e-10 and float32 to 1e-5; the one-line
errors for invalid orderings, in the API and the CLI."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import symelig
from symelig import SymeligError

torch = pytest.importorskip("torch")

K, BATCH = 7, 64


def torch_log_prob(logits, order):
    """Σ_r log softmax(z over the categories not yet placed)_{x_r}, one step at a time: the
    textbook definition, written without anything of symelig's."""
    placed = torch.zeros_like(logits, dtype=torch.bool)
    total = torch.zeros(logits.shape[:-1], dtype=logits.dtype)
    for r in range(order.shape[-1]):
        step = order[..., r:r + 1]
        total = total + torch.log_softmax(logits.masked_fill(placed, -torch.inf), -1).gather(-1, step)[..., 0]
        placed = placed.scatter(-1, step, True)
    return total


def _reference(logits, order):
    z = torch.tensor(logits, requires_grad=True)
    log_p = torch_log_prob(z, torch.tensor(order))
    log_p.sum().backward()
    return log_p.detach().numpy(), z.grad.numpy()


def _batch(rng, dtype, placed):
    logits = rng.normal(scale=3.0, size=(BATCH, K)).astype(dtype)
    order = np.argsort(rng.random((BATCH, K)), axis=-1)[:, :placed]
    return logits, order


@pytest.mark.parametrize("placed", [K, 1, 3], ids=["k=K", "k=1", "k=3"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"])
def test_log_prob_and_eligibility_match_autograd(dtype, rtol, placed):
    logits, order = _batch(np.random.default_rng(placed), dtype, placed)
    d = symelig.derive("plackett_luce", "logits")
    want_log_p, want_e = _reference(logits.astype(np.float64), order)  # float64 truth for both
    e = d.eligibility(order, logits=logits)["logits"]
    log_p = d.log_prob(order, logits=logits)
    assert e.dtype == dtype and log_p.dtype == dtype and e.shape == (BATCH, K)
    np.testing.assert_allclose(e, want_e, rtol=rtol, atol=rtol * np.abs(want_e).max())
    np.testing.assert_allclose(log_p, want_log_p, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(e.sum(-1), 0, atol=rtol * 10 * np.abs(want_e).max())  # z and z + c: the same law


def test_the_array_api_kernels_on_torch_tensors_match_autograd():
    rng = np.random.default_rng(5)
    logits, order = _batch(rng, np.float64, 4)
    d = symelig.derive("plackett_luce", "logits")
    e = d.eligibility(torch.tensor(order), logits=torch.tensor(logits))["logits"]
    assert isinstance(e, torch.Tensor)
    np.testing.assert_allclose(e.numpy(), _reference(logits, order)[1], rtol=1e-10, atol=1e-12)


def test_a_dominant_ordering_keeps_its_digits():
    """The ordering that follows logits 40 apart: each step's probability is 1 − e^-40; log p and
    the eligibility of the placed categories are O(e^-40), not 0 from 1 − 1."""
    d = symelig.derive("plackett_luce", "logits")
    logits = np.array([80.0, 40.0, 0.0])
    order = np.array([0, 1, 2])
    log_p = d.log_prob(order, logits=logits)
    assert log_p == pytest.approx(-(np.log1p(np.exp(-40.0) + np.exp(-80.0)) + np.log1p(np.exp(-40.0))), rel=1e-12)
    e = d.eligibility(order, logits=logits)["logits"]
    assert e[0] == pytest.approx(np.exp(-40.0), rel=1e-9)


@pytest.mark.parametrize("order,message", [
    ([2, 0, 2], r"^x = \[2, 0, 2\] places category 2 twice: x must be an ordering of distinct categories$"),
    ([2, 0, 7], r"^x\[2\] = 7 is not allowed: x must hold category indices in \{0, …, 3\}$"),
    ([0, 1, 2, 3, 0], r"^x places 5 categories but there are 4: x must be an ordering of at most K = 4 distinct categories$"),
    ([0, -1], r"^x\[1\] = -1 is not allowed"),
    ([0.0, 1.5], r"^x\[1\] = 1.5 is not allowed: x must hold integer category indices$"),
])
def test_an_invalid_ordering_is_a_one_line_error(order, message):
    d = symelig.derive("plackett_luce", "logits")
    with pytest.raises(SymeligError, match=message):
        d.eligibility(np.array(order), logits=np.zeros(4))


def test_the_cli_refuses_an_invalid_ordering_in_one_line():
    run = subprocess.run([sys.executable, "-m", "symelig", "eval", "plackett_luce", "--logits", "1,2,0.5,-1", "--x", "2,0,2"],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == ["symelig: error: x = [2, 0, 2] places category 2 twice: x must be an ordering of distinct categories"]
