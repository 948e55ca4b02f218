"""Location–scale families evaluated through the standardized sample w = (u − μ)/σ.

Written as derived, ((x − μ)² − σ²)/σ³ overflows in σ³ from σ ≈ 1e103 and in (x − μ)² from
x − μ ≈ 1e154, although the value, (w² − 1)/σ, is representable far beyond; the Hessian's σ⁴
fails from 1e±77, and (x − μ)²/σ² is 0/0 = nan at σ = 1e-300.  A family whose canonical
parameters include PyTorch's ``scale`` (or ``rate``, an inverse scale) and perhaps ``loc`` is a
location–scale family in a statistic u of its sample (x, or log x where x enters log p only
through log x); every kernel output is then rewritten with u = μ + w·σ, where σ and μ are the
parametrization's expressions for the canonical scale and location (e^s, softplus(r),
√(−1/(2η)), …), and simplified: x disappears, σ is left only as a power or a chain-rule factor
(σ⁻², sigmoid(r)/softplus(r)), and the kernel computes w once.  A rewrite that does not
eliminate x is not used.
"""
from __future__ import annotations

from sympy import Dummy, Symbol, cancel, count_ops, exp, expand_log, factor, log, together

from ..family import call_with

W = Symbol("_w", real=True)
W_POSITIVE = Symbol("_w", positive=True)


def standard_variable(d):
    """(w, its definition (u − μ)/σ, u, μ, σ) for a continuous scalar family with a canonical
    scale or rate, or whose log-density is one of a location–scale family in a positive
    parameter σ and a real one μ (a user's density: −(x − m)²/(2s²) − log s), else None."""
    family = d.family
    if family.value.integer or d.is_vector:
        return None
    canonical = family.parameters
    substitution = d.parametrization.substitution(d.symbols)
    x = d.symbols["x"]
    log_p = call_with(family.log_prob, d.symbols)
    u = log(x) if not log_p.subs(log(x), Dummy()).has(x) else x

    def value(name):
        return substitution.get(name, d.symbols[name])

    if "scale" in canonical:
        sigma = value("scale")
    elif "rate" in canonical:
        sigma = 1 / value("rate")
    else:
        found = _location_scale(d, log_p, u)
        if found is None:
            return None
        mu, sigma = found
        return _variable(family, u, x, mu, sigma)
    mu = value("loc") if "loc" in canonical else 0
    return _variable(family, u, x, mu, sigma)


def _variable(family, u, x, mu, sigma):
    w = W_POSITIVE if (u == x and mu == 0 and family.value.lower == 0) else W
    return w, (u - mu) / sigma, u, mu, sigma


def _location_scale(d, log_p, u):
    """(μ, σ) among the parameters such that log p(u = μ + wσ) + log σ is free of μ and σ."""
    constraint_of = d.parametrization.parameters
    scalars = {n: d.symbols[n] for n, c in constraint_of.items() if not c.event_dim}
    scales = [s for n, s in scalars.items() if constraint_of[n].assumptions.get("positive")]
    locations = [s for n, s in scalars.items() if constraint_of[n].assumptions.get("real") and s not in scales]
    x, w = d.symbols["x"], Dummy("w", real=True)
    for sigma in scales:
        for mu in [*locations, 0]:
            moved = log_p.subs(u, mu + w * sigma)
            if u != x:
                moved = moved.subs(x, exp(mu + w * sigma))
            try:
                rest = _split_logs((moved + log(sigma)).expand())
            except Exception:  # noqa: BLE001 -- not a location–scale form
                continue
            if not rest.has(x) and not rest.has(sigma) and not (mu != 0 and rest.has(mu)):
                return mu, sigma
    return None


def standardized(d, outputs: dict) -> tuple:
    """(w definition or None, outputs in w): every output rewritten, or none of them."""
    found = standard_variable(d)
    if found is None:
        return None, outputs
    w, definition, u, mu, sigma = found
    x = d.symbols["x"]
    if not any(e.has(x) for e in outputs.values()):
        return None, outputs
    rewritten = {}
    for name, e in outputs.items():
        new = e.subs(u, mu + w * sigma)
        if u != x:
            new = new.subs(x, exp(mu + w * sigma))
        if new.has(x):
            return None, outputs
        new = _split_logs(new)
        if u == x and mu == 0:
            # log w back to log x − log σ: w = x/σ may underflow where both logs are finite
            # (a gamma rate of 1e-53 in float32), and log σ often cancels (log softplus(r))
            new = _split_logs(new.subs(log(w), log(x) - log(sigma)))
        rewritten[name] = _simplest(new)
    return (w, definition), rewritten


def _split_logs(e):
    return e.replace(lambda a: isinstance(a, log), lambda a: expand_log(a))


def _simplest(e):
    """The shortest of a few bounded rewrites, with sigmoid(r)/softplus(r) named again where
    the rewrite separated it."""
    from ..second_order import _as_sigmoid_over_softplus, _over_softplus

    candidates = [e]
    for rewrite in (together, cancel, factor):
        try:
            candidates.append(rewrite(e))
        except Exception:  # noqa: BLE001 -- a rewrite that fails is simply not a candidate
            pass
    # fewest distinct exponentials first: factoring e^(−w) out of 1 − e^(−w) gives e^(−w)(e^w − 1),
    # which overflows to inf·0 where the form as derived is finite
    best = min(candidates, key=lambda c: (len(c.atoms(exp)), count_ops(c), len(str(c))))
    return best.replace(_over_softplus, _as_sigmoid_over_softplus)
