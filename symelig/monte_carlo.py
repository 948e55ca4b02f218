"""Monte Carlo estimates of the entropy and KL divergence, with their standard errors, for any
catalog entry whose family declares a sampler (a ``sample`` staticmethod in its module, drawing
from numpy's Generator in the family's canonical parameters).

    H(p)      ≈ (1/N) Σ_n −log p(x_n | θ),                       x_n ∼ p
    KL(p ‖ q) ≈ (1/N) Σ_n [log p(x_n | θ_p) − log p(x_n | θ_q)],  x_n ∼ p

with standard error s/√N (s the sample standard deviation of the terms).  log p is the entry's
own generated ``log_prob`` kernel, and θ is mapped to the canonical parameters by a kernel of
the same core (:func:`symelig.emit.closed_form.canonical_source`).  The draws are taken in
blocks of at most ``BLOCK`` per batch element, the mean and variance merged block by block
(Chan et al.), so 10⁶ samples need no 10⁶-row arrays.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import SymeligError

BLOCK = 1 << 16


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value`` and its ``standard_error`` (arrays shaped like the
    batch), from ``samples`` draws per batch element."""

    value: np.ndarray
    standard_error: np.ndarray
    samples: int


def has_sampler(family_class) -> bool:
    return callable(getattr(family_class, "sample", None))


def _canonical(d):
    """The generated ``canonical(arguments, θ)`` of derivation ``d`` (kept on it: a --via
    derivation's map is its own, not the catalog's)."""
    function = d.__dict__.get("_canonical_kernel")
    if function is None:
        import types

        from .emit.closed_form import canonical_source

        module = types.ModuleType(f"symelig_generated_{d.family}_{d.param}_canonical")
        # our own printer's output over validated identifiers, never user text
        exec(compile(canonical_source(d.symbolic), f"<symelig {d.family} {d.param} canonical>", "exec"), module.__dict__)
        function = d.__dict__["_canonical_kernel"] = module.canonical
    return function


def estimate(d, quantity: str, sides: dict, samples: int, seed=None) -> Estimate:
    """The Monte Carlo ``quantity`` ("entropy" or "kl") of derivation ``d`` at the parameter dicts
    ``sides`` ({"p": …} or {"p": …, "q": …}), from ``samples`` draws of p per batch element."""
    from .derivation import _foreign

    cls = d.symbolic.family
    if not has_sampler(cls):
        raise SymeligError(f"{d.family} declares no sampler: no Monte Carlo {quantity} for it")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise SymeligError(f"samples must be an integer ≥ 2 (the standard error needs two), got {samples!r}")
    for side, params in sides.items():
        if not isinstance(params, dict):
            raise SymeligError(f"{side} must be a dict of {', '.join([*d.arguments, *d.parameters])}; got {type(params).__name__}")
        if _foreign(None, params):
            raise SymeligError("the Monte Carlo estimate draws with numpy's Generator: give numpy arrays or numbers")
    # the family's argument defaults (tanh_normal's low = −1, high = 1), as log_prob fills them in
    checked = {side: d._checked(None, d.defaulted(None, params)) for side, params in sides.items()}
    if "q" in checked:
        for a in d.arguments:
            if not np.array_equal(*np.broadcast_arrays(checked["p"][a], checked["q"][a])):
                raise SymeligError(f"p and q must have the same {a}: the KL is between members with one {a}")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise SymeligError(f"seed must be a non-negative integer or None, got {seed!r}") from None
    p = checked["p"]
    with np.errstate(all="ignore"):
        canonical = _canonical(d)(**p)
    arguments = {a: p[a] for a in d.arguments}
    constraint_of = d.symbolic.constraints
    batch = np.broadcast_shapes(*(np.shape(a)[:-1] if constraint_of[n].event_dim else np.shape(a) for n, a in p.items()))
    count, mean, m2 = 0, 0.0, 0.0
    while count < samples:
        n = min(BLOCK, samples - count)
        x = cls.sample(rng, (n, *batch), **canonical, **arguments)
        terms = -d.log_prob(x, **p)
        if quantity == "kl":
            terms = -terms - d.log_prob(x, **checked["q"])
        terms = np.asarray(terms, np.float64)
        block_mean = terms.mean(0)
        block_m2 = ((terms - block_mean) ** 2).sum(0)
        delta = block_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + block_m2 + delta**2 * count * n / total
        count = total
    dtype = np.result_type(*(a for side in checked.values() for n, a in side.items() if n in d.parameters), np.float16)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    se = np.sqrt(m2 / (count - 1) / count)
    return Estimate(np.asarray(mean, dtype), np.asarray(se, dtype), count)
