"""Cross-check against PyTorch autograd on torch.distributions (skipped without torch)."""
from __future__ import annotations

import numpy as np
import pytest

import symelig

from conftest import random_arguments

torch = pytest.importorskip("torch")
D = torch.distributions


def _log_prob(entry, x, total_count, theta):
    """The PyTorch log-likelihood of each entry, as a PyTorch user writes it."""
    key = (entry.family, entry.param)
    if key == ("categorical", "probs"):
        return D.Categorical(probs=theta).log_prob(x)
    if key == ("categorical", "logits"):
        return D.Categorical(logits=theta).log_prob(x)
    if key == ("categorical", "normalized_probs"):
        # free coordinates: no distribution normalizes; the log of the entry is the definition
        return torch.log(theta).gather(-1, x[..., None])[..., 0]
    if key == ("multinomial", "probs"):
        return D.Multinomial(int(total_count), probs=theta).log_prob(x)
    if key == ("multinomial", "logits"):
        return D.Multinomial(int(total_count), logits=theta).log_prob(x)
    if key == ("multinomial", "normalized_probs"):
        return (torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1) + torch.xlogy(x, theta).sum(-1))
    pytest.skip(f"no PyTorch counterpart for {key}")


def test_eligibility_matches_torch_autograd(entry):
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(11)
    args = random_arguments(d, rng, batch=(5,), size=6)
    if entry.arguments:  # torch.distributions.Multinomial takes one total_count per distribution
        args["total_count"] = np.full(5, 7)
        args["x"] = rng.multinomial(7, np.full(6, 1 / 6), size=5)
    (name,) = d.parameters
    theta = torch.tensor(args[name], dtype=torch.float64, requires_grad=True)
    x = torch.tensor(args["x"])
    if entry.family == "multinomial":
        x = x.double()
    total = args.get("total_count", np.array([0]))[0]
    log_p = _log_prob(entry, x, total, theta)
    log_p.sum().backward()
    np.testing.assert_allclose(d.log_prob(**args), log_p.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.eligibility(**args)[name], theta.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_seed_reproduces_pytorch_probs_grad():
    """The founding question: backward of exp(log_prob) gives [0.31, -0.69, -0.69, -0.69]."""
    probs = torch.tensor([[0.69, 0.1, 0.2, 0.01]], dtype=torch.float64, requires_grad=True)
    torch.exp(D.Categorical(probs=probs).log_prob(torch.tensor([0]))).backward()
    d = symelig.derive("categorical", "probs")
    p = probs.detach().numpy()
    gradient = np.exp(d.log_prob([0], probs=p))[:, None] * d.eligibility([0], probs=p)["probs"]
    np.testing.assert_allclose(gradient, probs.grad.numpy(), rtol=1e-12)
