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

A vector of independent coordinates (diag_normal: x, μ, σ each (…, K)) is standardized per
coordinate, w_i = (x_i − μ_i)/σ_i, one array over the category axis (:func:`standardized_vector`).
"""
from __future__ import annotations

from sympy import (
    Abs, Add, And, Dummy, Function, Indexed, IndexedBase, Lambda, Mul, Not, Piecewise, Poly, PolynomialError, Symbol, cancel, count_ops, exp, expand_log, expand_mul, factor, log,
    sign, together,
)

from sympy.core.relational import Relational

from ..family import call_with
from ..functions import log_abs
from .stable import log1p_pairs

W = Symbol("_w", real=True)
W_POSITIVE = Symbol("_w", positive=True)
W_VECTOR = IndexedBase("_w", real=True)  # w_i = (x_i − μ_i)/σ_i of a vector family
W_FAR = Symbol("_w_far", real=True)     # w where |w| > 1, else 2
W_NEAR = Symbol("_w_near", real=True)   # w where |w| ≤ 1, else 0


def standard_variable(d):
    """(w, its definition (u − μ)/σ, u, μ, σ) for a continuous scalar family with a canonical
    scale or rate, or whose log-density is one of a location–scale family in a positive
    parameter σ and a real one μ (a user's density: −(x − m)²/(2s²) − log s), else None."""
    family = d.family
    if family.value.integer or d.is_vector:
        return None
    canonical = family.parameters
    substitution = d.substitution
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
    """([(symbol, definition)] to compute first, in order, or None; outputs in w): every output
    rewritten, or none of them.  Besides w, the tail forms use w clipped to |w| > 1 and to
    |w| ≤ 1 (W_FAR, W_NEAR), computed once as arrays so that neither branch of a where() sees a w
    it would divide by zero or overflow at."""
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
        rewritten[name] = _tails(log1p_pairs(_like_terms(_simplest(new), w), w), w)
    computed = [(w, definition)]
    if any(e.has(W_FAR, W_NEAR) for e in rewritten.values()):
        computed += [(W_FAR, Piecewise((w, Abs(w) > 1), (2, True))), (W_NEAR, Piecewise((w, Abs(w) <= 1), (0, True)))]
    return computed, rewritten


def standardized_vector(d, outputs: dict) -> tuple:
    """([(w_i at each index used, its definition)], outputs in w) for a real vector sample with a
    canonical vector ``scale`` (and ``loc``): x_i = μ_i + w_i·σ_i at every index (the component j
    and a sum's bound i), so (x_j − μ_j)²/σ_j³ becomes w_j²/σ_j, which neither over- nor
    underflows where σ_j³ would; else (None, outputs)."""
    from .. import constraints

    family = d.family
    if "scale" not in family.parameters or not family.parameters["scale"].event_dim:
        return None, outputs
    x = d.symbols["x"]

    def at(name, index):
        if name not in family.parameters:
            return 0
        value = d.substitution.get(name, d.symbols[name])
        return value(index) if isinstance(value, Lambda) else value[index]

    if family.value is constraints.real_vector:
        def standard(e):
            return e.replace(lambda a: isinstance(a, Indexed) and a.base == x,
                             lambda a: at("loc", a.indices[0]) + W_VECTOR[a.indices[0]] * at("scale", a.indices[0]))
    elif family.value is constraints.real and "loc" in family.parameters:
        # one real x against K components (a mixture): x − μ_k = w_k·σ_k for the component k
        # each gap belongs to, so (x − μ_k)²/(2σ_k²) is w_k²/2 (finite where (x − μ_k)² is not)
        def component(a):
            if not (a.is_Add and x in a.args):
                return None
            indices = {i.indices[0] for i in (x - a).atoms(Indexed)}
            return indices.pop() if len(indices) == 1 and x - a == at("loc", next(iter(indices))) else None

        def standard(e):
            return e.replace(lambda a: component(a) is not None, lambda a: W_VECTOR[component(a)] * at("scale", component(a)))
    else:
        return None, outputs

    rewritten = {name: _simplest(_split_logs(standard(e))) if e.has(x) else e for name, e in outputs.items()}
    if any(e.has(x) for e in rewritten.values()):
        return None, outputs
    used = {a for e in rewritten.values() for a in e.atoms(Indexed) if a.base == W_VECTOR}
    sample = (lambda k: x[k]) if family.value is constraints.real_vector else (lambda k: x)
    computed = [(w, (sample(w.indices[0]) - at("loc", w.indices[0])) / at("scale", w.indices[0])) for w in sorted(used, key=str)]
    return computed, rewritten


def _tails(e, w):
    """Far in the tails, |w| > 1, a term P(w)/Q(w) with deg P ≤ deg Q and a log Q(w) are taken
    in v = 1/w (reversed polynomials; log Q = m·log|w| + log Q̃(v)): the Cauchy score 2w/(1 + w²)
    is 2e-200 at w = 1e200, where w² overflows and the form as derived is inf/inf."""
    if e.is_Add:
        return Add(*[_tails(t, w) for t in e.args])
    if isinstance(e, Piecewise):  # each piece, and a condition a < b on its left side
        return Piecewise(*[(_tails(value, w), _tails_condition(condition, w)) for value, condition in e.args])
    if isinstance(e, Function) and not isinstance(e, (exp, log)) and e.has(w):  # log1pmx(y): y in its tail form
        return e.func(*[_tails(a, w) for a in e.args])
    if isinstance(e, log):
        return _tail_log(e, w)
    if not e.is_Mul or not e.has(w):
        return e
    logs = [f for f in e.args if isinstance(f, log) and f.has(w)]
    if len(logs) == 1 and not (e / logs[0]).has(w):
        return (e / logs[0]) * _tail_log(logs[0], w)
    numerator, denominator, rest, exponentials = [], [], [], []
    for f in e.args:
        base, power = f.as_base_exp()
        if not f.has(w):
            rest.append(f)
        elif isinstance(f, exp):
            exponentials.append(f)
        elif power.is_Integer and _polynomial(base, w) is not None:
            (numerator if power > 0 else denominator).append((base, int(power)))
        elif f.is_Add or isinstance(f, (Piecewise, Function)):  # a bracket or a function: each factor in its own tail form
            return Mul(*[_tails(g, w) for g in e.args])
        else:
            return e
    degree_up = sum(_polynomial(b, w).degree() * p for b, p in numerator)
    degree_down = sum(_polynomial(b, w).degree() * -p for b, p in denominator)
    if len(exponentials) == 1 and not denominator and degree_up >= 1:
        # P(w)·e^u: w^d·e^(−w) is inf·0 where both overflow; |w|^d·e^u in one exponential
        u = exponentials[0].args[0]
        reversed_ = Mul(*[_reversed(b, w) ** p for b, p in numerator])
        far = Mul(*rest) * sign(w) ** degree_up * reversed_ * exp(u + degree_up * log_abs(w))
        return _in_the_tails(far, e, w)
    if exponentials or degree_down < 1 or degree_up > degree_down:
        return e
    v = 1 / w
    far = Mul(*rest) * v ** (degree_down - degree_up) * Mul(*[_reversed(b, w) ** p for b, p in numerator + denominator])
    return _in_the_tails(far, e, w)


def _tails_condition(condition, w):
    if isinstance(condition, Relational) and condition.lhs.has(w) and not condition.rhs.has(w):
        return condition.func(_tails(condition.lhs, w), condition.rhs)
    return condition


def _in_the_tails(far, near, w):
    """The tail form where |w| > 1 and the form as derived elsewhere, each taken at a w clipped to
    its own region (log|w| and 1/w at w = 0 would warn: both branches of a where() are computed)."""
    return Piecewise((far.subs(w, W_FAR), Abs(w) > 1), (near.subs(w, W_NEAR), True))


def _tail_log(e, w):
    """log Q(w) as m·log|w| + log Q̃(1/w) where the top term c_m·w^m outweighs the constant c_0
    (elsewhere the two logs cancel: log(1 + w²/ν) at w = 1.3, ν = 1e12 lost 11 digits), and as
    written, at a w clipped to that region, where it does not."""
    polynomial = _polynomial(e.args[0], w)
    if polynomial is None or polynomial.degree() < 1:
        return e
    m = polynomial.degree()
    coefficients = polynomial.all_coeffs()
    far = m * log_abs(w) + log(_reversed(e.args[0], w))
    top, bottom = coefficients[0], coefficients[-1]
    if bottom == 0 or (top / bottom).is_number:
        return _in_the_tails(far, e, w)
    region = And(Abs(w) > 1, Abs(top) > Abs(bottom) * Abs(1 / W_FAR) ** m)
    near = Piecewise((w, Not(region)), (0, True))
    return Piecewise((far.subs(w, W_FAR), region), (e.subs(w, near), True))


def _polynomial(e, w):
    try:
        polynomial = Poly(e, w)
    except PolynomialError:
        return None
    return polynomial if not any(c.has(w) for c in polynomial.coeffs()) else None


def _reversed(e, w):
    """v^m·P(1/v) with v = 1/w written back in w: the polynomial P read from its top degree."""
    coefficients = _polynomial(e, w).all_coeffs()  # highest degree first
    return Add(*[c * w ** -k for k, c in enumerate(coefficients)])


def _like_terms(e, w):
    """Terms with the same factor in w as one, their coefficients in the parameters summed exactly:
    Student's t H_νν has w²/(ν²(1 + w²/ν)) − (ν + 1)·w²/(ν³(1 + w²/ν)), O(1/ν²) each, whose
    sum is −w²/(ν³(1 + w²/ν))."""
    if not e.is_Add:
        return e
    groups: dict = {}
    for term in e.args:
        coefficient, factor_ = term.as_independent(w, as_Add=False)
        groups[factor_] = groups.get(factor_, 0) + coefficient
    if len(groups) == len(e.args):
        return e
    # (terms free of w stay as they are: ψ((ν+1)/2) − ψ(ν/2) − 1/ν is taken apart by its series)
    return Add(*[cancel(c) * f if f != 1 else c for f, c in groups.items()])


def _split_logs(e):
    return e.replace(lambda a: isinstance(a, log), lambda a: expand_log(a))


def _simplest(e):
    """The shortest of a few bounded rewrites, with sigmoid(r)/softplus(r) named again where
    the rewrite separated it."""
    from ..second_order import _as_sigmoid_over_softplus, _over_softplus

    candidates = [e]
    for rewrite in (together, cancel, factor, expand_mul):
        try:
            candidates.append(rewrite(e))
        except Exception:  # noqa: BLE001 -- a rewrite that fails is simply not a candidate
            pass
    # fewest distinct exponentials first: factoring e^(−w) out of 1 − e^(−w) gives e^(−w)(e^w − 1),
    # which overflows to inf·0 where the form as derived is finite
    best = min(candidates, key=lambda c: (len(c.atoms(exp)), count_ops(c), len(str(c))))
    return best.replace(_over_softplus, _as_sigmoid_over_softplus)
