"""masked_categorical (issue 15, part 1) against PyTorch autograd of the masked logits
``Categorical(logits=z.masked_fill(~m, -inf))``: log p, the eligibility (exactly 0 on masked
categories), the Fisher information diag(π) − ππᵀ on the allowed set, and the one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

import symelig
from symelig import SymeligError

torch = pytest.importorskip("torch")

K, BATCH = 7, 64


def _batch(rng, dtype):
    """Logits, masks (row 0 allows one category only), and an allowed sample per row."""
    logits = rng.normal(scale=3.0, size=(BATCH, K)).astype(dtype)
    mask = rng.random((BATCH, K)) < 0.5
    mask[np.arange(BATCH), rng.integers(0, K, BATCH)] = True
    mask[0] = False
    mask[0, 3] = True  # a single allowed category: π = onehot, e = 0 everywhere
    x = (rng.random((BATCH, K)) * mask).argmax(-1)
    return logits, mask, x


def _torch_reference(logits, mask, x):
    z = torch.tensor(logits, requires_grad=True)
    log_p = torch.distributions.Categorical(logits=z.masked_fill(~torch.tensor(mask), -torch.inf)).log_prob(torch.tensor(x))
    log_p.sum().backward()
    return log_p.detach().numpy(), z.grad.numpy()


def _max_relative(got, want):
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300 if got.dtype == np.float64 else 1e-30)))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"])
def test_logits_match_autograd_and_vanish_on_masked_categories(dtype, rtol):
    logits, mask, x = _batch(np.random.default_rng(0), dtype)
    d = symelig.derive("masked_categorical", "logits")
    want_log_p, want_e = _torch_reference(logits, mask, x)
    e = d.eligibility(x, mask=mask, logits=logits)["logits"]
    assert e.dtype == dtype
    assert np.all(e[~mask] == 0)
    assert np.all(e[0] == 0)  # one allowed category: log p = 0 whatever the logits
    np.testing.assert_allclose(e, want_e, rtol=rtol, atol=rtol * np.abs(want_e).max())
    np.testing.assert_allclose(d.log_prob(x, mask=mask, logits=logits), want_log_p, rtol=rtol, atol=rtol)


def test_probs_match_autograd():
    rng = np.random.default_rng(1)
    _, mask, x = _batch(rng, np.float64)
    probs = rng.gamma(1.0, size=(BATCH, K)) + 1e-3
    p = torch.tensor(probs, requires_grad=True)
    log_p = torch.distributions.Categorical(probs=p * torch.tensor(mask)).log_prob(torch.tensor(x))
    log_p.sum().backward()
    d = symelig.derive("masked_categorical", "probs")
    e = d.eligibility(x, mask=mask, probs=probs)["probs"]
    assert np.all(e[~mask] == 0)
    np.testing.assert_allclose(e, p.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(d.log_prob(x, mask=mask, probs=probs), log_p.detach().numpy(), rtol=1e-10, atol=1e-14)


def test_fisher_is_the_softmax_covariance_on_the_allowed_set():
    logits, mask, _ = _batch(np.random.default_rng(2), np.float64)
    d = symelig.derive("masked_categorical", "logits")
    fisher = d.second_order_kernels.dense(d.fisher(mask=mask, logits=logits))
    pi = torch.softmax(torch.tensor(logits).masked_fill(~torch.tensor(mask), -torch.inf), -1).numpy()
    np.testing.assert_allclose(fisher, pi[..., :, None] * np.eye(K) - pi[..., :, None] * pi[..., None, :], rtol=1e-10, atol=1e-15)
    assert np.all(fisher[~mask] == 0)


def test_a_masked_sample_or_an_empty_row_is_a_one_line_error():
    d = symelig.derive("masked_categorical", "logits")
    mask = np.array([[True, False, True], [False, True, False]])
    logits = np.zeros((2, 3))
    with pytest.raises(SymeligError, match=r"^x\[1\] = 2 is a masked category: .*mask allows") as err:
        d.eligibility(np.array([0, 2]), mask=mask, logits=logits)
    assert "\n" not in str(err.value)
    mask[1] = False
    with pytest.raises(SymeligError, match=r"^mask at batch index \[1\] allows no category"):
        d.log_prob(np.array([0, 1]), mask=mask, logits=logits)
    with pytest.raises(SymeligError, match="mask must be booleans"):
        d.log_prob(np.array([0, 1]), mask=mask.astype(float), logits=logits)
