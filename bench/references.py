"""What a careful user would write by hand: the references the generated kernels are timed against.

These formulas are typed in on purpose (they are the competition, not the product): one pass per
operation, in place wherever the buffer is ours, no temporaries of size B×K×K, dtype kept.
Each takes the same arguments as the generated ``eligibility`` and returns the same dict.
"""
from __future__ import annotations

import numpy as np


def _rows(x):
    return np.arange(x.shape[0])


def categorical_logits(x, logits):
    e = logits - logits.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    np.multiply(e, -1 / e.sum(axis=-1, keepdims=True), out=e)
    e[_rows(x), x] += 1
    return {"logits": e}


def categorical_probs(x, probs):
    total = probs.sum(axis=-1)
    e = np.empty_like(probs)
    e[...] = (-1 / total)[:, None]
    rows = _rows(x)
    e[rows, x] += 1 / probs[rows, x]
    return {"probs": e}


def multinomial_logits(x, total_count, logits):
    e = logits - logits.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    np.multiply(e, -total_count[:, None] / e.sum(axis=-1, keepdims=True), out=e)
    np.add(e, x, out=e)
    return {"logits": e}


def normal_scale(x, loc, scale):
    inv = 1 / scale
    z = x - loc
    z *= inv
    e_loc = z * inv
    np.multiply(z, z, out=z)
    z -= 1
    z *= inv
    return {"loc": e_loc, "scale": z}


def bernoulli_logits(x, logits):
    # x − sigmoid(z), with sigmoid from the numerically stable tanh form
    e = np.multiply(logits, 0.5)
    np.tanh(e, out=e)
    e *= -0.5
    e += x - 0.5
    return {"logits": e}


def normal_mixture_log_scale(x, logits, loc, log_scale):
    # responsibilities r = softmax(z − s − w²/2) and π = softmax(z), each max-shifted in place
    inv = np.exp(-log_scale)
    w = x[:, None] - loc
    w *= inv
    r = np.multiply(w, w)
    r *= -0.5
    r += logits
    r -= log_scale
    r -= r.max(axis=-1, keepdims=True)
    np.exp(r, out=r)
    r /= r.sum(axis=-1, keepdims=True)
    e_z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(e_z, out=e_z)
    e_z /= -e_z.sum(axis=-1, keepdims=True)
    e_z += r
    e_loc = r * w
    e_loc *= inv
    np.multiply(w, w, out=w)
    w -= 1
    w *= r
    return {"logits": e_z, "loc": e_loc, "log_scale": w}


NUMPY = {
    ("normal_mixture", "log_scale"): normal_mixture_log_scale,
    ("categorical", "logits"): categorical_logits,
    ("categorical", "probs"): categorical_probs,
    ("multinomial", "logits"): multinomial_logits,
    ("normal", "scale"): normal_scale,
    ("bernoulli", "logits"): bernoulli_logits,
}


def torch_nograd(torch):
    """Eligibilities written by hand in torch, no autograd: what a torch user would type."""

    def categorical_logits(x, logits):
        e = torch.softmax(logits, -1).neg_()
        e.scatter_add_(-1, x[:, None], torch.ones_like(e[:, :1]))
        return {"logits": e}

    def categorical_probs(x, probs):
        e = (-1 / probs.sum(-1, keepdim=True)).expand_as(probs).clone()
        e.scatter_add_(-1, x[:, None], 1 / probs.gather(-1, x[:, None]))
        return {"probs": e}

    def multinomial_logits(x, total_count, logits):
        return {"logits": x - total_count[:, None] * torch.softmax(logits, -1)}

    def normal_scale(x, loc, scale):
        z = (x - loc) / scale
        return {"loc": z / scale, "scale": (z * z - 1) / scale}

    def bernoulli_logits(x, logits):
        return {"logits": x - torch.sigmoid(logits)}

    def normal_mixture_log_scale(x, logits, loc, log_scale):
        inv = torch.exp(-log_scale)
        w = (x[:, None] - loc) * inv
        r = torch.softmax(logits - log_scale - 0.5 * w * w, -1)
        return {"logits": r - torch.softmax(logits, -1), "loc": r * w * inv, "log_scale": r * (w * w - 1)}

    return {
        ("normal_mixture", "log_scale"): normal_mixture_log_scale,
        ("categorical", "logits"): categorical_logits, ("categorical", "probs"): categorical_probs,
        ("multinomial", "logits"): multinomial_logits, ("normal", "scale"): normal_scale,
        ("bernoulli", "logits"): bernoulli_logits,
    }


def torch_references(torch):
    """{entry: (distributions autograd, fused-op autograd)}, each (x, **params) → grads."""
    from torch import distributions as D
    import torch.nn.functional as F

    # argument validation off, as in training loops that care about speed (and float32
    # simplex checks at K = 100000 would reject softmax outputs)
    D.Distribution.set_default_validate_args(False)

    def autograd(log_prob):
        def run(x, **params):
            leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            log_prob(x, **leaves).sum().backward()
            return {n: p.grad for n, p in leaves.items()}

        return run

    def mixture(x, logits, loc, log_scale):
        return D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(loc, log_scale.exp())).log_prob(x)

    def mixture_fused(x, logits, loc, log_scale):  # two logsumexps, the constant −½ log 2π left out
        w = (x[:, None] - loc) * torch.exp(-log_scale)
        return torch.logsumexp(logits - log_scale - 0.5 * w * w, -1) - torch.logsumexp(logits, -1)

    return {
        ("normal_mixture", "log_scale"): (autograd(mixture), autograd(mixture_fused)),
        ("categorical", "logits"): (
            autograd(lambda x, logits: D.Categorical(logits=logits).log_prob(x)),
            autograd(lambda x, logits: torch.log_softmax(logits, -1).gather(-1, x[:, None])),
        ),
        ("categorical", "probs"): (
            autograd(lambda x, probs: D.Categorical(probs=probs).log_prob(x)),
            autograd(lambda x, probs: probs.gather(-1, x[:, None]).log().squeeze(-1) - probs.sum(-1).log()),
        ),
        ("multinomial", "logits"): (
            autograd(lambda x, total_count, logits: D.Multinomial(int(total_count[0]), logits=logits).log_prob(x)),
            autograd(lambda x, total_count, logits: (x * torch.log_softmax(logits, -1)).sum(-1)),
        ),
        ("normal", "scale"): (
            autograd(lambda x, loc, scale: D.Normal(loc, scale).log_prob(x)),
            autograd(lambda x, loc, scale: -((x - loc) / scale) ** 2 / 2 - scale.log()),
        ),
        ("bernoulli", "logits"): (
            autograd(lambda x, logits: D.Bernoulli(logits=logits).log_prob(x)),
            autograd(lambda x, logits: -F.binary_cross_entropy_with_logits(logits, x, reduction="none")),
        ),
    }
