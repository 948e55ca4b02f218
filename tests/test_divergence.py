"""Closed-form entropy and KL divergence against PyTorch (entropy(), kl_divergence, autograd)
and, where PyTorch registers nothing, against Monte Carlo (10⁶ samples, five standard errors)."""
from __future__ import annotations

import numpy as np
import pytest

import symelig
from symelig import constraints
from symelig.entropy_kl import closed_form
from symelig.errors import SymeligError

from conftest import moderate_arguments

torch = pytest.importorskip("torch")
from test_torch import _RTOL, _canonical  # noqa: E402  (the canonical parameters, through the entry's own map)

D = torch.distributions
# torch's trigamma (the derivative of its digamma) is good to ~3e-9 relative: symelig's gradient
# of the gamma KL matches mpmath to 1e-15 where torch's autograd is 2.5e-9 off
GRAD_RTOL = 1e-8
GRAD_ATOL = 1e-9   # and absolutely to ~4e-10 (beta entropy, where terms cancel): ours agrees with mpmath to 1e-16
BUILTIN = [e for e in symelig.catalog() if e.builtin]


def _has(quantity, e) -> bool:
    try:
        closed_form(quantity, e.family, e.param)
        return True
    except SymeligError:
        return False


def _batch(d, seed, size=5):
    """Three moderate parameter sets stacked into a batch of 3."""
    rng = np.random.default_rng(seed)
    rows = [moderate_arguments(d, rng, size=size) for _ in range(3)]
    names = [*d.symbolic.family.arguments, *d.parameters]
    out = {n: np.stack([np.asarray(r[n], dtype=np.float64) for r in rows]) for n in names}
    for a, c in d.symbolic.family.arguments.items():  # one total_count for p and q (bounds: p's own)
        if c.lower == 0:
            out[a] = np.full(3, 6.0)
    return out


def _torch(d, params, size=5, grad=False):
    family = d.symbolic.family
    theta = {n: torch.tensor(params[n], requires_grad=grad) for n in d.parameters}
    extra = {a: torch.tensor(params[a]) for a in family.arguments}
    return getattr(D, family.torch)(**_canonical(d, theta, size), **extra, validate_args=False), theta


def _sample(d, params, n):
    """n samples per batch row, (n, 3, …): torch's sampler, or numpy's for the multinomial
    (torch's takes one int total_count for the whole batch)."""
    if d.symbolic.family.name == "multinomial":
        rng = np.random.default_rng(4)
        probs = _canonical(d, {m: torch.tensor(params[m]) for m in d.parameters}, params[d.parameters[0]].shape[-1])["probs"]
        probs = (probs / probs.sum(-1, keepdim=True)).numpy()
        rows = [rng.multinomial(int(params["total_count"][b]), probs[b], size=n) for b in range(probs.shape[0])]
        return np.stack(rows, axis=1)
    if d.symbolic.family.name == "truncated_normal":  # torch has no class: scipy's sampler
        from scipy import stats

        canonical = _canonical(d, {m: torch.tensor(params[m]) for m in d.parameters}, 0)
        loc, scale = canonical["loc"].numpy(), canonical["scale"].numpy()
        a, b = (params["low"] - loc) / scale, (params["high"] - loc) / scale
        return stats.truncnorm.rvs(a, b, loc=loc, scale=scale, size=(n,) + loc.shape, random_state=np.random.default_rng(4))
    P, _ = _torch(d, params)
    return P.sample((n,)).numpy()


def _pair_registered(family) -> bool:
    cls = getattr(D, family.torch) if family.torch else None
    return cls is not None and (cls, cls) in D.kl._KL_REGISTRY


def _project(d, name, value):
    """torch renormalizes simplex coordinates: compare on directions within the simplex."""
    if d.symbolic.parametrization.parameters[name] is constraints.simplex:
        return value - value.mean(-1, keepdims=True)
    return value


@pytest.mark.parametrize("e", BUILTIN, ids=lambda e: f"{e.family}-{e.param}")
def test_kl_matches_torch_or_monte_carlo(e):
    d = symelig.derive(e.family, e.param)
    family = d.symbolic.family
    if not _has("kl", e):
        with pytest.raises(SymeligError, match=r"^[^\n]*has no closed-form KL divergence"):
            d.kl(_batch(d, 0), _batch(d, 1))
        return
    p, q = _batch(d, 0), _batch(d, 1)
    ours = d.kl(p, q)
    assert ours.shape == (3,)
    if _pair_registered(family):
        P, tp = _torch(d, p, grad=True)
        Q, tq = _torch(d, q, grad=True)
        theirs = D.kl_divergence(P, Q)
        rtol = max(_RTOL.get(e.family, 1e-10), 1e-10)
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=1e-12)
        theirs.sum().backward()
        gradient = d.kl_gradient(p, q)
        for side, theta in (("p", tp), ("q", tq)):
            for n in d.parameters:
                np.testing.assert_allclose(_project(d, n, gradient[side][n]), _project(d, n, theta[n].grad.numpy()),
                                           rtol=max(rtol, GRAD_RTOL), atol=GRAD_ATOL, err_msg=f"{side}.{n}")
        return
    # no PyTorch formula: Monte Carlo under p, with symelig's log_prob (not the closed form)
    n = 10**6 if not d.symbolic.is_vector else 2 * 10**5
    x = _sample(d, p, n)
    difference = d.log_prob(x, **p) - d.log_prob(x, **q)
    mean, se = difference.mean(0), difference.std(0) / np.sqrt(n)
    assert np.all(np.abs(mean - ours) < 5 * se), (mean, ours, se)


@pytest.mark.parametrize("e", BUILTIN, ids=lambda e: f"{e.family}-{e.param}")
def test_entropy_matches_torch_or_monte_carlo(e):
    d = symelig.derive(e.family, e.param)
    p = _batch(d, 2)
    if not _has("entropy", e):
        with pytest.raises(SymeligError, match=r"^[^\n]*has no closed-form entropy"):
            d.entropy(**p)
        return
    ours = d.entropy(**p)
    if d.symbolic.family.torch is None:  # no torch class (truncated normal): Monte Carlo below
        theirs = None
    else:
        P, theta = _torch(d, p, grad=True)
        try:
            theirs = P.entropy()
        except NotImplementedError:
            theirs = None
    if theirs is not None:
        rtol = max(_RTOL.get(e.family, 1e-10), 1e-10)
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=1e-12)
        theirs.sum().backward()
        gradient = d.entropy_gradient(**p)
        for n in d.parameters:
            # a parameter the entropy does not depend on (loc) gets no gradient from autograd
            theirs_n = np.zeros_like(gradient[n]) if theta[n].grad is None else theta[n].grad.numpy()
            np.testing.assert_allclose(_project(d, n, gradient[n]), _project(d, n, theirs_n),
                                       rtol=max(rtol, GRAD_RTOL), atol=GRAD_ATOL, err_msg=n)
        return
    n = 10**6
    x = _sample(d, p, n)
    values = -d.log_prob(x, **p)
    mean, se = values.mean(0), values.std(0) / np.sqrt(n)
    assert np.all(np.abs(mean - ours) < 5 * se), (mean, ours, se)


def test_kl_batches_and_keeps_float32():
    d = symelig.derive("categorical", "logits")
    rng = np.random.default_rng(3)
    z, zq = rng.normal(size=(4, 1, 6)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    value = d.kl({"logits": z}, {"logits": zq})
    assert value.shape == (4, 5) and value.dtype == np.float32
    g = d.kl_gradient({"logits": z}, {"logits": zq})
    assert g["p"]["logits"].shape == (4, 5, 6) and g["q"]["logits"].dtype == np.float32
    # the softmax and log-sum-exp are max-shifted: logits of 1000 do not overflow
    assert np.isfinite(d.entropy(logits=np.array([1000.0, 0.0, -1000.0])))


def test_kl_bad_input_is_one_line():
    d = symelig.derive("normal", "scale")
    with pytest.raises(SymeligError, match="scale"):
        d.kl({"loc": 0.0, "scale": -1.0}, {"loc": 0.0, "scale": 1.0})
    with pytest.raises(SymeligError, match="missing argument 'scale'"):
        d.kl({"loc": 0.0}, {"loc": 0.0, "scale": 1.0})
    with pytest.raises(SymeligError, match="q must be a dict"):
        d.kl({"loc": 0.0, "scale": 1.0}, [1.0])
    b = symelig.derive("binomial", "probs")
    with pytest.raises(SymeligError, match="same total_count"):
        b.kl({"total_count": 5, "probs": 0.3}, {"total_count": 6, "probs": 0.3})
