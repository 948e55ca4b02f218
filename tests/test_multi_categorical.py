"""multi_categorical (issue 15, part 2) against PyTorch autograd of SB3's MultiCategoricalDistribution
construction, one ``Categorical(logits=s)`` per piece s of ``torch.split(z, nvec, -1)``: log p
and the eligibility to 1e-10 (float64) and 1e-5 (float32), blocks of unequal sizes (1 included);
the engine's Fisher information, the block-diagonal softmax covariances; the one-line errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import symelig
from symelig import SymeligError

torch = pytest.importorskip("torch")

NVEC, BATCH = np.array([3, 1, 5, 2]), 64


def _reference(logits, x, nvec=NVEC):
    z = torch.tensor(logits, requires_grad=True)
    pieces = torch.split(z, [int(n) for n in nvec], -1)
    log_p = sum(torch.distributions.Categorical(logits=s).log_prob(torch.tensor(x[..., b])) for b, s in enumerate(pieces))
    log_p.sum().backward()
    return log_p.detach().numpy(), z.grad.numpy()


def _batch(rng, dtype):
    logits = rng.normal(scale=3.0, size=(BATCH, NVEC.sum())).astype(dtype)
    x = (rng.random((BATCH, len(NVEC))) * NVEC).astype(np.int64)
    return logits, x


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"])
def test_log_prob_and_eligibility_match_autograd(dtype, rtol):
    logits, x = _batch(np.random.default_rng(0), dtype)
    d = symelig.derive("multi_categorical", "logits")
    want_log_p, want_e = _reference(logits.astype(np.float64), x)
    e = d.eligibility(x, nvec=NVEC, logits=logits)["logits"]
    log_p = d.log_prob(x, nvec=NVEC, logits=logits)
    assert e.dtype == dtype and log_p.dtype == dtype and e.shape == logits.shape
    np.testing.assert_allclose(e, want_e, rtol=rtol, atol=rtol * np.abs(want_e).max())
    np.testing.assert_allclose(log_p, want_log_p, rtol=rtol, atol=rtol)
    assert np.all(e[:, 3] == 0)  # a block of one category: its action is certain


def test_the_array_api_kernels_on_torch_tensors_match_autograd():
    logits, x = _batch(np.random.default_rng(1), np.float64)
    d = symelig.derive("multi_categorical", "logits")
    e = d.eligibility(torch.tensor(x), nvec=torch.tensor(NVEC), logits=torch.tensor(logits))["logits"]
    assert isinstance(e, torch.Tensor)
    np.testing.assert_allclose(e.numpy(), _reference(logits, x)[1], rtol=1e-10, atol=1e-12)


def test_a_block_with_a_dominant_category_keeps_its_digits():
    d = symelig.derive("multi_categorical", "logits")
    logits, x, nvec = np.array([40.0, 0.0, 1.0, 2.0]), np.array([0, 1]), np.array([2, 2])
    log_p = d.log_prob(x, nvec=nvec, logits=logits)
    assert log_p == pytest.approx(-np.log1p(np.exp(-40.0)) - np.log1p(np.exp(-1.0)), rel=1e-12)
    e = d.eligibility(x, nvec=nvec, logits=logits)["logits"]
    assert e[0] == pytest.approx(np.exp(-40.0) / (1 + np.exp(-40.0)), rel=1e-12)  # 1 − softmax, not 1 − 1 = 0


def test_the_fisher_information_is_the_block_diagonal_softmax_covariance():
    """F = −H from the engine (H does not depend on x), evaluated for two blocks of sizes 2 and 3."""
    from sympy import IndexedBase, Symbol

    from symelig.family import K, j, l, n_blocks

    d = symelig.derive("multi_categorical", "logits")
    so = d.second_order
    assert so.fisher is not None and so.method.startswith("F = −E[H]")
    nvec, logits = [2, 3], np.array([0.3, -1.2, 2.0, 0.1, -0.7])
    s = d.symbolic.symbols
    expr = so.fisher[("logits", "logits")].subs({K: 5, n_blocks: 2})
    for _ in range(3):  # a block's start Σ_{c<b} n_c shows n_c only once written out
        expr = expr.subs({s["nvec"][b]: n for b, n in enumerate(nvec)}).doit()
    got = np.array([[float(expr.subs({j: a, l: b}).doit().subs({s["logits"][m]: v for m, v in enumerate(logits)}))
                     for b in range(5)] for a in range(5)])
    want = np.zeros((5, 5))
    for start, size in ((0, 2), (2, 3)):
        pi = np.exp(logits[start:start + size]) / np.exp(logits[start:start + size]).sum()
        want[start:start + size, start:start + size] = np.diag(pi) - np.outer(pi, pi)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert not isinstance(s["nvec"], Symbol) and isinstance(s["nvec"], IndexedBase)


@pytest.mark.parametrize("x,nvec,message", [
    ([0, 3], [2, 2], r"^x\[1\] = 3 is not allowed: block 1 has 2 categories, so x must be in \{0, …, 1\} there$"),
    ([0], [2, 2], r"^x has 1 entries along its last axis but nvec has 2 blocks: x must hold one category per block$"),
    ([0, 0], [2, 3], r"^nvec adds up to 5 but the logits have 4 entries: the blocks' sizes must add up to K$"),
    ([0, 0], [4, 0], r"^nvec\[1\] = 0 is not allowed: nvec must hold block sizes ≥ 1$"),
    ([0, 0], [[2, 2]], r"^nvec must be one vector of block sizes shared by the batch; got shape \(1, 2\)$"),
])
def test_invalid_samples_and_sizes_are_one_line_errors(x, nvec, message):
    d = symelig.derive("multi_categorical", "logits")
    with pytest.raises(SymeligError, match=message):
        d.eligibility(np.array(x), nvec=np.array(nvec), logits=np.zeros(4))


def test_the_cli_refuses_a_category_outside_its_block_in_one_line():
    run = subprocess.run([sys.executable, "-m", "symelig", "eval", "multi_categorical", "--nvec", "2,2",
                          "--logits", "1,2,0.5,-1", "--x", "0,2"], capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "block 1 has 2 categories" in run.stderr


def test_the_text_names_a_blocks_start_and_nothing_else():
    assert "i = o_b" in symelig.derive("multi_categorical", "logits").text()
    assert "o_" not in symelig.derive("categorical", "probs").text()  # Σ_i p_i is not a block's start
